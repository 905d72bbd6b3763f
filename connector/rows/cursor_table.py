"""A cursor sync's rows: the input table narrowed to the rows after the STATE's cursor mark.

:class:`CursorTable` is a :class:`~connector.rows.table.Table` like any other, so the run loop,
its position and the STATE's fingerprint apply to the rows it hands on (the *selection*). For
``input.sql`` the narrowing is pushed into the query (:meth:`SqlQuery.narrow`: ``>=`` a bound
parameter, ordered by the cursor); files are filtered as they are read, in input order. Either
way the rows at the mark whose keys the STATE lists (enriched by an earlier sync) are dropped
here, and every row left out is counted for the run's summary (:class:`Skipped`).

Null cursor values: a sync with no mark yet (the first, or after a reset) reads every row, nulls
included; later syncs skip rows whose cursor is null, and count them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa

from connector.config.input import InputConfig
from connector.errors import ConfigError, InputError, StateError
from connector.rows.cursor import (
    ROW_HASH,
    CursorState,
    CursorValueError,
    Mark,
    bind_value,
    cursor_kind,
    row_key,
    sort_key,
    source_of,
)
from connector.rows.files import InputTable
from connector.rows.fingerprint import InputFile
from connector.rows.parquet_source import Prune
from connector.rows.table import Row


@dataclass
class Skipped:
    """Rows a cursor sync left out: enriched by an earlier sync (before the mark, or at it with a saved
    key), and with a null cursor."""

    before: int = 0
    nulls: int = 0


class CursorTable:
    """The rows of ``table`` after the mark of ``saved`` (every row without one); see the module doc."""

    def __init__(self, table: InputTable, config: InputConfig, saved: CursorState | None) -> None:
        assert config.cursor is not None
        column = self.column = config.cursor
        self._table = table
        self._declared = set(config.columns or {})
        field = table.cursor_field(column)
        if field is None:
            raise ConfigError(f"input.cursor: column {column!r} is not in the input; its columns are: "
                              f"{', '.join(table.columns) or '(none)'}")
        self.kind = cursor_kind(pa.schema([field]), column)
        self.keyed_by, self.source = config.primary_key or ROW_HASH, source_of(config)
        self.notes = list(table.notes)
        if config.primary_key is None:
            self.notes.append("input.cursor is set without input.primary_key: _row_number counts the rows of each "
                              "sync, so a destination that deduplicates on it would merge rows of different syncs; "
                              "set input.primary_key")
        self.reached = self._checked(saved)  # the mark the STATE reached: the tracker goes on from it
        start = (saved.selected_from or saved.mark) if saved is not None else Mark()
        if saved is not None and saved.keyed_by != self.keyed_by:
            self.notes.append(f"input.cursor: the state keys the rows at its cursor value by {saved.keyed_by}, the "
                              f"config now by {self.keyed_by}: the rows at {start.value!r} are read again (answers "
                              "already cached are not bought again)")
            start = Mark(start.value)
        self.after = start
        self._start_key = self._key(start.value, "the state's cursor value")
        names = table.renamed
        self.name, self.key_column = names.get(column, column), names.get(config.primary_key or "", config.primary_key)
        pushed = table.narrow(column, None if self._start_key is None else bind_value(self.kind, self._start_key),
                              config.primary_key, start.value)
        self.ordered = pushed is not None  # rows come in cursor order: every checkpoint can move the mark
        self._pushed = Skipped(*pushed) if pushed else Skipped()
        self._read = Skipped()
        self._number = 0

    def _checked(self, saved: CursorState | None) -> Mark:
        if saved is None:
            return Mark()
        if saved.source != self.source:
            raise StateError("input.cursor: the state's cursor was saved for another input (another path, query or "
                             "database): reading on from it would skip rows this input never had enriched. Reset the "
                             "stream's state (run without --state, or clear it in the platform) to read it from the "
                             "start")
        valued = saved.mark.value is not None or (saved.selected_from is not None
                                                  and saved.selected_from.value is not None)
        if valued and (saved.column != self.column or saved.kind != self.kind):  # a value to misplace rows
            was, now = f"{saved.column!r} ({saved.kind})", f"{self.column!r} ({self.kind})"
            raise ConfigError(f"input.cursor: the state's cursor is {was}, the config's is {now}; a value saved for "
                              "one cannot place rows of the other. Set input.cursor back, cast the column in the "
                              "query to its former type, or reset the stream's state to read every row again "
                              "(answers already cached are not bought again)")
        return saved.mark

    def _key(self, value: Any, where: str) -> Any:
        try:
            return sort_key(self.kind, value)
        except CursorValueError as exc:
            raise InputError(f"input.cursor: {where} in column {self.column!r}: {exc}") from None

    @property
    def skipped(self) -> Skipped:
        """Rows left out so far (a file's: counted as they are read)."""
        return Skipped(self._pushed.before + self._read.before, self._pushed.nulls + self._read.nulls)

    def selected(self, row: Row, number: int) -> bool:
        """Whether ``row`` (row ``number`` of the input) is one this sync reads; counts the ones it is not."""
        value = row.get(self.name)
        start = self._start_key
        if value is None:
            if start is None:
                return self._unseen(row)
            self._read.nulls += 1
            return False
        if start is None:
            return True
        key = self._key(value, f"row {number:,}")
        try:
            if key == start:
                return self._unseen(row)
            if self.ordered or key > start:  # a query's rows are >= the mark by the database's own order
                return True
        except TypeError:  # timestamps with and without an offset in one column
            raise InputError(f"input.cursor: row {number:,} has {value!r} in column {self.column!r}, which cannot be "
                             f"ordered against the state's {self.after.value!r} (one has a UTC offset, the other "
                             "not); give every value of the column an offset, or none") from None
        self._read.before += 1
        return False

    def _prune(self) -> Prune | None:
        """For Parquet: skip the row groups whose statistics put every cursor value before the mark
        (values as the file holds them: not for a column input.columns converts)."""
        if self._start_key is None or self.ordered or self.column in self._declared:
            return None
        return self.column, self._group_needed

    def _group_needed(self, stats: Any, rows: int) -> bool:
        if stats is None or not stats.has_min_max:
            return True
        try:
            high = stats.max
            high = high.isoformat() if isinstance(high, date) else high
            if sort_key(self.kind, high) >= self._start_key:
                return True
        except (ValueError, TypeError, ArithmeticError):  # a statistic this kind cannot read: read the group
            return True
        nulls = stats.null_count if stats.has_null_count else 0
        self._number += rows
        self._read.nulls += nulls
        self._read.before += rows - nulls
        return False

    def _unseen(self, row: Row) -> bool:
        if self.after.keys and row_key(row, self.key_column) in self.after.keys:
            self._read.before += 1
            return False
        return True

    # The Table protocol: the input table's, over the selected rows.

    @property
    def schema(self) -> pa.Schema:
        return self._table.schema

    @property
    def columns(self) -> list[str]:
        return self._table.columns

    @property
    def columns_known(self) -> bool:
        return True

    async def start(self) -> None:
        """Nothing to do: a file's or query's columns are known when it is opened."""

    def estimate_rows(self) -> tuple[int, bool] | None:
        """A query's selected rows (counted by the database), a file's every row when there is no mark
        yet; None for a file with a mark (which rows are past it is known only once they are read)."""
        if not self.ordered and self._start_key is not None:
            return None
        return max(self._table.count_rows() - len(self.after.keys), 0), False

    def count_rows(self) -> int | None:
        sized = self.estimate_rows()
        return None if sized is None else sized[0]

    @property
    def files(self) -> tuple[InputFile, ...]:
        return self._table.files

    def first_row(self) -> Row | None:
        return self._table.first_row()

    def batches(self, skip: int = 0) -> Iterator[list[Row]]:
        """The selected rows in order, in the input's batches, after ``skip`` of them."""
        self._read = Skipped()
        self._number = 0  # rows of the input passed, skipped row groups included (for messages)
        for rows in self._table.batches(prune=self._prune()):
            kept = []
            for row in rows:
                self._number += 1
                if self.selected(row, self._number):
                    kept.append(row)
            if skip >= len(kept):
                skip -= len(kept)
                continue
            yield kept[skip:]
            skip = 0
