"""Batch mode's run: the same events as :func:`~connector.pipeline.run_loop.run_rows`, the rows answered by
the provider's batch API (``batch.enabled``).

Two passes over the table from the position on: :mod:`~connector.pipeline.batch_submit` puts every
row that needs an answer into a provider batch (or re-attaches the batches of the STATE), then
:func:`run_rows` emits the records in input order with :class:`~connector.pipeline.batch_source.
BatchSource` as the answer source, so the error policy, checkpoints and summary are a normal read's.
Every :class:`Checkpoint` carries the batches that still hold rows after its position.

What the position means here: rows 1..position are emitted, as in a normal read. Batches end in
any order, but records leave in input order, so a sync can emit only the prefix of rows whose
batches have ended; the rows after it stay in the STATE's batches (their answers, when already
downloaded, in the answer cache) and a later sync emits them. With ``batch.wait: false`` a sync
submits, emits that prefix, checkpoints, and ends with a LOG line of the rows still pending and
``Finished(complete=False)`` (exit 0: nothing failed); without pending rows it is complete.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

from connector.answers.records import Tally
from connector.callbacks import Clock, Sleep
from connector.endpoint.batch import BatchAPI
from connector.endpoint.batch.retry import BatchRetry
from connector.endpoint.limits import WaitCap
from connector.errors import ConnectorError
from connector.pipeline.batch_ledger import Ledger
from connector.pipeline.batch_source import BatchSource
from connector.pipeline.batch_submit import BatchContext, Submitter
from connector.pipeline.batch_tasks import TaskBatches, task_waves
from connector.pipeline.context import RunContext
from connector.pipeline.progress import NO_PROGRESS, Progress
from connector.pipeline.resume import verify_resume
from connector.pipeline.run_loop import (
    DEFAULT_CHECKPOINTING,
    Checkpoint,
    Checkpointing,
    Event,
    Finished,
    Note,
    RecordOut,
    Started,
    run_rows,
)
from connector.rows.fingerprint import InputFingerprint
from connector.rows.table import Table


async def run_batches(
    ctx: RunContext,
    api: BatchAPI,
    *,
    full_refresh: bool = False,
    checkpointing: Checkpointing = DEFAULT_CHECKPOINTING,
    progress: Progress = NO_PROGRESS,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    now: Clock = time.time,
) -> AsyncIterator[Event]:
    """Enrich the context's table from its ``start`` on through provider batches, the STATE's ``saved``
    ones first."""
    # Rows 1..start are the STATE's before anything is submitted: a foreign state is refused unpaid.
    await verify_resume(ctx.input, ctx.start, ctx.saved_input, ctx.parts.run.stream_name, ctx.parts.input.limit)
    if ctx.tasks is not None:  # every task's requests in batches, wave by wave (pipeline/batch_tasks.py)
        batches = TaskBatches(ctx, api, sleep, now, progress)
        async for event in task_waves(batches, clock):
            yield event
        if not batches.pending:
            async for event in run_rows(batches.final_context(), full_refresh=full_refresh,
                                        checkpointing=checkpointing, progress=progress, clock=clock):
                if not isinstance(event, Started):  # said before the waves
                    yield event
        return
    table, start, ledger, client = ctx.input, ctx.start, Ledger(ctx.saved), ctx.client
    retry = BatchRetry(ctx.parts.run.max_retries, WaitCap(ctx.parts.limits.max_wait_seconds), client.url, sleep)
    batch = BatchContext(ctx.parts.run, ctx.enricher, api, ledger, ctx.cache, client.url, client.dialect.name, retry,
                         client.budget, now, ctx.parts.input.limit)
    sized = table.estimate_rows()
    yield Started(None if sized is None else max(sized[0] - start, 0), sized is not None and sized[1], start)
    submitter = Submitter(batch, start)
    async for event in _submitted(submitter, table, batch.policy.stream_name, clock):
        yield event
    source = BatchSource(batch, submitter.end, sleep, progress)
    events = run_rows(ctx, full_refresh=full_refresh, checkpointing=checkpointing, progress=progress, clock=clock,
                      source=source)
    async for event in _collected(events, ledger, source, batch.policy.stream_name, start, ctx.saved_input):
        yield event


async def _submitted(submitter: Submitter, table: Table, name: str, clock: Clock) -> AsyncIterator[Event]:
    """Pass one: every row that needs an answer into a provider batch (:mod:`connector.pipeline.batch_submit`)."""
    began = clock()
    try:
        async for event in submitter.run(table):
            yield event
    except ConnectorError:
        yield Finished(False, f"{name}: 0 rows in {clock() - began:.1f} s: the batches could not be submitted",
                       Tally())
        raise
    if submitter.submitted:
        yield Note(f"{name}: {submitter.submitted:,} requests submitted in provider batches")


async def _collected(events: AsyncIterator[Event], ledger: Ledger, source: BatchSource, name: str,
                     start: int, saved_input: InputFingerprint | None) -> AsyncIterator[Event]:
    """Pass two: the run loop's events, each checkpoint carrying the batches still open after it."""
    last = (start, ledger.open_after(start))  # the position and batches of the last checkpoint
    last_input = saved_input  # and its input fingerprint
    records_since = 0
    async for event in events:
        if isinstance(event, Started):
            continue  # said before the submissions
        if isinstance(event, RecordOut):
            records_since += 1
        elif isinstance(event, Checkpoint):
            ledger.forget_through(event.position)
            event = replace(event, sync_complete=event.sync_complete and source.pending is None,
                            batches=ledger.open_after(event.position))
            last, last_input, records_since = (event.position, event.batches), event.input, 0
        elif isinstance(event, Finished):
            # A batch dropped since (it failed as a whole) must leave the STATE, unless the loop
            # chose to commit nothing more (every row failed: those rows are tried again).
            if ledger.open_after(last[0]) != last[1] and not records_since:
                yield Checkpoint(last[0], 0, batches=ledger.open_after(last[0]), input=last_input)
            for note in _batch_notes(source, name):
                yield note
            if source.pending is not None:
                event = replace(event, complete=False)
        yield event


def _batch_notes(source: BatchSource, name: str) -> list[Note]:
    """What the summary adds in batch mode: requests asked again normally, rows still waiting."""
    notes = []
    if source.retried:
        notes.append(Note(f"{name}: {source.retried:,} batch requests that errored or did not run (expired, "
                          "cancelled) were asked again as normal requests"))
    if source.pending is not None:
        pending = source.pending
        notes.append(Note(f"{name}: {pending.rows:,} rows are waiting for provider batches ({pending.batches} still "
                          "running); the state keeps them: run again (e.g. every hour) to collect their answers"))
    return notes
