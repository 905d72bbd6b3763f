"""Enriched rows to a Parquet, CSV or JSONL file, in batches, with column types fixed up front.

The Arrow schema is decided before the first row, from the discovered stream's
JSON schema, never from the data, so every batch (and every run) has the same
column types whatever the answers were:

- columns and their order are the JSON schema's properties;
- input columns keep the type the input has (a Parquet file's own types, or the
  types the rows stage decided for CSV, JSONL and stdin), every value rebuilt
  exactly from its JSON form (:mod:`connector.answers.arrow_build`): ns
  timestamps, durations, decimals, maps, binary and dictionary columns included;
- every other column gets the Arrow type of its JSON schema type: integer
  int64, number float64, boolean bool, string string (``format`` date, date-time
  and time: date32, timestamp[us], time64[us]), a typed array a list, an object
  with typed properties a struct; anything looser (several types, an object
  without properties) is JSON text;
- CSV holds numbers, booleans, text and dates as themselves; every other type
  (decimals, lists, structs, maps, timestamps, durations, binary) is written as
  the text the record holds (every digit, JSON text, ISO 8601, base64).

Rows are buffered up to ``batch_rows`` and written batch by batch (memory stays
bounded), to ``<output>.partial``, renamed over ``<output>`` once complete.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from connector.answers.arrow_schema import Columns
from connector.errors import OutputError
from connector.jsonbytes import dumps

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def format_for(path: str, given: str | None = None) -> str:
    """The output format: given, or from the file extension."""
    if given:
        return given
    if path == "-":
        return "jsonl"
    kind = FORMATS.get(Path(path).suffix.lower())
    if kind is None:
        raise OutputError(f"--output: cannot tell the format of '{path}' from its extension; "
                          "use .parquet, .csv or .jsonl, or pass --format")
    return kind


class TableWriter:
    """Writes rows to ``path`` in ``fmt`` in batches; :meth:`close` makes the file appear whole."""

    def __init__(self, path: str, fmt: str, json_schema: Mapping[str, Any], input_schema: pa.Schema | None,
                 batch_rows: int = 1024, stdout: BinaryIO | None = None) -> None:
        self.path = path
        self.fmt = fmt
        self.columns = Columns(json_schema, input_schema, fmt)
        # A pipe gets each record as soon as it and every earlier row are done; a file, in batches.
        self.batch_rows = 1 if path == "-" else max(1, batch_rows)
        self.rows_written = 0
        self._pending: list[dict[str, Any]] = []
        self._to_stdout = path == "-"
        self._partial = path if self._to_stdout else f"{path}.partial"
        self._writer: Any = None
        self._file: BinaryIO | None = stdout if self._to_stdout else None
        if self._to_stdout and fmt != "jsonl":
            raise OutputError("--output -: standard output takes JSONL only")
        if not self._to_stdout:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                if self.columns.unsized:
                    open(self._partial, "wb").close()  # writable? the writer opens at the first vector
                else:
                    self._open()
            except OSError as exc:
                raise OutputError(f"--output: cannot write '{path}': {exc.strerror or exc}") from None

    def _open(self) -> None:
        schema = self.columns.schema
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(self._partial, schema, compression="zstd")
        elif self.fmt == "csv":
            import pyarrow.csv as pacsv

            self._writer = pacsv.CSVWriter(self._partial, schema)
        elif self.fmt == "jsonl":
            self._file = open(self._partial, "wb")  # noqa: SIM115 - closed in close()/abort()
        else:
            raise OutputError(f"--format: unknown output format '{self.fmt}' (parquet, csv or jsonl)")

    def add(self, row: dict[str, Any]) -> None:
        self._pending.append(row)
        if len(self._pending) >= self.batch_rows:
            self.flush()

    def flush(self, final: bool = False) -> None:
        unopened = self._writer is None and self._file is None
        if unopened and not self.columns.settle(self._pending) and not final:
            return  # a vector's length is not known yet: the rows wait for the first vector
        rows, self._pending = self._pending, []
        if not rows:
            return
        if unopened:
            self._open()
        try:
            if self.fmt == "jsonl":
                names = self.columns.schema.names
                assert self._file is not None
                self._file.write(b"".join(dumps({n: row.get(n) for n in names}) + b"\n" for row in rows))
                self._file.flush()
            else:
                self._writer.write_batch(self.columns.batch(rows))
        except OSError as exc:  # a full disk, /dev/full, a quota (a closed pipe is the caller's)
            if isinstance(exc, BrokenPipeError):
                raise
            where = "standard output" if self._to_stdout else f"'{self.path}'"
            raise OutputError(f"--output: cannot write {where}: {exc.strerror or exc}") from None
        self.rows_written += len(rows)

    def close(self) -> None:
        """Write what is left and put the file in place."""
        self.flush(final=True)
        if self._writer is None and self._file is None and not self._to_stdout:
            self._open()  # no row at all: the file still has its columns
        self._finish()
        if not self._to_stdout:
            os.replace(self._partial, self.path)

    def abort(self) -> None:
        """Leave no half-written file behind."""
        with contextlib.suppress(OSError, pa.ArrowException):
            self._finish()
        if not self._to_stdout:
            Path(self._partial).unlink(missing_ok=True)

    def _finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is not None and not self._to_stdout:
            self._file.close()
            self._file = None
