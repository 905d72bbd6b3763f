"""Resuming from a STATE: the rows it covers read again and checked against its fingerprint.

:class:`RowHasher` follows the rows as they are read, in order, and knows the
fingerprint (:mod:`connector.rows.fingerprint`) of rows 1..N for each N the run
loop has emitted, although rows are read ahead of emission. :func:`verified_rows`
reads rows 1..N of the input (they are not enriched again), compares their hash
with the STATE's, and hands on the rows after N; a STATE that does not match is a
:class:`~connector.errors.StateError` naming what changed, before anything is sent.

The input is read once, from its first row: a pipe or stdin is not opened twice,
and rows 1..N are not kept.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from itertools import accumulate

from connector.errors import StateError
from connector.rows.fingerprint import ZERO, InputFile, InputFingerprint, chain, changes, covering
from connector.rows.opening import numbered_rows
from connector.rows.table import Row, Table

Rows = Iterator[tuple[int, Row]] | AsyncIterator[tuple[int, Row]]


class RowHasher:
    """The chain over the rows read so far, and its value at the last row emitted.

    ``per_file`` (input.incremental files): the chain starts again at each file's first row, and
    the fingerprint covers the rows emitted of the file being read only (:meth:`split`)."""

    def __init__(self, files: tuple[InputFile, ...] = (), per_file: bool = False) -> None:
        self._files = files
        self._read = ZERO
        self._ahead: deque[bytes] = deque()  # h_i of rows read but not yet emitted
        self._done = ZERO
        self.emitted = 0
        self._per_file = per_file
        self._seen = 0
        self._firsts = set(accumulate((f.rows for f in files), initial=0)) if per_file else set()

    def see(self, row: Row) -> None:
        if self._seen in self._firsts:
            self._read = ZERO  # a file's first row (per_file)
        self._seen += 1
        self._read = chain(self._read, row)
        self._ahead.append(self._read)

    def advance(self) -> None:
        """The next row read has been emitted (or left out by the error policy)."""
        self._done = self._ahead.popleft()
        self.emitted += 1

    def fingerprint(self) -> InputFingerprint:
        """The fingerprint of the rows emitted so far (per_file: of the file being read)."""
        if not self._per_file:
            return InputFingerprint(self._done.hex(), covering(self._files, self.emitted))
        _done, within, current = self.split()
        return InputFingerprint((self._done if within else ZERO).hex(), (current,) if current and within else ())

    def split(self) -> tuple[tuple[InputFile, ...], int, InputFile | None]:
        """(the files whose rows are all emitted, rows emitted of the next one, that file or None)."""
        held = 0
        for i, found in enumerate(self._files):
            if self.emitted < held + found.rows:
                return self._files[:i], self.emitted - held, found
            held += found.rows
        return self._files, 0, None

    def follow(self, rows: Rows) -> Rows:
        """``rows``, each seen on its way through."""
        return follow(rows, self.see)


def follow(rows: Rows, see: Callable[[Row], None]) -> Rows:
    """``rows`` (a plain or an async iterator), each handed to ``see`` on its way through."""
    if isinstance(rows, AsyncIterator):
        return _follow_async(rows, see)
    return _follow(rows, see)


def _follow(rows: Iterator[tuple[int, Row]], see: Callable[[Row], None]) -> Iterator[tuple[int, Row]]:
    for item in rows:
        see(item[1])
        yield item


async def _follow_async(rows: AsyncIterator[tuple[int, Row]],
                        see: Callable[[Row], None]) -> AsyncIterator[tuple[int, Row]]:
    async for item in rows:
        see(item[1])
        yield item


async def verified_rows(table: Table, hasher: RowHasher, start: int, saved: InputFingerprint | None,
                        stream: str, stop: Callable[[], bool], limit: int | None = None) -> Rows:
    """The input's rows after row ``start``, once rows 1..``start`` are read and found to be those
    ``saved`` covers (when the STATE has a fingerprint; one written before fingerprints is taken
    as it is, and the next STATE carries one); none past row ``limit`` (input.limit)."""
    rows = hasher.follow(numbered_rows(table.batches(), 0, stop, limit))
    if isinstance(rows, AsyncIterator):
        while hasher.emitted < start and await anext(rows, None) is not None:
            hasher.advance()
    else:
        while hasher.emitted < start and next(rows, None) is not None:
            hasher.advance()
    if saved is not None:
        _check(hasher, start, saved, table.files, stream)
    return rows


async def verify_resume(table: Table, start: int, saved: InputFingerprint | None, stream: str,
                        limit: int | None = None) -> None:
    """Rows 1..``start`` checked against the STATE's fingerprint ``saved`` and nothing read beyond: the
    same :class:`~connector.errors.StateError` a read gives, before batch mode's pass one submits anything
    (the table is read again after it: batch mode takes no stdin)."""
    if saved is None or not start:
        return
    rows = await verified_rows(table, RowHasher(table.files), start, saved, stream, lambda: False, limit)
    if isinstance(rows, AsyncGenerator):
        await rows.aclose()
    elif isinstance(rows, Generator):
        rows.close()


def _check(hasher: RowHasher, start: int, saved: InputFingerprint, files: tuple[InputFile, ...],
           stream: str) -> None:
    if hasher.emitted == start and hasher.fingerprint().rows_sha256 == saved.rows_sha256:
        return
    found = (f"the input has only {hasher.emitted:,} rows" if hasher.emitted < start else
             f"rows 1..{start:,} of the input are not the rows it covered (their fingerprint differs): a row "
             "among them was edited, inserted or removed, or this is another input")
    changed = changes(saved.files, files)
    if changed:
        found += "; " + "; ".join(changed)
    elif saved.files and hasher.emitted == start:
        found += " (its files have the same sizes and times: were input.columns, input.encoding or the files' " \
                 "order changed?)"
    raise StateError(
        f"state for stream '{stream}' does not belong to this input: it says rows 1..{start:,} were read, but "
        f"{found}. Reading on from row {start + 1:,} would skip or repeat rows. To read this input from the "
        "start, reset the stream's state (run without --state, or clear the stream's state in the platform)")
