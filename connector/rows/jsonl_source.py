"""JSONL files and inline rows: every value as JSON holds it, the columns from every row of the input.

The scan (:func:`scan`) parses every line once (orjson), so a key that first
appears on the last line is a column, and a column's type is the JSON types of
all its values (:class:`~connector.rows.shapes.Shape`). Lines sharing a layout
(the same keys with the same scalar types) are learnt once, which keeps the scan
near the parser's own speed. A line that is not a JSON object stops the scan,
naming its 1-based line number. Memory holds one chunk of lines and the shapes.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from connector.errors import InputError
from connector.rows import kinds
from connector.rows.columns import Column, flag, too_deep, unfit_message
from connector.rows.encoding import is_utf8, normalized
from connector.rows.shapes import Shape
from connector.rows.source_file import SourceFile
from connector.rows.table import Row

CHUNK = 8 << 20
_KNOWN_LAYOUTS = 4096
_BOM = b"\xef\xbb\xbf"


class JsonColumns:
    """The shapes of the columns of JSON object rows, in first-seen order."""

    def __init__(self) -> None:
        self.shapes: dict[str, Shape] = {}
        self._layouts: dict[tuple[Any, ...], list[str]] = {}  # layout -> keys holding objects or arrays

    def observe(self, row: Mapping[str, Any]) -> None:
        self.observe_all((row,))

    def observe_all(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Learn from each row; a layout (keys and scalar types) seen before costs one lookup."""
        layouts, shapes = self._layouts, self.shapes
        for row in rows:
            layout = (*row, *map(type, row.values()))  # keys are text, types are not: no clash
            nested = layouts.get(layout)
            if nested is None:
                for key, value in row.items():
                    shape = shapes.get(key)
                    if shape is None:
                        shape = shapes[key] = Shape()
                    shape.observe(value)
                if len(layouts) < _KNOWN_LAYOUTS:
                    layouts[layout] = [k for k, v in row.items() if isinstance(v, (dict, list))]
                continue
            for key in nested:
                shapes[key].observe(row[key])

    def merge(self, other: JsonColumns) -> None:
        for key, shape in other.shapes.items():
            if key in self.shapes:
                self.shapes[key].merge(shape)
            else:
                self.shapes[key] = shape

    def columns(self, declared: Mapping[str, str]) -> list[Column]:
        out = []
        for name, shape in self.shapes.items():
            if name in declared:
                kind = declared[name]
                out.append(Column(name, kinds.json_schema(kind), kinds.arrow_type(kind), kind))
            else:
                out.append(Column(name, shape.json_schema(), shape.arrow_type()))
        return out


@dataclass
class FileScan:
    source: SourceFile
    rows: int = 0
    found: JsonColumns = field(default_factory=JsonColumns)

    @property
    def path(self) -> str:
        return self.source.name


def _byte_lines(encoding: str) -> bool:
    """Whether lines of ``encoding`` text can be split at b"\\n" bytes (UTF-8, Latin-1, cp1252: yes;
    UTF-16 and UTF-32, where a line break is two or four bytes: no)."""
    name = normalized(encoding)
    return "\n{".encode(name) == b"\n{"


def as_utf8(encoding: str) -> bool:
    """Whether :func:`_chunks` hands over ``encoding``'s lines as UTF-8 bytes."""
    return is_utf8(encoding) or not _byte_lines(encoding)


def _chunks(source: SourceFile, encoding: str) -> Iterator[list[bytes]]:
    """The file's lines, a chunk at a time: the bytes as they are when lines split at b"\\n", else the
    text decoded and written again as UTF-8 (so UTF-16 lines are found where their breaks are)."""
    if _byte_lines(encoding):
        with source.open() as f:
            while lines := f.readlines(CHUNK):
                yield lines
        return
    number = 0
    with io.TextIOWrapper(source.open(), encoding=normalized(encoding), newline="\n") as text:
        try:
            while decoded := text.readlines(CHUNK):
                number += len(decoded)
                yield [line.encode("utf-8", "surrogatepass") for line in decoded]
        except UnicodeDecodeError as exc:
            raise InputError(f"input.path: {source.name} at or after line {number + 1:,} holds bytes that are not "
                             f"{encoding} text ({exc.reason}); input.encoding is {encoding}, which the file is not "
                             "in: set it to the encoding the file is in, or convert the file") from None


def _lines(source: SourceFile, encoding: str) -> Iterator[tuple[int, int, bytes]]:
    """(1-based line number, byte offset, bytes) of each line of the file."""
    number, offset = 0, 0
    path = source.name
    try:
        for lines in _chunks(source, encoding):
            for raw in lines:
                number += 1
                yield number, offset, raw
                offset += len(raw)
    except OSError as exc:
        raise InputError(f"input.path: cannot read '{path}': {exc.strerror or exc}") from None


def _parse(raw: bytes, path: str, number: int, offset: int, encoding: str, utf8: bool) -> Any:
    """One line's JSON value; InputError naming the line (and the byte, for bad encoding)."""
    if offset == 0 and raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    try:
        return orjson.loads(raw if utf8 else raw.decode(encoding))
    except (UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise InputError(_unreadable(raw, f"{path} line {number}", offset, encoding, utf8, exc)) from None


def _unreadable(raw: bytes, where: str, offset: int, encoding: str, utf8: bool, exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return _not_text(where, offset + exc.start, raw[exc.start: exc.end], encoding)
    if utf8:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return _not_text(where, offset + bad.start, raw[bad.start: bad.end], encoding)
    shown = raw[:120].decode("utf-8", "replace").rstrip()
    reason = exc.msg if isinstance(exc, orjson.JSONDecodeError) else str(exc)
    return f"input.path: {where} is not JSON ({reason}): {shown!r}. Each line must be one JSON object; fix or remove it"


def _not_text(where: str, offset: int, bad: bytes, encoding: str) -> str:
    hexed = " ".join(f"0x{b:02X}" for b in bad)
    fix = ("set input.encoding to latin-1 (or cp1252), or convert the file to UTF-8" if is_utf8(encoding) else
           f"input.encoding is {encoding}, which the file is not in: set it to the encoding the file is in, or "
           f"convert the file to {encoding}")
    return f"input.path: {where} (byte offset {offset}) holds {hexed}, which is not {encoding} text; {fix}"


def scan(source: SourceFile, encoding: str) -> FileScan:
    """Parse the whole file once: its columns and their shapes, its row count.

    Each chunk of lines is parsed in one tight pass; a chunk holding a blank line, a line that
    is not a JSON object or bytes that are not text is gone through again line by line, which
    skips the blank lines and names the bad one.
    """
    found = FileScan(source)
    path = source.name
    utf8 = as_utf8(encoding)
    loads = orjson.loads
    number = offset = 0
    try:
        for lines in _chunks(source, encoding):
            if offset == 0 and lines[0].startswith(_BOM):
                lines[0] = lines[0][len(_BOM):]
                offset = len(_BOM)
            try:
                values = [loads(raw) for raw in lines] if utf8 else [loads(raw.decode(encoding)) for raw in lines]
                if not all(type(value) is dict for value in values):
                    raise ValueError("not an object")
            except (ValueError, UnicodeDecodeError):
                values = [value for _, value in _objects_in(lines, path, number, offset, encoding, utf8)]
            found.found.observe_all(values)
            found.rows += len(values)
            number += len(lines)
            offset += sum(map(len, lines))
    except OSError as exc:
        raise InputError(f"input.path: cannot read '{path}': {exc.strerror or exc}") from None
    return found


def _objects_in(lines: list[bytes], path: str, number: int, offset: int, encoding: str,
                utf8: bool) -> Iterator[tuple[int, Any]]:
    """(line number, object) of each line that is not blank; InputError naming the first bad one."""
    for raw in lines:
        number += 1
        if raw.strip():
            value = _parse(raw, path, number, offset, encoding, utf8)
            if not isinstance(value, dict):
                raise InputError(f"input.path: {path} line {number} is JSON but not an object (a "
                                 f"{type(value).__name__}); each line must be one row, a JSON object")
            yield number, value
        offset += len(raw)


class RowMaker:
    """Rows with exactly the input's columns (renamed), declared types applied, unknown keys flagged."""

    def __init__(self, columns: list[Column], declared: Mapping[str, str], names: Mapping[str, str]) -> None:
        self._pairs = [(c.name, names.get(c.name, c.name)) for c in columns]
        self._renamed = dict(self._pairs)
        self._known = {c.name for c in columns}
        self._declared = dict(declared)
        self._convert = {name: kinds.converter(kind, from_text=False) for name, kind in declared.items()}

    def make(self, values: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Row]:
        """Rows from (position text, parsed object) pairs."""
        rows: list[Row] = []
        unfit: dict[int, list[str]] = {}
        where: list[str] = []
        for i, (position, value) in enumerate(values):
            row = {new: value.get(old) for old, new in self._pairs}
            problems = []
            for name, convert in self._convert.items():
                new = self._renamed[name]
                try:
                    row[new] = convert(row[new])
                except kinds.Unfit as exc:
                    row[new] = None
                    problems.append(unfit_message(name, str(exc), self._declared[name]))
            for name, new in self._pairs:
                deep = too_deep(name, row[new])
                if deep:
                    row[new] = None
                    problems.append(deep)
            if not value.keys() <= self._known:
                extra = sorted(value.keys() - self._known)
                problems.append(f"key(s) {', '.join(map(repr, extra))} not among the columns the input was "
                                "scanned with; it changed since it was opened: run again (discover first)")
            if problems:
                unfit[i] = problems
            rows.append(row)
            where.append(position)
        flag(rows, unfit, where.__getitem__)
        return rows


def read(found: FileScan, maker: RowMaker, encoding: str, skip: int, size: int) -> Iterator[list[Row]]:
    """The rows of one scanned file after ``skip`` rows, in lists of up to ``size``."""
    pending: list[tuple[str, Any]] = []
    seen = 0
    utf8 = as_utf8(encoding)
    for number, offset, raw in _lines(found.source, encoding):
        if not raw.strip():
            continue
        seen += 1
        if seen <= skip:
            continue
        where = f"{found.path} line {number}"
        value = _parse(raw, found.path, number, offset, encoding, utf8)
        if not isinstance(value, dict):
            raise InputError(f"input.path: {where} is JSON but not an object; the file changed since it was "
                             "opened")
        pending.append((where, value))
        if len(pending) >= size:
            yield maker.make(pending)
            pending = []
    if pending:
        yield maker.make(pending)


def inline_columns(rows: list[dict[str, Any]], declared: Mapping[str, str]) -> list[Column]:
    found = JsonColumns()
    for row in rows:
        found.observe(row)
    return found.columns(declared)


def read_inline(rows: list[dict[str, Any]], maker: RowMaker, skip: int, size: int) -> Iterator[list[Row]]:
    for start in range(skip, len(rows), size):
        chunk = rows[start: start + size]
        yield maker.make((f"input.rows item {start + i + 1}", row) for i, row in enumerate(chunk))
