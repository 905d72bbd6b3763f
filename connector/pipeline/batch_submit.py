"""Batch mode, pass one: every row that needs an answer and is in no batch yet goes into one.

Before anything is submitted, the batches an earlier sync was creating when it stopped (in the
STATE without an id) are looked for at the provider (``BatchAPI.find``): found, they are
re-attached; not found, their create never arrived and their rows are submitted again. Then
every row from the position on is rendered exactly as a normal read renders it
(:meth:`RowEnricher.plan`); a row is left out when it is skipped (its record needs no answer),
already in a batch of the STATE, answered in the answer cache, or asks what an earlier row
asks (the earlier one's answer is cached once downloaded); the others are cut into batches
within the provider's limits (:class:`~connector.endpoint.batch.Chunker`) and submitted.

Each batch is written into the STATE (a :class:`~connector.pipeline.run_loop.Checkpoint` with the
position unchanged) before its create request is sent, again with its anchor once prepared (the
input file's id, or the newest batch listed: :meth:`BatchAPI.prepare`), and again with its id after:
so a sync killed at any moment submits no row twice. Every call follows the run's retry policy, and
a create whose answer is unclear (a 5xx, a cut connection) is looked for before it is sent again
(:class:`~connector.endpoint.batch.retry.BatchRetry`); one still unconfirmed when the retries run
out stays in the STATE, ``unconfirmed``, and is looked for first by the next sync. A batch of the
STATE whose rows now ask other requests (the config changed) is cancelled and its rows submitted
anew, with a warning.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from connector import errors
from connector.answers.cache import AnswerCache
from connector.callbacks import Clock
from connector.config.parts import RunPolicy
from connector.endpoint.batch import BatchAPI, BatchRequest, Chunker, Submission, fingerprint
from connector.endpoint.batch.retry import BatchRetry
from connector.endpoint.limits import SpendBudget
from connector.pipeline.batch_ledger import UNCONFIRMED, Ledger, SavedBatch, custom_id, ranges_of
from connector.pipeline.enrich import Ask, RowEnricher
from connector.pipeline.run_loop import Checkpoint, Event, Note
from connector.rows.opening import numbered_rows
from connector.rows.table import Table


@dataclass
class BatchContext:
    """What both passes of a batch run share."""

    policy: RunPolicy
    enricher: RowEnricher
    api: BatchAPI
    ledger: Ledger
    cache: AnswerCache | None
    url: str  # the endpoint URL and dialect name: the answer cache's key parts
    dialect: str
    retry: BatchRetry  # the run's retry policy for every call of the batch API
    budget: SpendBudget | None = None
    now: Clock = time.time  # the wall clock: batches are matched by their creation time
    limit: int | None = None  # input.limit: rows after it are not read (a sample)
    task: str | None = None  # with tasks: the task whose requests these batches hold (pipeline/batch_tasks.py)

    def key_of(self, body: Any) -> str:
        """The answer-cache key of a request body (as a normal request's)."""
        return self.enricher.answer_key(body)


@dataclass
class Submitter:
    """Pass one over ``table`` from row ``start`` (see the module docstring); ``end`` is where the
    rows it saw end (the run stops there), ``submitted`` how many requests it sent in batches."""

    ctx: BatchContext
    start: int
    end: int = 0
    submitted: int = 0
    unsent: int = 0  # rows a spend guard kept out of the batches
    too_large: int = 0
    _allowance: float = field(default=float("inf"))

    async def run(self, table: Table) -> AsyncIterator[Event]:
        """Re-attach, then submit; yields the checkpoints and notes of what it did."""
        budget = self.ctx.budget
        if budget is not None and budget.max_requests is not None:
            self._allowance = max(budget.max_requests - budget.requests, 0)
        changed = False
        for saved in [b for b in self.ctx.ledger.batches if b.id is None]:
            yield await self.reattach(saved)
            changed = True
        if changed:
            yield self._checkpoint()
        while True:
            stale: list[SavedBatch] = []
            async for event in self._scan(table, stale):
                yield event
            if not stale:
                break
            for saved in stale:  # then scan again: their rows are in no batch now
                yield await self.forget(saved)
            yield self._checkpoint()
        if self.unsent:
            yield Note(f"{self.ctx.policy.stream_name}: spend guard: max_requests reached; {self.unsent:,} rows were "
                       "not submitted (a later run submits them)", "WARN")

    async def reattach(self, saved: SavedBatch) -> Note:
        """A batch of the STATE whose create had no clear answer: found at the provider (its id kept), or dropped."""
        name, ledger = self.ctx.policy.stream_name, self.ctx.ledger
        found = await self.ctx.retry.call(lambda: self.ctx.api.find(self._submission(saved), self._known(saved)))
        if found is not None:
            attached = ledger.update(saved, id=found, state="found")
            return Note(f"{name}: re-attached {attached.label()}, created by an earlier sync that stopped before "
                        "it saw a clear answer")
        ledger.drop(saved)
        return Note(f"{name}: {saved.label()} was never created at the provider (the earlier sync stopped first, or "
                    "the create failed); its rows are submitted again")

    def _submission(self, saved: SavedBatch, model: str = "") -> Submission:
        return Submission(saved.fingerprint, saved.size, saved.since, saved.anchor, model)

    def _known(self, saved: SavedBatch) -> frozenset[str]:
        """The ids of the other batches of the STATE: a lookup for ``saved`` never takes one of them."""
        return frozenset(b.id for b in self.ctx.ledger.batches
                         if b.id is not None and b.fingerprint != saved.fingerprint)

    async def forget(self, saved: SavedBatch) -> Note:
        """A batch whose rows ask other requests now: cancelled (what it has not run is not bought), dropped."""
        if saved.id is not None:
            batch_id = saved.id
            with contextlib.suppress(errors.EndpointError):  # already over: nothing left to stop
                await self.ctx.retry.call(lambda: self.ctx.api.cancel(batch_id))
        self.ctx.ledger.drop(saved)
        return Note(f"{self.ctx.policy.stream_name}: {saved.label()} asks other requests than these rows ask now "
                    "(the config or the input changed since it was submitted): it was cancelled, and its rows are "
                    "submitted again", "WARN")

    def _checkpoint(self) -> Checkpoint:
        return Checkpoint(self.start, 0, batches=self.ctx.ledger.open_after(self.start))

    async def _scan(self, table: Table, stale: list[SavedBatch]) -> AsyncIterator[Event]:
        ctx = self.ctx
        chunker = Chunker(ctx.api.limits)
        asked: set[int] = set()  # requests asked by an earlier row (a prefix of their cache keys)
        check = _Check({b.fingerprint: b for b in ctx.ledger.batches}, stale)
        rows = numbered_rows(table.batches(skip=self.start), self.start, lambda: False,
                             self.ctx.limit)
        if not isinstance(rows, AsyncIterator):
            rows = _aiter(rows)
        async for position, row in rows:
            number = self.end = position + 1
            check.passed(number - 1)
            try:
                planned = ctx.enricher.plan((position, row))
            except errors.RowTooLong:
                break  # pass two stops at this row with the error, as a normal read would
            if not isinstance(planned, Ask):
                continue
            body = planned.body
            key = ctx.key_of(body)
            saved = ctx.ledger.batch_of(number)
            if saved is not None:
                check.saw(saved, custom_id(number, key))
                asked.add(int(key[:16], 16))
                continue
            if ctx.cache is not None:
                short = int(key[:16], 16)
                if short in asked or ctx.enricher.cached_answer(body, key) is not None:
                    continue  # answered in pass two from the cache
                asked.add(short)
            if self._allowance <= 0:
                self.unsent += 1
                continue
            self._allowance -= 1
            closed = chunker.add(ctx.api.request(custom_id(number, key), body))
            if closed is not None:
                async for event in self.submit(closed):
                    yield event
        for batch in chunker.flush():
            async for event in self.submit(batch):
                yield event
        if chunker.too_large:
            self.too_large += len(chunker.too_large)
            yield Note(f"{ctx.policy.stream_name}: {len(chunker.too_large)} requests are larger than a batch may be "
                       f"({ctx.api.limits.max_bytes:,} bytes): they are sent as normal requests", "WARN")
        check.passed(self.end)

    async def submit(self, requests: list[BatchRequest]) -> AsyncIterator[Event]:
        """One batch of ``requests`` created, in the STATE before its create leaves (see the module doc)."""
        ctx = self.ctx
        ids = [r.custom_id for r in requests]
        since = round(ctx.now(), 3)
        saved = SavedBatch(fingerprint(ids, _salt(since)), since, len(ids),
                           ranges_of(int(i[1:i.index("-")]) for i in ids), task=ctx.task)
        ctx.ledger.put(saved)
        yield self._checkpoint()  # in the STATE before the create request leaves
        try:
            anchor = await ctx.retry.call(lambda: ctx.api.prepare(requests, self._submission(saved)))
            if anchor is not None:  # in the STATE before the create: the batch is found by it
                saved = ctx.ledger.update(saved, anchor=anchor)
                yield self._checkpoint()
            batch_id, found = await ctx.retry.create(ctx.api, requests, self._submission(saved, requests[0].model),
                                                     self._known(saved))
        except errors.BatchUnconfirmed:
            ctx.ledger.update(saved, state=UNCONFIRMED)  # it may exist: the next sync looks for it first
            yield self._checkpoint()
            raise
        except errors.ConnectorError:
            ctx.ledger.drop(saved)  # no create was sent, or the provider refused it: nothing was created
            yield self._checkpoint()
            raise
        saved = ctx.ledger.update(saved, id=batch_id, state="found" if found else "submitted")
        self.submitted += saved.size
        if ctx.budget is not None:
            ctx.budget.requests += saved.size  # each request of a batch counts against max_requests
        yield self._checkpoint()
        how = "submitted" if not found else "submitted (the create's answer was unclear; found in the batch list)"
        yield Note(f"{ctx.policy.stream_name}: {how} {saved.label()}")


class _Check:
    """Checks each saved batch, once the scan is past its last row, against its rows' requests now."""

    def __init__(self, batches: dict[str, SavedBatch], stale: list[SavedBatch]) -> None:
        self._waiting = sorted(batches.values(), key=lambda b: b.last)
        self._ids: dict[str, list[str]] = {}
        self._stale = stale

    def saw(self, saved: SavedBatch, custom_id: str) -> None:
        self._ids.setdefault(saved.fingerprint, []).append(custom_id)

    def passed(self, number: int) -> None:
        """Rows up to ``number`` are scanned."""
        while self._waiting and self._waiting[0].last <= number:
            saved = self._waiting.pop(0)
            if not _same(saved, self._ids.pop(saved.fingerprint, [])):
                self._stale.append(saved)


def _salt(since: float) -> str:
    return f"@{since:.3f}"


def _same(saved: SavedBatch, ids: list[str]) -> bool:
    """The rows of a saved batch still ask the requests it was submitted with."""
    return len(ids) == saved.size and fingerprint(ids, _salt(saved.since)) == saved.fingerprint


async def _aiter(items: Any) -> AsyncIterator[Any]:
    for item in items:
        yield item
