"""Enriched rows to a Parquet, CSV or JSONL file, in batches, with column types fixed up front.

The Arrow schema is decided before the first row, from the discovered stream's
JSON schema, never from the data, so every batch (and every run) has the same
column types whatever the answers were:

- columns and their order are the JSON schema's properties;
- input columns keep the type the input has (a Parquet file's own types, or the
  types the rows stage decided for CSV, JSONL and stdin), every value rebuilt
  exactly from its JSON form (:mod:`connector.standalone.arrow_build`): ns
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

from connector.errors import OutputError
from connector.jsonbytes import dumps
from connector.standalone.arrow_build import build_array

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


def _non_null_types(prop: Mapping[str, Any]) -> list[str]:
    kind = prop.get("type")
    kinds = [kind] if isinstance(kind, str) else list(kind or [])
    return [k for k in kinds if k != "null"]


def arrow_type_for(prop: Mapping[str, Any]) -> pa.DataType | None:
    """The Arrow type of one JSON schema property, or None when it is written as JSON text."""
    kinds = _non_null_types(prop)
    if len(kinds) != 1:
        return None
    kind = kinds[0]
    if kind == "string":
        fmt = prop.get("format")
        if fmt == "date":
            return pa.date32()
        if fmt == "date-time":
            return pa.timestamp("us", tz="UTC" if prop.get("airbyte_type") == "timestamp_with_timezone" else None)
        if fmt == "time":
            return pa.time64("us")
        return pa.string()
    if kind == "integer":
        return pa.int64()
    if kind == "number":
        return pa.float64()
    if kind == "boolean":
        return pa.bool_()
    if kind == "array":
        items = prop.get("items")
        inner = arrow_type_for(items) if isinstance(items, Mapping) else None
        return pa.list_(inner) if inner is not None else None
    if kind == "object":
        props = prop.get("properties")
        if not isinstance(props, Mapping) or not props:
            return None
        fields = []
        for name, sub in props.items():
            sub_type = arrow_type_for(sub) if isinstance(sub, Mapping) else None
            if sub_type is None:
                return None
            fields.append(pa.field(name, sub_type))
        return pa.struct(fields)
    return None


def _csv_native(kind: pa.DataType) -> bool:
    """Types a CSV cell shows exactly as the record does; the rest are written as the record's text."""
    t = pa.types
    return bool(t.is_boolean(kind) or t.is_integer(kind) or t.is_floating(kind) or t.is_string(kind)
                or t.is_large_string(kind) or t.is_date32(kind))  # Arrow writes a decimal 1E-9: not as the record


class Columns:
    """The output schema, and which columns hold JSON text."""

    def __init__(self, json_schema: Mapping[str, Any], input_schema: pa.Schema | None, fmt: str) -> None:
        fields: list[pa.Field] = []
        self.as_text: set[str] = set()
        given = {f.name: f.type for f in input_schema} if input_schema is not None else {}
        for name, prop in (json_schema.get("properties") or {}).items():
            kind = given.get(name)
            if kind is None or pa.types.is_null(kind):
                kind = arrow_type_for(prop)
            if kind is None or (fmt == "csv" and not _csv_native(kind)):
                kind = pa.string()
                self.as_text.add(name)
            fields.append(pa.field(name, kind))
        self.schema = pa.schema(fields)

    def batch(self, rows: list[dict[str, Any]]) -> pa.RecordBatch:
        arrays = []
        for field in self.schema:
            name = field.name
            values = [row.get(name) for row in rows]
            try:
                arrays.append(build_array(values, field.type))  # text columns take any value as JSON text
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError,
                    ValueError) as exc:
                bad = next((v for v in values if v is not None), None)
                raise OutputError(f"column '{name}' ({field.type}): a value does not fit ({exc}); e.g. "
                                  f"{str(bad)[:80]!r}. Declare the column's type (input.columns) or fix the "
                                  "input") from None
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


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

    def flush(self) -> None:
        rows, self._pending = self._pending, []
        if not rows:
            return
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
        self.flush()
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
