"""Parquet files: types from the footers, values exact (:mod:`arrow_values`), positions by row group.

Opening reads only the footers: the columns of all files (a column only later
files have is in the schema; int32 in one file and int64 in another unify), their
row counts, and a refusal, naming column and type, of any type that cannot flow
exactly. Rows are read one row group at a time, in batches of
``input.batch_size``, so a value that cannot be shown is named by file, row group
and row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pyarrow as pa

from connector.errors import InputError
from connector.rows import kinds
from connector.rows.arrow_values import column_values, json_schema_for, unsupported
from connector.rows.columns import Column, flag, unfit_message
from connector.rows.source_file import SourceFile
from connector.rows.table import Row


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# A column, and whether a row group must be read given that column's statistics there and its rows.
Prune = tuple[str, Callable[[Any, int], bool]]


def _kept(parquet: Any, group: int, rows: int, prune: Prune) -> bool:
    meta = parquet.metadata.row_group(group)
    for i in range(meta.num_columns):
        chunk = meta.column(i)
        if chunk.path_in_schema == prune[0]:
            return prune[1](chunk.statistics if chunk.is_stats_set else None, rows)
    return True


class ParquetFiles:
    """One or more Parquet files read as one table."""

    def __init__(self, files: list[SourceFile], declared: Mapping[str, str]) -> None:
        self._files = files
        self._declared = dict(declared)
        import pyarrow.parquet as pq  # here, not at the top: a CSV or JSONL run never loads Parquet (15 ms)

        schemas, self.rows = [], 0
        self.file_rows: list[int] = []  # rows per file, in order
        for source in files:
            path = source.name
            try:
                # One open: a remote file's footer is fetched once, by a ranged read of its tail.
                with pq.ParquetFile(source.random()) as parquet:
                    meta = parquet.metadata
                    schemas.append(parquet.schema_arrow)
            except (pa.ArrowInvalid, OSError) as exc:
                raise InputError(f"input.path: cannot read '{path}' as parquet: {_first_line(exc)}. Fix or replace "
                                 "the file, or set input.format if it is not Parquet") from None
            self.rows += meta.num_rows
            self.file_rows.append(meta.num_rows)
        try:
            self.schema = pa.unify_schemas(schemas, promote_options="permissive") if len(schemas) > 1 else schemas[0]
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InputError(f"input.path: the Parquet files do not share one schema ({_first_line(exc)}); "
                             "give files with the same column types") from None
        self.columns: list[Column] = []
        for f in self.schema:
            kind = declared.get(f.name)
            if kind is not None:
                self.columns.append(Column(f.name, kinds.json_schema(kind), kinds.arrow_type(kind), kind))
                continue
            why = unsupported(f.type)
            if why:
                raise InputError(f"input.path: column {f.name!r} is {f.type}: {why}, which cannot be sent or "
                                 "written exactly. Convert or drop the column, or declare it in input.columns "
                                 "(e.g. string)")
            self.columns.append(Column(f.name, json_schema_for(f.type), f.type))

    def batches(self, skip: int, size: int, names: Mapping[str, str], prune: Prune | None = None
                ) -> Iterator[list[Row]]:
        """Rows in file order after ``skip`` rows, in lists of up to ``size``; with ``prune`` (a column and
        a judge of its statistics in a row group), the row groups it refuses are not read at all."""
        import pyarrow.parquet as pq

        convert = {name: kinds.converter(kind, from_text=False) for name, kind in self._declared.items()}
        for source in self._files:
            path = source.name
            try:
                parquet = pq.ParquetFile(source.random())
            except (pa.ArrowInvalid, OSError) as exc:
                raise InputError(f"input.path: cannot read '{path}' as parquet: {_first_line(exc)}") from None
            with parquet:
                file_row = 0
                for group in range(parquet.num_row_groups):
                    count = parquet.metadata.row_group(group).num_rows
                    if skip >= count or (prune is not None and not _kept(parquet, group, count, prune)):
                        skip -= min(skip, count)
                        file_row += count
                        continue
                    yield from self._group(parquet, path, group, file_row, skip, size, convert, names)
                    file_row += count
                    skip = 0

    def _group(self, parquet: Any, path: str, group: int, file_row: int, skip: int, size: int,
               convert: Mapping[str, kinds.Convert], names: Mapping[str, str]) -> Iterator[list[Row]]:
        in_group = 0
        try:
            for batch in parquet.iter_batches(batch_size=size, row_groups=[group], use_threads=True):
                first = in_group
                in_group += batch.num_rows
                if skip >= batch.num_rows:
                    skip -= batch.num_rows
                    continue
                if skip:
                    batch, first, skip = batch.slice(skip), first + skip, 0
                yield self._rows(batch, path, group, first, file_row, convert, names)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"input.path: {path} row group {group} could not be read ({_first_line(exc)}); the "
                             "file is damaged or changed since it was opened") from None

    def _rows(self, batch: pa.RecordBatch, path: str, group: int, first: int, file_row: int,
              convert: Mapping[str, kinds.Convert], names: Mapping[str, str]) -> list[Row]:
        values: list[list[Any]] = []
        unfit: dict[int, list[str]] = {}
        for column in self.columns:
            at = batch.schema.get_field_index(column.name)
            if at < 0:
                values.append([None] * batch.num_rows)
                continue
            got, problems = column_values(batch.column(at))
            for i, reason in problems.items():
                unfit.setdefault(i, []).append(unfit_message(column.name, reason, None))
            if column.name in convert:
                got, bad = kinds.convert_all(got, convert[column.name])
                for i, reason in bad.items():
                    unfit.setdefault(i, []).append(unfit_message(column.name, reason, column.kind))
            values.append(got)
        out_names = [names.get(c.name, c.name) for c in self.columns]
        rows = [dict(zip(out_names, row, strict=True)) for row in zip(*values, strict=True)]

        def where(i: int) -> str:
            row = first + i
            return f"{path} row group {group}, row {row + 1} of the group (row {file_row + row + 1} of the file)"

        flag(rows, unfit, where)
        return rows
