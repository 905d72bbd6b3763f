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
declares the columns listed in ``input.columns``. ``read`` keeps exactly those;
without the list it infers them (names and types) from the first rows (the
first batch, or what arrived within :data:`INFER_WAIT` seconds) and keeps them:
later keys are dropped, missing ones are null.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from typing import Any, BinaryIO

import orjson
import pyarrow as pa

from connector.config.input import InputConfig
from connector.errors import InputError
from connector.rows.files import InputTable
from connector.rows.table import Row, Table

INFER_WAIT = 1.0
_AIRBYTE_TYPES = frozenset({"RECORD", "STATE", "LOG", "TRACE", "SPEC", "CATALOG", "CONNECTION_STATUS", "CONTROL"})
_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "object": pa.map_(pa.string(), pa.string()),  # declared as a JSON object: its keys are not known
    "array": pa.list_(pa.string()),
}
_SAMPLE_VALUES: dict[str, Any] = {"string": "", "integer": 0, "number": 0.0, "boolean": False,
                                  "object": {}, "array": []}


def _is_airbyte_message(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") in _AIRBYTE_TYPES and \
        any(isinstance(value.get(k), dict) for k in ("record", "log", "state", "trace", "spec", "catalog",
                                                     "connectionStatus", "control"))


def _lines_of(stream: BinaryIO) -> Iterator[bytes]:
    """The stream's lines. A real file descriptor is read with ``os.read``, not through Python's
    buffered reader: a daemon thread blocked inside that reader holds its lock, and the
    interpreter aborts when it needs the lock at exit (a pipe closed downstream, a spend guard)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        yield from stream
        return
    pending = b""
    while chunk := os.read(fd, 1 << 16):
        pending += chunk
        end = pending.rfind(b"\n") + 1
        if end:
            for line in pending[: end - 1].split(b"\n"):
                yield line + b"\n"
            pending = pending[end:]
    if pending:
        yield pending


class _Lines:
    """Lines of a binary stream, read by a daemon thread, awaited on the event loop.

    At most ``buffered`` lines wait in memory; the thread blocks until the loop takes some.
    """

    def __init__(self, stream: BinaryIO, buffered: int) -> None:
        self._stream = stream
        self._room = threading.Semaphore(buffered)
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._done = False
        threading.Thread(target=self._pump, name="stdin-reader", daemon=True).start()

    def _put(self, item: bytes | BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening any more
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _pump(self) -> None:
        try:
            for line in _lines_of(self._stream):
                self._room.acquire()
                if self._closed:
                    return
                self._put(line)
        except (OSError, ValueError) as exc:
            self._put(exc)
            return
        self._put(None)

    async def take(self, most: int) -> list[bytes] | None:
        """The next lines (at least one, at most ``most``, whatever is there); None at the end."""
        if self._done:
            return None
        out: list[bytes] = []
        item = await self._queue.get()
        while True:
            if item is None:
                self._done = True
                break
            if isinstance(item, BaseException):
                raise InputError(f"input: reading standard input failed: {item}")
            out.append(item)
            self._room.release()
            if len(out) >= most or self._queue.empty():
                break
            item = self._queue.get_nowait()
        return out or None

    async def take_for(self, most: int, seconds: float) -> list[bytes] | None:
        """Like :meth:`take`, but keep collecting for up to ``seconds`` (to infer columns from more rows)."""
        first = await self.take(most)
        if first is None:
            return None
        deadline = self._loop.time() + seconds
        while len(first) < most and not self._done:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                break
            try:
                more = await asyncio.wait_for(self.take(most - len(first)), remaining)
            except asyncio.TimeoutError:
                break
            if more is None:
                break
            first.extend(more)
        return first

    def close(self) -> None:
        self._closed = True
        self._room.release()


class StdinTable:
    """The input table on stdin, with the same surface as :class:`~connector.rows.files.InputTable`
    except that :meth:`batches` is an async iterator."""

    def __init__(self, config: InputConfig, stream: BinaryIO | None = None,
                 reserved: Collection[str] = ()) -> None:
        self._config = config
        self._stream = stream
        self._reserved = frozenset(reserved)  # the names of the columns the run adds to each record
        self._kind: str | None = None if config.format == "auto" else config.format
        self._declared = dict(config.columns) if config.columns is not None else None
        self._columns: list[str] | None = list(self._declared) if self._declared is not None else None
        self._schema: pa.Schema | None = None
        if self._declared is not None:
            self._schema = pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in self._declared.items()])
        self._lines: _Lines | None = None
        self._first: list[Row] = []  # rows read to infer the columns, handed out first
        self._line_number = 0
        self.skipped_lines = 0  # non-RECORD lines of Airbyte input
        self.notes: list[str] = []  # warnings for the read to pass on

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

    def count_rows(self) -> int | None:
        return None

    def estimate_rows(self) -> tuple[int, bool] | None:
        return None

    def first_row(self) -> Row | None:
        """A stand-in row for ``check``, which never reads stdin: an empty value of each declared type."""
        if self._declared is None:
            return None
        return {name: _SAMPLE_VALUES[kind] for name, kind in self._declared.items()}

    # Reading ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin reading; without declared columns, infer them from the first rows."""
        if self._lines is not None:
            return
        stream = self._stream if self._stream is not None else sys.stdin.buffer
        size = self._config.batch_size
        self._lines = _Lines(stream, buffered=max(size * 4, 1024))
        if self._schema is not None:
            return
        while True:
            lines = await self._lines.take_for(size, INFER_WAIT)
            if lines is None:
                break
            self._first = self._parse(lines)
            if self._first:
                break
        schema = infer_schema(self._first)
        # Rows from another enrichment carry its metadata columns: they would clash with ours.
        theirs = [name for name in schema.names if name in self._reserved]
        if theirs:
            schema = pa.schema([f for f in schema if f.name not in self._reserved])
            self.notes.append(f"input: stdin column(s) {', '.join(theirs)} have the names of this connector's "
                              "metadata columns and are left out; list the columns to keep in input.columns")
        self._schema = schema
        self._columns = list(schema.names)
        self._first = [self._shape(row) for row in self._first]

    async def batches(self, skip: int = 0) -> AsyncIterator[list[Row]]:
        """Rows as they arrive, in lists of what was there (at most ``batch_size``), after ``skip`` rows."""
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
                        yield pending[skip:]
                        skip = 0
                lines = await self._lines.take(self._config.batch_size)
                if lines is None:
                    return
                pending = [self._shape(row) for row in self._parse(lines)]
        finally:
            self._lines.close()

    # Lines to rows ------------------------------------------------------------------------------

    def _parse(self, lines: list[bytes]) -> list[Row]:
        rows: list[Row] = []
        for raw in lines:
            self._line_number += 1
            if not raw.strip():
                continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                if self._kind == "airbyte":
                    self.skipped_lines += 1  # connectors sometimes print stray text
                    continue
                raise InputError(f"input: stdin line {self._line_number} is not JSON ({exc}); "
                                 "give one JSON object per line, or Airbyte messages") from None
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
                raise InputError(f"input: stdin line {self._line_number} is JSON but not an object "
                                 f"(a {type(value).__name__}); each line must be one row")
            rows.append(row)
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

    def _shape(self, row: Row) -> Row:
        columns = self._columns
        if columns is None:
            return row
        return {name: row.get(name) for name in columns}


def infer_schema(rows: list[Row]) -> pa.Schema:
    """Column names in first-seen order; each column's type as pyarrow infers it (text when mixed)."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    fields = []
    for name in names:
        try:
            kind = pa.array([row.get(name) for row in rows]).type
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            kind = pa.string()
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def open_input(config: InputConfig, stdin: BinaryIO | None = None, reserved: Collection[str] = ()) -> Table:
    """The input table the config names; stdin is only read once a read starts.

    ``reserved``: column names the run adds to each record; inferred stdin columns
    with those names are left out (with a note)."""
    if config.is_stdin:
        return StdinTable(config, stdin, reserved)
    return InputTable(config)


def numbered_rows(
    batches: Iterator[list[Row]] | AsyncIterator[list[Row]],
    start: int,
    stop: Callable[[], bool],
) -> Iterator[tuple[int, Row]] | AsyncIterator[tuple[int, Row]]:
    """(position, row) pairs from ``start`` on, until the batches end or ``stop()`` says so.

    Stays a plain iterator over a file's batches (no await per row) and becomes an async
    one over stdin's.
    """
    if isinstance(batches, AsyncIterator):
        return _numbered_async(batches, start, stop)
    return _numbered(batches, start, stop)


def _numbered(batches: Iterator[list[Row]], start: int, stop: Callable[[], bool]) -> Iterator[tuple[int, Row]]:
    position = start
    for batch in batches:
        for row in batch:
            if stop():
                return
            yield position, row
            position += 1


async def _numbered_async(batches: AsyncIterator[list[Row]], start: int,
                          stop: Callable[[], bool]) -> AsyncIterator[tuple[int, Row]]:
    position = start
    async for batch in batches:
        for row in batch:
            if stop():
                return
            yield position, row
            position += 1


def row_for_check(config: InputConfig, template: Any) -> Row | None:
    """The row ``check`` renders the template with, after checking the template's columns.

    A file's first row; for stdin, which ``check`` never reads, a stand-in row with an
    empty value of each declared column's type (of each template column when none are declared).
    """
    table = open_input(config)
    if isinstance(table, StdinTable):
        if table.columns_known:
            template.check_columns(table.columns)
            return table.first_row()
        return dict.fromkeys(template.columns, "")
    template.check_columns(table.columns)
    return table.first_row()
