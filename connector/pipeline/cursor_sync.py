"""A cursor sync's checkpoints: the mark the emitted rows reached, and what the STATE says of it.

:class:`CursorTracker` follows the selected rows as they are read (:meth:`see`) and moves the
mark only when the run loop has emitted a row (:meth:`advance`), as :class:`RowHasher` does for
the fingerprint: a STATE never covers a row whose record is not out. The mark is the highest
cursor value emitted and the keys of the rows at it.

What a checkpoint says depends on the order rows come in:

- in cursor order (``input.sql``, ordered by the query): every row before the mark is emitted, so
  each checkpoint saves the mark with ``position`` 0: the next sync, resumed or not, reads the
  rows ``>=`` the mark minus its keys;
- in input order (files): a row later in the file may hold a lower value, so the mark is saved
  only when the sync has read its selection to the end. Until then a checkpoint keeps the mark
  the sync selected its rows after (``selected_from``) and the rows of that selection done
  (``position`` and the fingerprint), and a resumed sync goes on inside the same selection.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from connector.rows.cursor import CursorState, Mark, row_key, sort_key, stored
from connector.rows.cursor_table import CursorTable
from connector.rows.fingerprint import ZERO, InputFingerprint, covering
from connector.rows.table import Row


class CursorTracker:
    """The mark of the rows emitted so far (see the module doc)."""

    def __init__(self, table: CursorTable) -> None:
        self.table = table
        reached = table.reached
        self._value: Any = reached.value
        self._key = sort_key(table.kind, reached.value)
        self._keys = set(reached.keys)
        self._ahead: deque[tuple[Any, Row]] = deque()  # (sort key, row) of rows read, not yet emitted

    def see(self, row: Row) -> None:
        self._ahead.append((sort_key(self.table.kind, row.get(self.table.name)), row))

    def advance(self) -> None:
        """The next row read has been emitted (or left out by the error policy): the mark moves past it."""
        key, row = self._ahead.popleft()
        if key is None:
            if self._key is None:  # no value yet: the rows with none are the ones done
                self._keys.add(row_key(row, self.table.key_column))
            return
        if self._key is not None and key == self._key:
            self._keys.add(row_key(row, self.table.key_column))
        elif self._key is None or self.table.ordered or key > self._key:  # a query's order is the database's
            self._value, self._key = row.get(self.table.name), key
            self._keys = {row_key(row, self.table.key_column)}

    def checkpoint(self, position: int, fingerprint: InputFingerprint,
                   finished: bool) -> tuple[int, InputFingerprint, CursorState]:
        """What a checkpoint at ``position`` (rows of the selection done, ``fingerprint`` theirs) saves:
        the position, the fingerprint and the cursor state; ``finished`` when the selection was read
        to its end."""
        table = self.table
        mark = Mark(stored(table.kind, self._value), frozenset(self._keys))
        state = CursorState(table.column, table.kind, table.keyed_by, table.source, mark)
        if table.ordered or finished:
            return 0, InputFingerprint(ZERO.hex(), covering(table.files, 0)), state
        return position, fingerprint, CursorState(state.column, state.kind, state.keyed_by, state.source, mark,
                                                  table.after)

    def opening(self) -> str:
        """What the sync reads, said as it begins."""
        table = self.table
        if table.after.value is None and not table.after.keys:
            return f"cursor {table.column}: no saved value, every row is read"
        if table.after.value is None:
            return f"cursor {table.column}: every row is read but the {len(table.after.keys):,} already enriched"
        return (f"cursor {table.column}: reading the rows past {table.after.value!r}, and the rows at it not among "
                f"the {len(table.after.keys):,} already enriched")

    def summary(self, done: int) -> str:
        """The run summary's cursor part: rows read, skipped as already enriched or null, enriched."""
        table, skipped = self.table, self.table.skipped
        column = table.column
        past = "" if table.after.value is None else f" (at or before {table.after.value!r})"
        nulls = f", {skipped.nulls:,} skipped with a null {column}" if skipped.nulls else ""
        reached = "none yet" if self._value is None else repr(stored(table.kind, self._value))
        return (f"; cursor {column}: {skipped.before + skipped.nulls + done:,} rows read, {skipped.before:,} skipped "
                f"as already enriched{past}{nulls}, {done:,} enriched; highest {column} enriched: {reached}")
