"""Batch mode, pass two: the rows' records, in input order, from the batches' answers.

:class:`BatchSource` is the run loop's answer source (``run_rows(..., source=...)``), so the
error policy, checkpoints, summary and spend-guard stop are the normal read's. It walks the
rows from the position on and, for each row:

- not in a batch (skipped, answered in the cache, a duplicate of an earlier row, too large
  for a batch, kept out by a spend guard): the row enricher, exactly as a normal read;
- in a batch that has ended: its answer, downloaded once per batch (and put into the answer
  cache at once), validated and priced at the batch price (:meth:`RowEnricher.finish_batch`);
- in a batch whose request errored: a retryable error (429, 5xx, unusable reply) or an
  unfinished request (expired, cancelled, no result) is asked again as a normal request at the
  normal price (the one retry policy); another error is the row's error, as a normal read's;
- in a batch still running: with ``batch.wait`` it polls every ``poll_seconds`` (a LOG line
  with the providers' request counts each time) until the batch ends; without, it stops there:
  only a prefix of the rows can be emitted, the rest wait in the STATE for the next sync (and
  the answers of batches that ended meanwhile go into the answer cache);
- in a batch that failed as a whole: the rows before it are emitted, the batch is dropped from
  the STATE (its rows will be submitted again) and :class:`~connector.errors.BatchFailed` ends
  the sync with the provider's reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from connector import errors
from connector.answers.records import Enriched
from connector.callbacks import Sleep
from connector.endpoint.batch import BatchStatus, ItemResult
from connector.pipeline.batch_ledger import SavedBatch, cache_key_of, custom_id
from connector.pipeline.batch_submit import BatchContext
from connector.pipeline.enrich import Ask
from connector.pipeline.ordered import ordered_map
from connector.pipeline.progress import NO_PROGRESS, Progress
from connector.pipeline.run_loop import Note, Rows

Results = dict[str, ItemResult]
Item = tuple[int, dict[str, Any], SavedBatch | None, Results | None]


@dataclass
class Pending:
    """Rows a sync without ``wait`` left for a later one."""

    rows: int
    batches: int


class BatchSource:
    """Pass two (see the module docstring); ``pending`` says what was left for a later sync."""

    def __init__(self, ctx: BatchContext, end: int, sleep: Sleep = asyncio.sleep,
                 progress: Progress = NO_PROGRESS) -> None:
        self.ctx = ctx
        self.end = end
        self.sleep = sleep
        self.progress = progress
        self.pending: Pending | None = None
        self.retried = 0  # batch requests asked again as normal requests
        self._statuses: dict[str, BatchStatus] = {}
        self._results: dict[str, Results] = {}
        self._held: tuple[int, dict[str, Any]] | None = None  # the row a segment stopped before
        self._blocked: SavedBatch | None = None

    async def __call__(self, rows: Rows) -> AsyncIterator[Enriched | Note | None]:
        if isinstance(rows, AsyncIterator):
            raise errors.ConfigError("batch mode reads its rows from a file, not from standard input")
        if (note := await self._poll_open()) is not None:
            yield note
        while True:
            self._blocked = None
            async for record in ordered_map(self._segment(rows), self._answer, self.ctx.policy.concurrency):
                yield record
            batch = self._blocked
            if batch is None:
                return  # every row seen
            status = self._statuses[batch.fingerprint]
            if status.phase == "failed":
                raise self._failed(batch, status)
            if status.over:
                await self._download(batch, status)
                continue
            if not self.ctx.policy.batch.wait:
                held = self._held[0] if self._held is not None else batch.first - 1
                self.pending = Pending(self.end - held, sum(1 for s in self._statuses.values() if not s.over))
                await self._cache_ended()
                return
            while not self._statuses[batch.fingerprint].over:
                await self.sleep(self.ctx.policy.batch.poll_seconds)
                if (note := await self._poll_open()) is not None:
                    yield note

    def _failed(self, batch: SavedBatch, status: BatchStatus) -> errors.BatchFailed:
        """The error for a batch that failed as a whole; every failed batch leaves the ledger (and the STATE),
        so the next sync submits their rows again."""
        failed = [b for b in self.ctx.ledger.batches
                  if (s := self._statuses.get(b.fingerprint)) is not None and s.phase == "failed"]
        for each in failed:
            self.ctx.ledger.drop(each)
        others = f" ({len(failed) - 1} more failed too)" if len(failed) > 1 else ""
        return errors.BatchFailed(
            f"{self.ctx.policy.stream_name}: {batch.label()} failed as a whole: {status.failure}{others}. None of "
            "its requests ran (nothing was bought); it is dropped from the state, so the next sync submits its rows "
            "again" + ("" if status.failure_retryable else " (fix what the provider names first)"),
            retryable=status.failure_retryable)

    def _segment(self, rows: Iterator[tuple[int, dict[str, Any]]]) -> Iterator[Item]:
        """The rows up to the first whose batch is not ready (held for the next segment), with their batch."""
        ledger = self.ctx.ledger
        while True:
            item = self._held if self._held is not None else next(rows, None)
            self._held = None
            if item is None:
                return
            position, row = item
            if position >= self.end:
                return
            batch = ledger.batch_of(position + 1)
            if batch is None:
                yield position, row, None, None
                continue
            results = self._results.get(batch.fingerprint)
            if results is None:
                self._held, self._blocked = item, batch
                return
            yield position, row, batch, results

    async def _answer(self, item: Item) -> Enriched | None:
        position, row, batch, results = item
        enricher = self.ctx.enricher
        if batch is None or results is None:
            return await enricher((position, row))
        planned = enricher.plan((position, row))
        if not isinstance(planned, Ask):
            return planned
        result = results.get(custom_id(position + 1, self.ctx.key_of(planned.body)))
        batch_id = batch.id or ""
        if result is not None and result.reply is not None:
            return await enricher.finish_batch(planned, result.reply, batch_id)
        error = result.error if result is not None else None
        if error is None or isinstance(error, errors.BatchItemUnfinished) or error.retryable:
            self.retried += 1
            return await enricher((position, row))  # the retry policy: a normal request
        return enricher.batch_error(planned, error, batch_id)

    async def _poll_open(self) -> Note | None:
        """Poll every batch that has not ended; one line with the providers' counts (None: no batches)."""
        ledger = self.ctx.ledger
        if not len(ledger):
            return None
        for batch in ledger.batches:
            known = self._statuses.get(batch.fingerprint)
            if batch.id is None or (known is not None and known.over):
                continue
            status: BatchStatus = await self.ctx.retry.call(_poll(self.ctx, batch.id))
            self._statuses[batch.fingerprint] = status
            if status.state != batch.state:
                ledger.update(batch, state=status.state)
        running = [s for s in self._statuses.values() if not s.over]
        if running:  # a live bar has no rows to count meanwhile: it shows the providers' counts
            self.progress.waiting(f"provider batches: {sum(s.counts.succeeded + s.counts.errored for s in running):,} "
                                  f"of {sum(s.counts.total for s in running):,} requests done")
        return Note(self._line())

    def _line(self) -> str:
        statuses = [s for b in self.ctx.ledger.batches if (s := self._statuses.get(b.fingerprint)) is not None]
        running = [s for s in statuses if not s.over]
        total = sum(s.counts.total for s in running)
        done = sum(s.counts.succeeded for s in running)
        failed = sum(s.counts.errored for s in running)
        head = (f"{self.ctx.policy.stream_name}: provider batches: {len(running)} running"
                f" ({done:,} of {total:,} requests answered, {failed:,} errored), {len(statuses) - len(running)} ended")
        shown = ", ".join(f"{s.batch_id} {s.state} {s.counts.succeeded + s.counts.errored}/{s.counts.total}"
                          for s in running[:5])
        return head + (f": {shown}" if shown else "") + ("" if len(running) <= 5 else ", ...")

    async def _download(self, batch: SavedBatch, status: BatchStatus) -> None:
        """The batch's results, the answers stored in the cache before any record of them exists."""
        results = await self.ctx.retry.call(lambda: self.ctx.api.results(status))
        found = {r.custom_id: r for r in results}
        cache = self.ctx.cache
        if cache is not None:
            for result in results:
                key = cache_key_of(result.custom_id)
                if result.reply is not None and key is not None:
                    cache.put(key, result.reply)
            cache.commit()
        for fingerprint in [f for f in self._results if (b := self._find(f)) is None or b.last < batch.first]:
            del self._results[fingerprint]  # batches behind this one are emitted: their answers are not needed
        self._results[batch.fingerprint] = found

    def _find(self, fingerprint: str) -> SavedBatch | None:
        return next((b for b in self.ctx.ledger.batches if b.fingerprint == fingerprint), None)

    async def _cache_ended(self) -> None:
        """Without ``wait``: the answers of the batches that ended beyond the rows emitted go into the cache."""
        if self.ctx.cache is None:
            return
        for batch in self.ctx.ledger.batches:
            status = self._statuses.get(batch.fingerprint)
            if status is not None and status.phase == "ended" and batch.fingerprint not in self._results:
                await self._download(batch, status)
                self._results.pop(batch.fingerprint, None)

def _poll(ctx: BatchContext, batch_id: str) -> Callable[[], Awaitable[BatchStatus]]:
    return lambda: ctx.api.poll(batch_id)
