"""Rows piped in on standard input (``input.path: "-"``): JSON lines, or another connector's messages.

    source-x read --config x.json --catalog c.json | source-openai-compatible read --config me.json ...

Each line of stdin is either a JSON object (a row) or, in Airbyte form, a protocol
message: a RECORD gives ``record.data`` as a row (only those of ``input.stream``
when it is set); every other line (LOG, STATE, TRACE, a stray non-JSON line) is
skipped. ``input.format`` ``auto`` decides between the two from the first line.

The rows flow: a daemon thread reads lines as they arrive and hands them to the
event loop, which takes whatever is there (up to ``input.batch_size``) as the
next batch. The engine awaits the next row in a task of its own, so answers
already received are emitted while the producer is still thinking, and a slow
pipe never blocks the event loop.

Columns: ``discover`` cannot read stdin (a platform runs it without data), so it
declares the columns listed in ``input.columns``. ``read`` keeps exactly those,
each value converted to its declared type. Without the list it infers them
(names and JSON types, :class:`~connector.rows.shapes.Shape`) from the first rows
(the first batch, or what arrived within :data:`INFER_WAIT` seconds) and keeps
them. Either way the columns are fixed before the first row is enriched: a later
row with a value that does not fit, or with a key not among the columns, is that
row's ``bad_input`` error naming its line (never a silently dropped key). Columns
named like the record's metadata columns are kept under ``input.metadata_prefix``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Collection
from decimal import Decimal
from typing import Any, BinaryIO

import orjson
import pyarrow as pa

from connector.config.input import InputConfig
from connector.errors import InputError
from connector.rows import kinds
from connector.rows.columns import Column, arrow_schema, flag, rename_notes, renames, too_deep, unfit_message
from connector.rows.encoding import decode_line, is_utf8
from connector.rows.fingerprint import InputFile
from connector.rows.jsonl_source import JsonColumns
from connector.rows.keys import KeyWatch
from connector.rows.pipe import Lines
from connector.rows.shapes import Shape
from connector.rows.table import Row

INFER_WAIT = 1.0
_AIRBYTE_TYPES = frozenset({"RECORD", "STATE", "LOG", "TRACE", "SPEC", "CATALOG", "CONNECTION_STATUS", "CONTROL"})
# What check renders the template with: it never reads stdin.
_SAMPLE_VALUES: dict[str, Any] = {"string": "", "integer": 0, "number": 0.0, "boolean": False, "date": "2000-01-01",
                                  "timestamp": "2000-01-01T00:00:00", "decimal": Decimal(0), "object": {},
                                  "array": []}


def _is_airbyte_message(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") in _AIRBYTE_TYPES and \
        any(isinstance(value.get(k), dict) for k in ("record", "log", "state", "trace", "spec", "catalog",
                                                     "connectionStatus", "control"))


class StdinTable:
    """The input table on stdin, with the same surface as :class:`~connector.rows.files.InputTable`
    except that :meth:`batches` is an async iterator."""

    def __init__(self, config: InputConfig, stream: BinaryIO | None = None,
                 reserved: Collection[str] = ()) -> None:
        self._config = config
        self._stream = stream
        self._reserved = frozenset(reserved)  # the names of the columns the run adds to each record
        self._kind: str | None = None if config.format == "auto" else config.format
        self._utf8 = is_utf8(config.encoding)
        self._declared = dict(config.columns) if config.columns is not None else None
        self._columns: list[Column] | None = None
        self._shapes: dict[str, Shape] = {}  # inferred columns: what later values must fit
        self._convert: dict[str, kinds.Convert] = {}
        self._names: dict[str, str] = {}
        self._schema: pa.Schema | None = None
        self.notes: list[str] = []  # warnings for the read to pass on
        if self._declared is not None:
            self._fix([Column(name, kinds.json_schema(kind), kinds.arrow_type(kind), kind)
                       for name, kind in self._declared.items()])
            self._convert = {name: kinds.converter(kind, from_text=False) for name, kind in self._declared.items()}
        self._lines: Lines | None = None
        self._first: list[tuple[int, Row]] = []  # rows read to infer the columns, handed out first
        self._line_number = 0
        self.skipped_lines = 0  # non-RECORD lines of Airbyte input

    def _fix(self, columns: list[Column]) -> None:
        self._columns = columns
        self._names = renames([c.name for c in columns], self._reserved, self._config.metadata_prefix)
        self._schema = arrow_schema(columns, self._names)
        self.notes.extend(rename_notes(self._names))

    # The surface shared with InputTable ---------------------------------------------------------

    @property
    def columns_known(self) -> bool:
        return self._schema is not None

    @property
    def schema(self) -> pa.Schema:
        """The declared columns, or those inferred by :meth:`start`; empty before either."""
        return self._schema if self._schema is not None else pa.schema([])

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    @property
    def renamed(self) -> dict[str, str]:
        """Input columns kept under another name (named like a metadata column): old -> new."""
        return dict(self._names)

    def count_rows(self) -> int | None:
        return None

    @property
    def files(self) -> tuple[InputFile, ...]:
        """None: stdin is no file (a STATE binds itself to its rows alone)."""
        return ()

    def estimate_rows(self) -> tuple[int, bool] | None:
        return None

    def first_row(self) -> Row | None:
        """A stand-in row for ``check``, which never reads stdin: an empty value of each declared type."""
        if self._declared is None:
            return None
        return {self._names.get(name, name): _SAMPLE_VALUES[kind] for name, kind in self._declared.items()}

    # Reading ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin reading; without declared columns, infer them from the first rows."""
        if self._lines is not None:
            return
        stream = self._stream if self._stream is not None else sys.stdin.buffer
        size = self._config.batch_size
        self._lines = Lines(stream, buffered=max(size * 4, 1024))
        if self._schema is not None:
            return
        while True:
            lines = await self._lines.take_for(size, INFER_WAIT)
            if lines is None:
                break
            self._first = self._parse(lines)
            if self._first:
                break
        found = JsonColumns()
        for _, row in self._first:
            found.observe(row)
        self._shapes = found.shapes
        # Later objects may hold keys the first rows did not: output files keep nested values as JSON text.
        self._fix([Column(c.name, c.schema, pa.string() if pa.types.is_nested(c.arrow) else c.arrow)
                   for c in found.columns({})])

    def batches(self, skip: int = 0) -> AsyncIterator[list[Row]]:
        """Rows as they arrive, in lists of what was there (at most ``batch_size``), after ``skip`` rows;
        with ``input.primary_key``, checked as they arrive (:mod:`connector.rows.keys`)."""
        rows = self._batches(skip)
        key = self._config.primary_key
        return KeyWatch(key).follow(rows) if key is not None else rows

    async def _batches(self, skip: int) -> AsyncIterator[list[Row]]:
        await self.start()
        assert self._lines is not None
        try:
            pending = self._first
            self._first = []
            while True:
                if pending:
                    if skip >= len(pending):
                        skip -= len(pending)
                    else:
                        yield self._shape(pending[skip:])
                        skip = 0
                lines = await self._lines.take(self._config.batch_size)
                if lines is None:
                    return
                pending = self._parse(lines)
        finally:
            self._lines.close()

    # Lines to rows ------------------------------------------------------------------------------

    def _parse(self, lines: list[bytes]) -> list[tuple[int, Row]]:
        """(line number, object) of each line that is a row."""
        rows: list[tuple[int, Row]] = []
        for raw in lines:
            self._line_number += 1
            if not raw.strip():
                continue
            where = f"stdin line {self._line_number}"
            text: bytes | str = raw if self._utf8 else decode_line(raw, self._config.encoding, where)
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                if self._kind == "airbyte":
                    self.skipped_lines += 1  # connectors sometimes print stray text
                    continue
                if self._utf8:
                    decode_line(raw, "utf-8", where)  # names the byte when it is the encoding
                raise InputError(f"input: {where} is not JSON ({exc}); give one JSON object per line, or "
                                 "Airbyte messages") from None
            if self._kind is None:
                self._kind = "airbyte" if _is_airbyte_message(value) else "jsonl"
            if self._kind == "airbyte":
                row = self._record_data(value)
                if row is None:
                    self.skipped_lines += 1
                    continue
            elif isinstance(value, dict):
                row = value
            else:
                raise InputError(f"input: {where} is JSON but not an object (a {type(value).__name__}); each "
                                 "line must be one row")
            rows.append((self._line_number, row))
        return rows

    def _record_data(self, message: Any) -> Row | None:
        if not isinstance(message, dict) or message.get("type") != "RECORD":
            return None
        record = message.get("record")
        if not isinstance(record, dict) or not isinstance(record.get("data"), dict):
            return None
        wanted = self._config.stream
        if wanted is not None and record.get("stream") != wanted:
            return None
        data: Row = record["data"]
        return data

    def _shape(self, pending: list[tuple[int, Row]]) -> list[Row]:
        """Rows with exactly the fixed columns, converted to declared types, misfits flagged."""
        assert self._columns is not None
        names = [(c.name, self._names.get(c.name, c.name)) for c in self._columns]
        known = {name for name, _ in names}
        declared = self._declared or {}
        rows: list[Row] = []
        unfit: dict[int, list[str]] = {}
        for i, (_, value) in enumerate(pending):
            row: Row = {}
            problems: list[str] = []
            for name, new in names:
                cell = value.get(name)
                convert = self._convert.get(name)
                if convert is not None:
                    try:
                        cell = convert(cell)
                    except kinds.Unfit as exc:
                        cell = None
                        problems.append(unfit_message(name, str(exc), declared[name]))
                elif name in self._shapes and not self._shapes[name].fits(cell):
                    problems.append(f"column {name!r}: {_show(cell)} does not fit the type inferred from the first "
                                    f"rows ({', '.join(self._shapes[name].kinds)}); declare the columns in "
                                    "input.columns")
                    cell = None
                deep = too_deep(name, cell)
                if deep:
                    problems.append(deep)
                    cell = None
                row[new] = cell
            if self._declared is None and not value.keys() <= known:  # declared columns pick; inferred must hold all
                extra = ", ".join(map(repr, sorted(value.keys() - known)))
                problems.append(f"key(s) {extra} not among the columns fixed from the first rows; list every "
                                "column in input.columns")
            if problems:
                unfit[i] = problems
            rows.append(row)
        flag(rows, unfit, lambda i: f"stdin line {pending[i][0]}")
        return rows


def _show(value: Any) -> str:
    text = orjson.dumps(value, default=str).decode()
    return repr(text[:80] + ("…" if len(text) > 80 else ""))
