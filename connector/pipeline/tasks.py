"""A row's tasks in one pass: each task a row enricher of its own, the row one record.

:class:`TaskEnricher` is what the run loop calls for a row when the config has ``tasks``
(:mod:`connector.config.tasks`): the row's tasks start together, a task that uses another's
answer waits for it (``{{summary.answer}}`` is that task's ``answer`` column), and independent
tasks are in flight at the same time. Every task's requests go through the one limiter and spend
budget of the run (their clients share them), and through the answer cache, one entry per task
request. A task whose input task is not ``ok`` is ``skipped_upstream`` and asks nothing. The row
is done (and its record emitted, and the STATE moved past it) when all its tasks are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from connector import errors
from connector.answers.outcomes import RowOutcome
from connector.answers.records import ROW_NUMBER, Enriched
from connector.answers.task_columns import row_outcome, task_meta
from connector.pipeline.enrich import RowEnricher

Item = tuple[int, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    """What a provider batch of this sync made of one task request (batch mode, :mod:`connector.pipeline.
    batch_tasks`): its answer, or the error the request ended with there."""

    batch_id: str
    reply: dict[str, Any] | None
    error: errors.EndpointError | None = None


# A task request's answer-cache key -> what a provider batch of this sync made of it (None: none did).
Bought = Callable[[str], BatchAnswer | None]


@dataclass(frozen=True, slots=True)
class Task:
    """One task of the run: its name, the tasks whose answers it uses, its row enricher."""

    name: str
    needs: tuple[str, ...]
    enricher: RowEnricher


class TaskEnricher:
    """Callable that turns (position, row) into the row's record over all ``tasks`` (in dependency
    order); None when a spend guard refused one of its requests (the row is not done)."""

    def __init__(self, tasks: Sequence[Task], bought: Bought | None = None) -> None:
        self._tasks = tuple(tasks)
        self._by_name = {task.name: task for task in tasks}
        self._bought = bought  # batch mode: answers the provider's batches bought, priced at the batch price

    @property
    def tasks(self) -> tuple[Task, ...]:
        """The tasks, in dependency order."""
        return self._tasks

    async def __call__(self, item: Item) -> Enriched | None:
        runs: dict[str, asyncio.Future[Enriched | None]] = {}
        for task in self._tasks:  # a task is created after those it needs: it can await them
            runs[task.name] = asyncio.ensure_future(self._one(task, item, runs))
        try:
            await asyncio.gather(*runs.values())
        except BaseException:  # a fatal endpoint error (or a cancelled run): the row's other tasks stop too
            for run in runs.values():
                run.cancel()
            await asyncio.gather(*runs.values(), return_exceptions=True)
            raise
        done = [(name, run.result()) for name, run in runs.items()]
        if any(enriched is None for _, enriched in done):
            return None
        return self._record(item, [(name, enriched) for name, enriched in done if enriched is not None])

    async def _one(self, task: Task, item: Item, runs: dict[str, asyncio.Future[Enriched | None]]) -> Enriched | None:
        position, row = item
        if not task.needs:
            return await self._ask(task.enricher, item)
        answers: dict[str, Any] = {}
        for name in task.needs:
            upstream = await runs[name]
            if upstream is None:
                return None
            if upstream.outcome.status != "ok":
                return Enriched(position + 1, {}, RowOutcome(
                    "skipped_upstream", None, f"task '{name}', whose answer it uses, is {upstream.outcome.status}"))
            answers.update({f"{name}.{column}": upstream.values.get(column)
                            for column in self._by_name[name].enricher.output_columns})
        return await self._ask(task.enricher, (position, {**row, **answers}))

    async def _ask(self, enricher: RowEnricher, item: Item) -> Enriched | None:
        """The task's request done: from a provider batch of this sync when one answered it, else as a read does."""
        if self._bought is None:
            return await enricher(item)
        planned = enricher.plan(item)
        if isinstance(planned, Enriched):
            return planned
        found = self._bought(enricher.answer_key(planned.body))
        if found is None:
            return await enricher.ask(planned)
        if found.reply is not None:
            return await enricher.finish_batch(planned, found.reply, found.batch_id)
        error = found.error
        if error is None or isinstance(error, errors.BatchItemUnfinished) or error.retryable:
            return await enricher.ask(planned)  # the retry policy: asked again as a normal request
        return enricher.batch_error(planned, error, found.batch_id)

    def _record(self, item: Item, done: list[tuple[str, Enriched]]) -> Enriched:
        position, row = item
        values = dict(row)
        values[ROW_NUMBER] = position + 1
        for name, enriched in done:
            values.update({f"{name}_{column}": enriched.values.get(column)
                           for column in self._by_name[name].enricher.output_columns})
            values.update(task_meta(name, enriched.outcome))
        return Enriched(position + 1, values, row_outcome([(name, enriched.outcome) for name, enriched in done]))
