"""Input tables: CSV, JSONL or Parquet files (a path, glob or folder), or inline rows.

Files are read with pyarrow datasets in batches, never as a whole table, so memory
is bounded by ``input.batch_size`` whatever the size of the input. Rows reach the
rest of the connector as plain dicts with every schema column present (a JSONL
line that lacks a key gives that key as None).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from connector.config.input import InputConfig
from connector.errors import InputError
from connector.rows.table import Row

_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}



def _files(path: str) -> list[str]:
    expanded = os.path.expanduser(path)
    if any(ch in expanded for ch in "*?["):
        matches = sorted(p for p in glob.glob(expanded, recursive=True) if os.path.isfile(p))
        if not matches:
            raise InputError(f"input.path: no file matches '{path}'; check the pattern and folder")
        return matches
    p = Path(expanded)
    if p.is_dir():
        found = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in _EXTENSIONS)
        if not found:
            raise InputError(f"input.path: folder '{path}' holds no .csv, .jsonl or .parquet file")
        return found
    if not p.exists():
        raise InputError(f"input.path: file '{path}' does not exist (relative paths start at {os.getcwd()})")
    if not os.access(p, os.R_OK):
        raise InputError(f"input.path: file '{path}' is not readable (permissions)")
    return [str(p)]


def _format(files: list[str], configured: str) -> str:
    if configured != "auto":
        return configured
    kinds = {_EXTENSIONS.get(Path(f).suffix.lower()) for f in files}
    if None in kinds:
        odd = next(f for f in files if Path(f).suffix.lower() not in _EXTENSIONS)
        raise InputError(
            f"input.format: cannot tell the format of '{odd}' from its extension; "
            "set input.format to csv, jsonl or parquet"
        )
    if len(kinds) > 1:
        raise InputError(f"input.path: files of several formats match ({', '.join(sorted(map(str, kinds)))}); "
                         "narrow the pattern or folder to one format")
    return str(kinds.pop())


class InputTable:
    """A lazily read table with a known schema."""

    def __init__(self, config: InputConfig) -> None:
        self._config = config
        self._dataset: Any = None
        self._inline: pa.Table | None = None
        if config.rows is not None:
            try:
                self._inline = pa.Table.from_pylist(config.rows)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise InputError(f"input.rows: the rows do not form a table: {exc}") from None
        else:
            assert config.path is not None
            self._open(config.path)

    def _open(self, path: str) -> None:
        import pyarrow.dataset as ds

        files = _files(path)
        kind = _format(files, self._config.format)
        fmt: Any
        if kind == "csv":
            import pyarrow.csv as pacsv

            delimiter = "\t" if all(f.lower().endswith(".tsv") for f in files) else ","
            fmt = ds.CsvFileFormat(
                parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
            )
        elif kind == "jsonl":
            fmt = ds.JsonFileFormat()
        else:
            fmt = ds.ParquetFileFormat()
        try:
            schema = None
            if len(files) > 1:
                # A dataset takes its schema from the first file; a column that only
                # later files have would be dropped without a word. Unify them all.
                schema = pa.unify_schemas(
                    [ds.dataset(f, format=fmt).schema for f in files], promote_options="permissive"
                )
            self._dataset = ds.dataset(files, format=fmt, schema=schema)
            self._dataset.schema  # noqa: B018 - forces the first file's header or footer to be read
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
            raise InputError(
                f"input.path: cannot read '{path}' as {kind}: {_first_line(exc)}. Fix or replace the file, "
                f"or set input.format if it is not {kind}"
            ) from None

    @property
    def schema(self) -> pa.Schema:
        if self._inline is not None:
            return self._inline.schema
        return self._dataset.schema

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def count_rows(self) -> int | None:
        """Row count when it is cheap to know (inline rows, Parquet metadata)."""
        if self._inline is not None:
            return int(self._inline.num_rows)
        import pyarrow.dataset as ds

        if isinstance(self._dataset.format, ds.ParquetFileFormat):
            rows: int = self._dataset.count_rows()
            return rows
        return None

    def estimate_rows(self) -> tuple[int, bool] | None:
        """(rows, is_estimate): counted where cheap, else estimated from CSV/JSONL file sizes."""
        exact = self.count_rows()
        if exact is not None:
            return exact, False
        import pyarrow.dataset as ds

        from connector.rows.sizing import estimate_line_rows

        header = 1 if isinstance(self._dataset.format, ds.CsvFileFormat) else 0
        guess = estimate_line_rows(list(self._dataset.files), header_lines=header)
        return None if guess is None else (guess, True)

    def batches(self, skip: int = 0) -> Iterator[list[Row]]:
        """Rows in input order, in lists of up to ``batch_size``, after skipping ``skip`` rows."""
        size = self._config.batch_size
        if self._inline is not None:
            source: Iterator[pa.RecordBatch] = iter(self._inline.to_batches(max_chunksize=size))
        else:
            source = self._dataset.to_batches(batch_size=size, use_threads=True)
        try:
            for batch in source:
                if skip >= batch.num_rows:
                    skip -= batch.num_rows
                    continue
                if skip:
                    batch, skip = batch.slice(skip), 0
                yield batch.to_pylist()
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
            raise InputError(f"input.path: reading failed part-way: {_first_line(exc)}") from None

    def first_row(self) -> Row | None:
        for rows in self.batches():
            if rows:
                return rows[0]
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# pyarrow type -> JSON schema, with Airbyte's type hints where they matter.
def json_schema_for(arrow_type: pa.DataType) -> dict[str, Any]:
    """The JSON schema of one pyarrow column (always nullable)."""
    t = pa.types
    if t.is_boolean(arrow_type):
        return {"type": ["null", "boolean"]}
    if t.is_integer(arrow_type):
        return {"type": ["null", "integer"]}
    if t.is_floating(arrow_type) or t.is_decimal(arrow_type):
        return {"type": ["null", "number"]}
    if t.is_timestamp(arrow_type):
        tz = "timestamp_with_timezone" if arrow_type.tz else "timestamp_without_timezone"
        return {"type": ["null", "string"], "format": "date-time", "airbyte_type": tz}
    if t.is_date(arrow_type):
        return {"type": ["null", "string"], "format": "date"}
    if t.is_time(arrow_type):
        return {"type": ["null", "string"], "format": "time", "airbyte_type": "time_without_timezone"}
    if t.is_list(arrow_type) or t.is_large_list(arrow_type) or t.is_fixed_size_list(arrow_type):
        return {"type": ["null", "array"], "items": json_schema_for(arrow_type.value_type)}
    if t.is_struct(arrow_type):
        props = {arrow_type.field(i).name: json_schema_for(arrow_type.field(i).type)
                 for i in range(arrow_type.num_fields)}
        return {"type": ["null", "object"], "properties": props}
    if t.is_map(arrow_type):
        return {"type": ["null", "object"]}
    if t.is_null(arrow_type):
        return {"type": ["null", "string"]}
    return {"type": ["null", "string"]}
