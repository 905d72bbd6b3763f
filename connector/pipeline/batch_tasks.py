"""Batch mode with tasks: every task's requests in the provider's batches, wave by wave.

A task's *wave* is its depth in the tasks' graph: 0 for a task that uses no other's answer, else one
more than the deepest task it uses. Wave by wave, from the first the STATE has batches of:

1. the wave's batches the STATE lists are collected (a create without a clear answer looked for first,
   :meth:`Submitter.reattach`); their answers go into the answer cache;
2. each task of the wave scans the rows from the position on and puts every request that is neither
   in the answer cache nor answered in a collected batch into batches of its own (one task, so one
   model, per batch), exactly as batch mode without tasks submits (:meth:`Submitter.submit`: each batch
   in the STATE before its create leaves). A dependent task's prompt needs its input tasks' answers:
   a row whose input answers are not in the cache (their request errored, or a row skipped) is left
   to the last pass;
3. the wave's batches are polled until they end (``batch.wait``; without it the sync ends here,
   ``complete=False``, and the next sync collects them) and their answers stored in the cache.

Then the records: the run loop over the rows with the tasks' enricher (:class:`~connector.pipeline.
tasks.TaskEnricher`), every answer from the cache; an answer a batch of this sync bought is priced at
the batch price and keeps its batch id, a request the batch answered with a retryable error (or left
unfinished) is asked again as a normal request, another error is the task's. Requests no batch holds
(too large for one, kept out by a spend guard, or whose input answers were missing) are asked as a read
asks them.

The STATE's batches name their task (``"task": "summary"``): the wave in flight is theirs. Their
``rows`` are row numbers, as without tasks (one task's batches never share a row). The answer cache
carries the answers from one wave to the next and from one sync to the next, so batch mode with tasks
needs it (``cache.enabled``, the default; a config error otherwise).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from connector import errors
from connector.answers.cache import AnswerCache
from connector.answers.records import Enriched, Tally
from connector.callbacks import Clock, Sleep
from connector.endpoint.batch import BatchAPI, BatchStatus, Chunker
from connector.endpoint.batch.retry import BatchRetry
from connector.endpoint.limits import WaitCap
from connector.pipeline.batch_ledger import Ledger, SavedBatch, cache_key_of, custom_id
from connector.pipeline.batch_submit import BatchContext, Submitter
from connector.pipeline.context import RunContext
from connector.pipeline.enrich import Ask, RowEnricher
from connector.pipeline.progress import Progress
from connector.pipeline.run_loop import Checkpoint, Event, Finished, Note, Started
from connector.pipeline.tasks import Task
from connector.rows.opening import numbered_rows

Item = tuple[int, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    """What a provider batch of this sync made of one task request: its batch, and the error the request
    ended with there (None: answered, the answer in the cache)."""

    batch_id: str
    error: errors.EndpointError | None = None


def waves_of(tasks: tuple[Task, ...]) -> dict[str, int]:
    """Each task's wave: 0 when it uses no other task's answer, else one more than the deepest it uses
    (``tasks`` in dependency order)."""
    waves: dict[str, int] = {}
    for task in tasks:
        waves[task.name] = 1 + max((waves[name] for name in task.needs), default=-1)
    return waves


class TaskBatches:
    """Batch mode over a context with tasks (see the module doc)."""

    def __init__(self, ctx: RunContext, api: BatchAPI, sleep: Sleep, now: Clock, progress: Progress) -> None:
        assert ctx.tasks is not None, "batch mode with tasks needs the tasks"
        if ctx.cache is None:
            raise errors.ConfigError("tasks: batch mode with tasks needs the answer cache (cache.enabled): one "
                                     "wave's answers are the next wave's inputs")
        self.ctx, self.api, self.sleep, self.progress = ctx, api, sleep, progress
        self.cache: AnswerCache = ctx.cache
        self.tasks = ctx.tasks.tasks
        self.by_name = {t.name: t for t in self.tasks}
        self.waves = waves_of(self.tasks)
        self.retry = BatchRetry(ctx.parts.run.max_retries, WaitCap(ctx.parts.limits.max_wait_seconds), ctx.client.url,
                                sleep)
        self.ledgers = {t.name: Ledger([b for b in ctx.saved if b.task == t.name]) for t in self.tasks}
        self.strangers = [b for b in ctx.saved if b.task not in self.ledgers]  # batches of another config
        self.submitters = {t.name: Submitter(self._context(t, now), ctx.start) for t in self.tasks}
        self.bought: dict[str, BatchAnswer] = {}
        self.submitted = 0
        self.unsent = 0
        self.pending = 0  # batches still running when a sync without wait stops

    def _context(self, task: Task, now: Clock) -> BatchContext:
        ctx = self.ctx
        return BatchContext(ctx.parts.run, task.enricher, self.api, self.ledgers[task.name], self.cache,
                            ctx.client.url, ctx.client.dialect.name, self.retry, ctx.client.budget, now,
                            ctx.parts.input.limit, task=task.name)

    def checkpoint(self) -> Checkpoint:
        """The position unchanged, with every task's open batches: what the STATE keeps meanwhile."""
        batches = tuple(sorted((b for ledger in self.ledgers.values() for b in ledger.batches),
                               key=lambda b: (b.task or "", b.first)))
        return Checkpoint(self.ctx.start, 0, batches=batches, input=self.ctx.saved_input)

    async def waves_done(self) -> AsyncIterator[Event]:
        """Every wave collected and submitted; ``pending`` > 0 when a sync without wait stopped at one."""
        for saved in self.strangers:  # a task renamed or removed since: what it has not run is not bought
            yield await Submitter(replace(self._context(self.tasks[0], time.time), ledger=Ledger([saved])),
                                  self.ctx.start).forget(saved)
        if self.strangers:
            yield self.checkpoint()
        saved_waves = [self.waves[b.task] for b in self.ctx.saved if b.task in self.waves]
        for wave in range(min(saved_waves, default=0), max(self.waves.values()) + 1):
            tasks = [t for t in self.tasks if self.waves[t.name] == wave]
            async for event in self._collect(tasks):
                yield event
            if self.pending:
                return
            for task in tasks:
                async for event in self._submit(task):
                    yield event
            async for event in self._collect(tasks):
                yield event
            if self.pending:
                return

    # Submitting ----------------------------------------------------------------------

    async def _submit(self, task: Task) -> AsyncIterator[Event]:
        """The task's requests that no cache entry and no collected batch answers, into its own batches."""
        submitter, chunker, asked = self.submitters[task.name], Chunker(self.api.limits), set[int]()
        budget = self.ctx.client.budget  # each request of a created batch counts against max_requests
        allowance = float("inf") if budget is None or budget.max_requests is None else \
            max(budget.max_requests - budget.requests, 0)
        table = self.ctx.input
        rows = numbered_rows(table.batches(skip=self.ctx.start), self.ctx.start, lambda: False,
                             self.ctx.parts.input.limit)
        if isinstance(rows, AsyncIterator):
            raise errors.ConfigError("batch mode reads its rows from a file, not from standard input")
        for item in rows:
            ready = await self._inputs(task, item, {})
            if ready is None:
                continue  # an input task's answer is not in the cache: the last pass asks the row
            try:
                planned = task.enricher.plan(ready)
            except errors.RowTooLong:
                break  # the last pass stops at this row with the error, as a read would
            if not isinstance(planned, Ask):
                continue
            key = task.enricher.answer_key(planned.body)
            short = int(key[:16], 16)
            if short in asked or key in self.bought or task.enricher.cached_answer(planned.body, key) is not None:
                continue
            asked.add(short)
            if allowance <= 0:
                self.unsent += 1
                continue
            allowance -= 1
            closed = chunker.add(self.api.request(custom_id(item[0] + 1, key), planned.body))
            if closed is not None:
                async for event in self._sent(submitter, closed):
                    yield event
        for closed in chunker.flush():
            async for event in self._sent(submitter, closed):
                yield event
        if chunker.too_large:
            yield Note(f"{self.ctx.parts.run.stream_name}: task {task.name}: {len(chunker.too_large)} requests are "
                       f"larger than a batch may be ({self.api.limits.max_bytes:,} bytes): they are sent as normal "
                       "requests", "WARN")

    async def _sent(self, submitter: Submitter, requests: list[Any]) -> AsyncIterator[Event]:
        before = submitter.submitted
        async for event in submitter.submit(requests):
            yield self.checkpoint() if isinstance(event, Checkpoint) else event
        self.submitted += submitter.submitted - before

    async def _inputs(self, task: Task, item: Item, known: dict[str, Enriched | None]) -> Item | None:
        """The row with the answers ``task`` uses (from the cache only), or None when one is not there or
        not ok; ``known`` keeps the row's answers found so far."""
        values: dict[str, Any] = {}
        for name in task.needs:
            upstream = self.by_name[name]
            if name not in known:
                known[name] = await self._cached(upstream, item, known)
            done = known[name]
            if done is None:
                return None
            values.update({f"{name}.{column}": done.values.get(column) for column in upstream.enricher.output_columns})
        return (item[0], {**item[1], **values})

    async def _cached(self, task: Task, item: Item, known: dict[str, Enriched | None]) -> Enriched | None:
        """The task's ok answer for the row when the answer cache holds it (nothing is asked)."""
        ready = await self._inputs(task, item, known)
        if ready is None:
            return None
        try:
            planned = task.enricher.plan(ready)
        except errors.RowTooLong:
            return None
        if not isinstance(planned, Ask) or task.enricher.cached_answer(planned.body) is None:
            return None
        done = await task.enricher.ask(planned)  # from the cache
        return done if done is not None and done.outcome.status == "ok" else None

    # Collecting ----------------------------------------------------------------------

    async def _collect(self, tasks: list[Task]) -> AsyncIterator[Event]:
        """The tasks' open batches until they end (their answers into the cache), or, without wait, those
        that ended; ``pending`` counts the rest."""
        name = self.ctx.parts.run.stream_name
        for task in tasks:
            for saved in [b for b in self.ledgers[task.name].batches if b.id is None]:
                yield await self.submitters[task.name].reattach(saved)
                yield self.checkpoint()
        while True:
            running, moved = 0, False
            for task in tasks:
                ledger = self.ledgers[task.name]
                for saved in ledger.batches:
                    status = await self._poll(saved)
                    if status.phase == "failed":
                        ledger.drop(saved)
                        yield self.checkpoint()
                        raise errors.BatchFailed(
                            f"{name}: task {task.name}: {saved.label()} failed as a whole: {status.failure}. None of "
                            "its requests ran (nothing was bought); it is dropped from the state, so the next sync "
                            "submits its requests again", retryable=status.failure_retryable)
                    if status.over:
                        await self._download(saved, status)
                        ledger.drop(saved)
                        yield self.checkpoint()
                        yield Note(f"{name}: task {task.name}: collected {saved.label()}")
                    else:
                        running += 1
                        if status.state != saved.state:  # the provider's last word, kept in the STATE
                            ledger.update(saved, state=status.state)
                            moved = True
            if moved:
                yield self.checkpoint()
            if not running:
                return
            if not self.ctx.parts.run.batch.wait:
                self.pending = running
                return
            self.progress.waiting(f"provider batches: {running} running (tasks {', '.join(t.name for t in tasks)})")
            await self.sleep(self.ctx.parts.run.batch.poll_seconds)

    async def _poll(self, saved: SavedBatch) -> BatchStatus:
        batch_id = saved.id or ""
        status: BatchStatus = await self.retry.call(lambda: self.api.poll(batch_id))
        return status

    async def _download(self, saved: SavedBatch, status: BatchStatus) -> None:
        """The batch's answers into the answer cache (before any record of them exists), and kept for the records."""
        results = await self.retry.call(lambda: self.api.results(status))
        for result in results:
            key = cache_key_of(result.custom_id)
            if key is None:
                continue
            if result.reply is not None:
                self.cache.put(key, result.reply)
            self.bought[key] = BatchAnswer(saved.id or "", result.error)
        self.cache.commit()

    def final_context(self) -> RunContext:
        """The context of the last pass: the tasks' enricher taking the answers of this sync's batches."""
        assert self.ctx.tasks is not None
        return replace(self.ctx, tasks=self.ctx.tasks.answered_by(self.answer))

    async def answer(self, enricher: RowEnricher, planned: Ask) -> Enriched | None:
        """A task request done: with the answer a batch of this sync bought (priced at the batch price), or
        the error it ended with there; asked as a read asks it when no batch answered it, or the batch
        left it unfinished or ended it with a retryable error (the retry policy)."""
        key = enricher.answer_key(planned.body)
        found = self.bought.get(key)
        reply = self.cache.get(key) if found is not None and found.error is None else None
        if found is not None and reply is not None:
            return await enricher.finish_batch(planned, reply, found.batch_id)
        error = found.error if found is not None else None
        if error is None or isinstance(error, errors.BatchItemUnfinished) or error.retryable:
            return await enricher.ask(planned)
        return enricher.batch_error(planned, error, found.batch_id if found is not None else "")


async def task_waves(batches: TaskBatches, clock: Clock) -> AsyncIterator[Event]:
    """Every wave collected and submitted, said as events (see the module doc); the records follow with
    :meth:`TaskBatches.final_context` unless ``batches.pending``."""
    ctx = batches.ctx
    sized = ctx.input.estimate_rows()
    yield Started(None if sized is None else max(sized[0] - ctx.start, 0), sized is not None and sized[1], ctx.start)
    name, began = ctx.parts.run.stream_name, clock()
    try:
        async for event in batches.waves_done():
            yield event
    except errors.ConnectorError:
        yield Finished(False, f"{name}: 0 rows in {clock() - began:.1f} s: the tasks' batches could not be done",
                       Tally())
        raise
    if batches.submitted:
        yield Note(f"{name}: {batches.submitted:,} task requests submitted in provider batches")
    if batches.unsent:
        yield Note(f"{name}: spend guard: max_requests reached; {batches.unsent:,} task requests were not submitted "
                   "(they are asked as normal requests, within the guard)", "WARN")
    if batches.pending:
        yield Note(f"{name}: {batches.pending} provider batches of the tasks are still running; the state keeps "
                   "them: run again (e.g. every hour) to collect their answers and submit the next tasks")
        yield Finished(False, f"{name}: 0 rows emitted: waiting for provider batches", Tally())
