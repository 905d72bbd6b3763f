"""Input tables: CSV, JSONL or Parquet files (a path, glob or folder, here or remote), or inline rows.

Opening a table decides its columns and their types once, for the whole input,
before the first row: CSV and JSONL files are scanned to their last byte
(:mod:`csv_source`, :mod:`jsonl_source`), Parquet footers read
(:mod:`parquet_source`), ``input.columns`` applied. Rows are then read in batches,
never as a whole table, so memory is bounded by ``input.batch_size`` (and the
parsers' block size) whatever the size of the input. Rows reach the rest of the
connector as plain dicts with every column present (a JSONL line that lacks a key
gives it as None); a row with a value that does not fit is a
:class:`~connector.rows.columns.FlawedRow`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from connector.config.input import InputConfig
from connector.errors import InputError
from connector.rows import csv_source, jsonl_source
from connector.rows.columns import Column, arrow_schema, rename_notes, renames
from connector.rows.file_columns import tagged, with_file_columns
from connector.rows.fingerprint import InputFile
from connector.rows.locations import resolve
from connector.rows.parquet_source import ParquetFiles, Prune
from connector.rows.source_file import EXTENSIONS, SourceFile
from connector.rows.spool import Spool
from connector.rows.table import Row

if TYPE_CHECKING:
    from connector.rows.file_history import FileVersion
    from connector.rows.sql_source import SqlQuery

# input.incremental files: given the files listed now, the names of those to read, in order.
Chooser = Callable[[Sequence["FileVersion"]], Sequence[str]]


def _seen(source: SourceFile) -> InputFile:
    """The file as it is now (a remote one: as its listing said)."""
    if source.is_local:
        return InputFile.stat(source.name, 0)
    return InputFile(source.name, source.size or 0, source.mtime_ns or 0, 0)


def _format(files: list[SourceFile], configured: str) -> str:
    if configured != "auto":
        return configured
    kinds = {EXTENSIONS.get(f.suffix) for f in files}
    if None in kinds:
        odd = next(f.name for f in files if f.suffix not in EXTENSIONS)
        raise InputError(
            f"input.format: cannot tell the format of '{odd}' from its extension; "
            "set input.format to csv, jsonl or parquet"
        )
    if len(kinds) > 1:
        raise InputError(f"input.path: files of several formats match ({', '.join(sorted(map(str, kinds)))}); "
                         "narrow the pattern or folder to one format")
    return str(kinds.pop())


class InputTable:
    """A table read lazily, with its columns decided when it is opened."""

    def __init__(self, config: InputConfig, reserved: Collection[str] = (), choose: Chooser | None = None) -> None:
        self._config = config
        self._choose = choose
        self._no_rows = False  # input.incremental files, and no file to read: the columns of the last one
        self._by_files = config.incremental == "files"  # each row says which file it came from (file_columns)
        self._declared = dict(config.columns or {})
        self._encoding = config.encoding
        self._inline: list[dict[str, object]] | None = None
        self._csv: list[csv_source.FileScan] = []
        self._jsonl: list[jsonl_source.FileScan] = []
        self._parquet: ParquetFiles | None = None
        self._sql: SqlQuery | None = None
        self._delimiter = ","
        columns: list[Column]
        self._files: tuple[InputFile, ...] = ()
        self._spool: Spool | None = None
        if config.rows is not None:
            self._inline = config.rows
            columns = jsonl_source.inline_columns(config.rows, self._declared)
            self._rows = len(config.rows)
        elif config.sql is not None and config.database is not None:
            from connector.rows.sql_source import SqlQuery

            self._sql = SqlQuery(config.sql, config.database, self._declared)
            columns, self._rows = self._sql.columns, self._sql.rows
        else:
            columns = self._open_files(config)
        shown = with_file_columns(columns) if self._by_files else columns  # the file's columns after the input's
        names = [c.name for c in shown]
        missing = [name for name in self._declared if name not in names]
        if missing:
            raise InputError(f"input.columns: {', '.join(map(repr, missing))} not in the input; its columns are: "
                             f"{', '.join(names) or '(none)'}")
        self._columns = columns
        self._names = renames(names, reserved, config.metadata_prefix)
        self._schema = arrow_schema(shown, self._names)
        self.notes = rename_notes(self._names) + (self._spool.notes if self._spool else [])  # for the read

    def _open_files(self, config: InputConfig) -> list[Column]:
        """The files input.path names, scanned (CSV, JSONL) or their footers read (Parquet): their columns."""
        assert config.path is not None
        files = resolve(config)
        kind = _format(files, config.format)
        if self._choose is not None:
            files = self._chosen(files, self._choose)
        self._spool = Spool(config.spool_max_mb)  # kept with the table: its copies live as long as it does
        spool = self._spool
        files = [SourceFile(spool.readable_again(f.name)) if f.is_local else f if kind == "parquet" else
                 spool.downloaded(f) for f in files]  # a remote CSV or JSONL: one download for every pass
        sizes = [_seen(f) for f in files]  # before reading: what the rows were read from
        columns: list[Column]
        if kind == "csv":
            self._delimiter = "\t" if all(f.suffix == ".tsv" for f in files) else ","
            self._csv = [csv_source.scan(f, self._encoding, self._delimiter, self._declared) for f in files]
            columns = csv_source.merged_columns(self._csv, self._declared)
            self._rows = sum(found.rows for found in self._csv)
        elif kind == "jsonl":
            self._jsonl = [jsonl_source.scan(f, self._encoding) for f in files]
            merged = jsonl_source.JsonColumns()
            for found in self._jsonl:
                merged.merge(found.found)
            columns = merged.columns(self._declared)
            self._rows = sum(found.rows for found in self._jsonl)
        else:
            self._parquet = ParquetFiles(files, self._declared)
            columns = self._parquet.columns
            self._rows = self._parquet.rows
        per_file = self._parquet.file_rows if self._parquet else [s.rows for s in self._csv or self._jsonl]
        self._files = tuple(InputFile(f.name, f.size, f.mtime_ns, rows) for f, rows in zip(sizes, per_file,
                                                                                          strict=True))
        if self._no_rows:
            self._rows, self._files = 0, ()
        return columns

    def _chosen(self, files: list[SourceFile], choose: Chooser) -> list[SourceFile]:
        """The files ``choose`` picks of those listed, in its order; none picked: the last one listed, for
        the columns only (the table then has no rows)."""
        from connector.rows.file_history import FileVersion  # input.incremental's: a plain read imports it not

        versions = []
        for found in files:
            seen = _seen(found)
            versions.append(FileVersion(found.name, seen.size, seen.mtime_ns, found.etag))
        by_name = {f.name: f for f in files}
        picked = [by_name[name] for name in choose(versions)]
        if not picked:
            self._no_rows = True
            return files[-1:]
        return picked

    @property
    def schema(self) -> pa.Schema:
        """The columns as rows carry them (renamed), each field with its declared JSON schema."""
        return self._schema

    @property
    def columns(self) -> list[str]:
        return list(self._schema.names)

    @property
    def columns_known(self) -> bool:
        return True  # decided when the file was opened

    async def start(self) -> None:
        """Nothing to do: a file's columns are decided when it is opened."""

    @property
    def renamed(self) -> dict[str, str]:
        """Input columns kept under another name (named like a metadata column): old -> new."""
        return dict(self._names)

    @property
    def files(self) -> tuple[InputFile, ...]:
        """The files read, in order, with their size and mtime when opened and their row counts."""
        return self._files

    def count_rows(self) -> int:
        """The exact row count (found when the table was opened)."""
        return self._rows

    def estimate_rows(self) -> tuple[int, bool]:
        """(rows, is_estimate): always exact, counted when the table was opened."""
        return self._rows, False

    def batches(self, skip: int = 0, prune: Prune | None = None) -> Iterator[list[Row]]:
        """Rows in input order, in lists of up to ``batch_size``, after skipping ``skip`` rows; ``prune``
        leaves out the Parquet row groups whose statistics it refuses (a cursor sync's, never with
        input.incremental files, whose row numbers count every row)."""
        if self._no_rows:
            return
        rows = self._batches(skip, prune)
        yield from tagged(rows, self._files, skip) if self._by_files else rows

    def _batches(self, skip: int, prune: Prune | None) -> Iterator[list[Row]]:
        size = self._config.batch_size
        if self._sql is not None:
            yield from self._sql.batches(skip, size, self._names)
            return
        if self._parquet is not None:
            yield from self._parquet.batches(skip, size, self._names, prune)
            return
        if self._csv:
            for found in self._csv:
                if skip >= found.rows:
                    skip -= found.rows
                    continue
                for rows in csv_source.read(found, self._columns, self._declared, self._encoding, self._delimiter,
                                            self._names, skip):
                    for start in range(0, len(rows), size):
                        yield rows[start: start + size]
                skip = 0
            return
        maker = jsonl_source.RowMaker(self._columns, self._declared, self._names)
        if self._inline is not None:
            yield from jsonl_source.read_inline(self._inline, maker, skip, size)
            return
        for scanned in self._jsonl:
            if skip >= scanned.rows:
                skip -= scanned.rows
                continue
            yield from jsonl_source.read(scanned, maker, self._encoding, skip, size)
            skip = 0

    def key_batches(self, key: str) -> Iterator[list[Row]]:
        """What the primary-key check reads: for input.sql only the column ``key`` (the database sends one
        column, not the rows), else every row (:meth:`batches`)."""
        if self._sql is None:
            yield from self.batches()
            return
        yield from self._sql.key_batches(key, self._config.batch_size, self._names)

    def cursor_field(self, column: str) -> pa.Field | None:
        """The field of input column ``column`` as its values come (None: no such column)."""
        if self._sql is not None:
            return self._sql.cursor_field(column)
        name = self._names.get(column, column)
        return self._schema.field(name) if name in self._schema.names else None

    def narrow(self, column: str, start: Any, order_also: str | None, raw: Any = None) -> tuple[int, int] | None:
        """For input.sql: the query narrowed to the rows from ``start`` on, in ``column``'s order
        (:meth:`SqlQuery.narrow`); None for files, which are filtered as they are read."""
        if self._sql is None:
            return None
        counts = self._sql.narrow(column, start, order_also, raw)
        self._rows = self._sql.rows
        return counts

    def first_row(self) -> Row | None:
        for rows in self.batches():
            if rows:
                return rows[0]
        return None
