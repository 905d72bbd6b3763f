"""``input.primary_key`` checked: every row has a key, and no two rows share one.

A destination that deduplicates on the key keeps one record per key: two rows with
the same key lose one of them without a word, and a null key is refused or merged.
So a declared key is a promise the input must keep, and breaking it is an
:class:`~connector.errors.InputError` naming both rows (or the row without a key):

- files and inline rows are checked when the table is opened, before anything is
  sent (:func:`check_keys`: one pass over the rows; the keys are held as 8-byte
  digests, about 70 bytes of memory per row); an ``input.sql`` query too, over its
  key column alone, and not at all when the database shows the keys whole and
  unique (``SqlQuery.key_batches``);
- stdin cannot be read twice, so its rows are checked as they arrive
  (:class:`KeyWatch`): the sync stops at the first row that breaks the key, after a
  STATE for the rows before it.

Keys are compared by their text (the JSON text for a number or an object), so ``1``
and ``"1"`` count as the same key.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from connector import jsonbytes
from connector.errors import InputError
from connector.rows.table import Row


def _digest(value: Any) -> int:
    text = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else jsonbytes.dumps(value)
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


class KeyWatch:
    """The keys seen so far; :meth:`see` raises InputError for a row that breaks the key."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._seen: dict[int, int] = {}  # digest -> row number of its first row
        self.rows = 0

    def see(self, row: Row) -> None:
        self.rows += 1
        value = row.get(self.key)
        if value is None or value == "":
            raise InputError(f"input.primary_key: row {self.rows:,} has no value in column {self.key!r}; a "
                             "destination that deduplicates on the key would drop or refuse it. Give every row a "
                             "key, or leave input.primary_key unset (the key is then _row_number)")
        digest = _digest(value)
        first = self._seen.setdefault(digest, self.rows)
        if first != self.rows:
            raise InputError(f"input.primary_key: rows {first:,} and {self.rows:,} have the same {self.key!r} "
                             f"({str(jsonbytes.dumps(value), 'utf-8')[:80]}); a destination that deduplicates on "
                             "the key would keep only one of them. Make the key unique, or leave input.primary_key "
                             "unset (the key is then _row_number)")

    def follow(self, batches: AsyncIterator[list[Row]]) -> AsyncIterator[list[Row]]:
        """``batches``, each row seen on its way through."""
        return self._follow(batches)

    async def _follow(self, batches: AsyncIterator[list[Row]]) -> AsyncIterator[list[Row]]:
        async for rows in batches:
            for row in rows:
                self.see(row)
            yield rows


def check_keys(batches: Iterable[list[Row]] | Iterator[list[Row]], key: str) -> None:
    """Every row of ``batches`` read once: InputError at the first row without a key or with a key seen before."""
    watch = KeyWatch(key)
    for rows in batches:
        for row in rows:
            watch.see(row)
