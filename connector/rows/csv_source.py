"""CSV (and TSV) files: scanned whole before the first row, then read as text, typed by the one rule.

The scan (:func:`scan`) reads every byte once for the encoding (:mod:`encoding`)
and once with Arrow's multithreaded CSV parser, every cell as text, to learn each
undeclared column's type (:class:`~connector.rows.kinds.TextKinds`) and the row
count; memory stays bounded by the parser's block size. A row with the wrong
number of cells stops the scan, naming its line.

Rows are read the same way and typed the same way, so a value reaches the
prompt and the record as the file holds it. Line numbers are 1-based physical
lines: row ``i`` is on line ``i + 2`` unless the file has blank lines or line
breaks inside quoted cells, when :class:`LineFinder` counts them (only for rows
that need naming).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.csv as pacsv

from connector.errors import InputError
from connector.rows import kinds
from connector.rows.columns import Column, duplicates, flag, unfit_message
from connector.rows.encoding import check_file, is_utf8, normalized
from connector.rows.source_file import SourceFile
from connector.rows.table import Row

BLOCK = 1 << 20
# A row must lie within one parser block. The scan starts with BLOCK and, when a row straddles two
# blocks, starts again with blocks four times larger, up to MAX_BLOCK (the largest row read); the
# block found is kept for reading the rows, so memory stays a few blocks whatever the file's size.
MAX_BLOCK = 1 << 28


class _Straddling(Exception):
    """A row is larger than the parser's block."""


@dataclass
class FileScan:
    """What the scan of one CSV file found."""

    source: SourceFile
    names: list[str]
    rows: int
    simple_lines: bool  # data row i is on line i + 2
    kinds: dict[str, kinds.TextKinds] = field(default_factory=dict)
    block: int = BLOCK  # the parser's block size: larger than the file's largest row

    @property
    def path(self) -> str:
        return self.source.name


class _BadRow:
    """The first row with the wrong number of cells, kept by the parser's callback."""

    def __init__(self) -> None:
        self.text: str | None = None
        self.expected = self.actual = 0

    def __call__(self, row: Any) -> str:
        if self.text is None:
            self.text, self.expected, self.actual = row.text, row.expected_columns, row.actual_columns
        return "skip"


def _options(encoding: str, delimiter: str, names: list[str], bad: _BadRow, block: int) -> tuple[Any, Any, Any]:
    read = pacsv.ReadOptions(block_size=block, encoding="utf8" if is_utf8(encoding) else normalized(encoding))
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=bad)
    convert = pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    return read, parse, convert


def _text(source: SourceFile, encoding: str, errors: str = "strict") -> TextIO:
    """The file as text, line breaks kept as they are (what Python's csv module wants)."""
    return io.TextIOWrapper(source.open(), encoding=encoding, errors=errors, newline="")


def _open(source: SourceFile, encoding: str, delimiter: str, names: list[str], bad: _BadRow,
          block: int = BLOCK) -> Any:
    read, parse, convert = _options(encoding, delimiter, names, bad, block)
    try:
        return pacsv.open_csv(source.arrow(), read_options=read, parse_options=parse, convert_options=convert)
    except (pa.ArrowInvalid, OSError) as exc:
        if _straddles(exc):
            raise _Straddling from None
        raise InputError(f"input.path: cannot read '{source.name}' as csv: {_first_line(exc)}. Fix or replace the "
                         "file, or set input.format if it is not csv") from None


def _header(source: SourceFile, encoding: str, delimiter: str) -> list[str]:
    """The column names: the first record, read by Python's csv module (Arrow's reader would type
    the first block of every column just to say them)."""
    text_encoding = "utf-8-sig" if is_utf8(encoding) else encoding  # Arrow skips a UTF-8 byte order mark too
    with _text(source, text_encoding) as f:
        reader = csv.reader(f, delimiter=delimiter)
        for record in reader:
            if record:
                _named(source.name, reader.line_num, record)
                return record
    raise InputError(f"input.path: cannot read '{source.name}' as csv: Empty CSV file. Fix or replace the file, or "
                     "set input.format if it is not csv")


def _named(path: str, line: int, names: list[str]) -> None:
    """InputError for a header cell with no name: a column named '' cannot be used by a template, and a
    destination may refuse or rename it."""
    empty = [i for i, name in enumerate(names, 1) if not name.strip()]
    if empty:
        where = ", ".join(map(str, empty))
        raise InputError(f"input.path: {path} line {line} (the header): column {where} has no name; give every "
                         "column a name in the header (a file written by pandas with its index has an unnamed "
                         "first column: write it with index=False, or name the index)")


def _straddles(exc: BaseException) -> bool:
    return "straddling object" in str(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _bad_row_error(source: SourceFile, encoding: str, bad: _BadRow) -> InputError:
    line = _line_of_text(source, encoding, bad.text or "")
    where = f"line {line}" if line else "a line"
    return InputError(f"input.path: {source.name} {where} has {bad.actual} cells where the header has {bad.expected}: "
                      f"{(bad.text or '')[:120]!r}. Quote cells that contain the delimiter, or fix the line")


def _line_of_text(source: SourceFile, encoding: str, text: str) -> int | None:
    with _text(source, encoding, "replace") as f:
        for number, line in enumerate(f, 1):
            if line.rstrip("\r\n") == text:
                return number
    return None


def scan(source: SourceFile, encoding: str, delimiter: str, declared: Mapping[str, str]) -> FileScan:
    """Read the whole file once: its columns, their types, its rows; InputError for what cannot be read."""
    facts = check_file(source, encoding)
    bad = _BadRow()
    path = source.name
    names = _header(source, encoding, delimiter)
    twice = duplicates(names)
    if twice:
        raise InputError(f"input.path: {path} names column(s) {', '.join(map(repr, twice))} more than once; "
                         "give each column its own name in the header")
    block = BLOCK
    while True:
        found = FileScan(source, names, 0, False, {n: kinds.TextKinds() for n in names if n not in declared}, block)
        try:
            _scan_rows(found, encoding, delimiter, bad)
            break
        except _Straddling:
            if block >= MAX_BLOCK:
                raise InputError(f"input.path: {path} has a row larger than {MAX_BLOCK >> 20} MB, the largest this "
                                 "connector reads; split the row's cell, or check that its quotes are closed") from None
            block *= 4
    if bad.text is not None:
        raise _bad_row_error(source, encoding, bad)
    lines = facts.newlines + (0 if facts.ends_with_newline or not facts.newlines else 1)
    # Counting b"\n" counts lines only where a line break is that one byte (not UTF-16, say).
    found.simple_lines = lines == found.rows + 1 and "a\n".encode(normalized(encoding), "ignore") == b"a\n"
    return found


def _scan_rows(found: FileScan, encoding: str, delimiter: str, bad: _BadRow) -> None:
    """Count the rows and learn the column types at ``found.block``; _Straddling when a row does not fit it."""
    source, path, names = found.source, found.path, found.names
    reader = _open(source, encoding, delimiter, names, bad, found.block)
    if reader.schema.names != names or any(t != pa.string() for t in reader.schema.types):
        raise InputError(f"input.path: the header of {path} reads differently to the CSV parser; quote the column "
                         "names that hold the delimiter, quotes or line breaks")
    try:
        for batch in reader:
            found.rows += batch.num_rows
            kinds.observe_batch([(found.kinds[name], batch.column(i)) for i, name in enumerate(names)
                                 if name in found.kinds])
            if bad.text is not None:
                raise _bad_row_error(source, encoding, bad)
    except (pa.ArrowInvalid, OSError) as exc:
        if _straddles(exc):
            raise _Straddling from None
        raise InputError(f"input.path: cannot read '{path}' as csv: {_first_line(exc)}. Fix or replace the "
                         "file") from None


def merged_columns(scans: list[FileScan], declared: Mapping[str, str]) -> list[Column]:
    """The columns of all files, in first-seen order; a column's type fits every file that has it."""
    order: dict[str, None] = {}
    learnt: dict[str, kinds.TextKinds] = {}
    for found in scans:
        order.update(dict.fromkeys(found.names))
        for name, text in found.kinds.items():
            learnt.setdefault(name, kinds.TextKinds()).merge(text)
    columns = []
    for name in order:
        if name in declared:
            kind = declared[name]
            columns.append(Column(name, kinds.json_schema(kind), kinds.arrow_type(kind), kind))
        else:
            kind = learnt[name].kind
            columns.append(Column(name, learnt[name].schema(), kinds.arrow_type(kind), kind))
    return columns


class LineFinder:
    """The 1-based line each data row of a CSV file starts on, counted forward (rows are asked in order)."""

    def __init__(self, source: SourceFile, encoding: str, delimiter: str) -> None:
        self._source, self._encoding, self._delimiter = source, encoding, delimiter
        self._file: TextIO | None = None
        self._row = -1
        self._start = 0

    def line_of(self, row: int) -> int:
        if self._file is None or row < self._row:
            self.close()
            self._file = _text(self._source, self._encoding, "replace")
            self._reader = csv.reader(self._file, delimiter=self._delimiter)
            self._row, header = -1, False
            while not header:
                header = bool(next(self._reader, [None]))
        while self._row < row:
            before = self._reader.line_num
            record = next(self._reader, None)
            if record is None:
                return 0
            if record:
                self._row += 1
                self._start = before + 1
        return self._start

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read(found: FileScan, columns: list[Column], declared: Mapping[str, str], encoding: str, delimiter: str,
         names: Mapping[str, str], skip: int) -> Iterator[list[Row]]:
    """The rows of one scanned file after ``skip`` rows, one list per parser block."""
    convert = {name: kinds.converter(kind, from_text=True) for name, kind in declared.items()}
    out_names = [names.get(c.name, c.name) for c in columns]
    present = {name: i for i, name in enumerate(found.names)}
    finder = LineFinder(found.source, encoding, delimiter)
    reader = _open(found.source, encoding, delimiter, found.names, _BadRow(), found.block)
    done = 0
    try:
        for batch in reader:
            base, done = done, done + batch.num_rows
            if done <= skip:
                continue
            if base < skip:
                batch, base = batch.slice(skip - base), skip
            values: list[list[Any]] = []
            unfit: dict[int, list[str]] = {}
            for column in columns:
                at = present.get(column.name)
                if at is None:
                    values.append([None] * batch.num_rows)
                elif column.name in convert:
                    converted, bad = kinds.convert_all(batch.column(at).to_pylist(), convert[column.name])
                    values.append(converted)
                    for i, reason in bad.items():
                        unfit.setdefault(i, []).append(unfit_message(column.name, reason, declared[column.name]))
                else:
                    values.append(kinds.text_values(column.kind or "string", batch.column(at)))
            rows = [dict(zip(out_names, row, strict=True)) for row in zip(*values, strict=True)]
            if unfit:
                def where(i: int, first: int = base) -> str:
                    row = first + i
                    line = row + 2 if found.simple_lines else finder.line_of(row)
                    return f"{found.path} line {line}"
                flag(rows, unfit, where)
            yield rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"input.path: {found.path} could not be read part-way ({_first_line(exc)}); the file "
                         "changed since it was opened, or cannot be read") from None
    finally:
        finder.close()
