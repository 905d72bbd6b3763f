"""A prepared run's events: rows one by one (:func:`~connector.pipeline.run_loop.run_rows`), or through the
provider's batch API (:func:`~connector.pipeline.batch_run.run_batches`) when ``batch.enabled``.

``read`` and ``run`` both take their events from :func:`run_events`, so the choice is made once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from connector.endpoint.batch import batch_api
from connector.pipeline.batch_run import run_batches
from connector.pipeline.context import RunContext
from connector.pipeline.input_groups import grouped
from connector.pipeline.progress import NO_PROGRESS, Progress
from connector.pipeline.row_packs import packed
from connector.pipeline.run_loop import DEFAULT_CHECKPOINTING, Checkpointing, Event, Note, run_rows


def run_events(ctx: RunContext, *, full_refresh: bool = False, checkpointing: Checkpointing = DEFAULT_CHECKPOINTING,
               progress: Progress = NO_PROGRESS) -> AsyncIterator[Event]:
    """The run's events (resuming the STATE's provider batches, ``ctx.saved``, in batch mode)."""
    if not ctx.parts.run.batch.enabled:
        events = run_rows(ctx, full_refresh=full_refresh, checkpointing=checkpointing, progress=progress,
                          source=grouped(ctx) or packed(ctx))
        return _forsaken(ctx, events) if ctx.saved else events
    api = batch_api(ctx.parts.request, ctx.transport, ctx.dialect)
    return run_batches(ctx, api, full_refresh=full_refresh, checkpointing=checkpointing, progress=progress)


async def _forsaken(ctx: RunContext, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """A normal run from a STATE that lists provider batches: said, then run (their rows are asked again)."""
    saved, stream = ctx.saved, ctx.parts.run.stream_name
    yield Note(f"{stream}: the state lists {len(saved)} provider batches ({', '.join(b.id or '?' for b in saved)}) "
               "but batch.enabled is off: their rows are sent as normal requests and the batches' answers are not "
               "collected; turn batch.enabled on to collect them instead", "WARN")
    async for event in events:
        yield event
