"""A row's tasks in one pass: each task a row enricher of its own, the row one record.

:class:`TaskEnricher` is what the run loop calls for a row when the config has ``tasks``
(:mod:`connector.config.task_settings`): the row's tasks start together, a task that uses another's
answer waits for it (``{{summary.answer}}`` is that task's ``answer`` column), and independent
tasks are in flight at the same time. Every task's requests go through the one limiter and spend
budget of the run (their clients share them), and through the answer cache, one entry per task
request. A task whose input task is not ``ok`` is ``skipped_upstream`` and asks nothing. The row
is done (and its record emitted, and the STATE moved past it) when all its tasks are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from connector.answers.outcomes import RowOutcome
from connector.answers.records import ROW_NUMBER, Enriched
from connector.answers.task_columns import row_outcome, task_meta
from connector.pipeline.enrich import Ask, RowEnricher

Item = tuple[int, dict[str, Any]]


# How a planned task request is answered instead of asked as a read asks it: by the provider batches of
# this sync (batch mode, connector.pipeline.batch_tasks) or by a results file (--import-batch); None when
# a spend guard refused the request.
Answerer = Callable[[RowEnricher, Ask], Awaitable[Enriched | None]]


@dataclass(frozen=True, slots=True)
class Task:
    """One task of the run: its name, the tasks whose answers it uses, its row enricher."""

    name: str
    needs: tuple[str, ...]
    enricher: RowEnricher
    prefix: str = ""  # what its output columns start with in the record (TaskConfig.prefix)


class TaskEnricher:
    """Callable that turns (position, row) into the row's record over all ``tasks`` (in dependency
    order); None when a spend guard refused one of its requests (the row is not done)."""

    def __init__(self, tasks: Sequence[Task], answerer: Answerer | None = None,
                 commit: Callable[[], None] | None = None, unemitted: list[RowOutcome] | None = None) -> None:
        self._tasks = tuple(tasks)
        self._by_name = {task.name: task for task in tasks}
        self._answerer = answerer
        self._commit = commit  # the answer cache's: a task's answer is durable while the row's others run
        # The outcomes of tasks done for rows a spend guard refused (another task of the row was refused).
        self._unemitted = unemitted if unemitted is not None else []

    def answered_by(self, answerer: Answerer) -> TaskEnricher:
        """The same tasks, each request answered by ``answerer`` (a batch's answers, a results file)."""
        return TaskEnricher(self._tasks, answerer, self._commit, self._unemitted)

    @property
    def refused(self) -> list[RowOutcome]:
        """What rows a spend guard refused had bought (the run's summary counts it): the answers of their
        tasks that were done (kept in the answer cache), and the refused tasks' attempts cut before their answer."""
        return [*self._unemitted, *(outcome for task in self._tasks for outcome in task.enricher.refused)]

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
            self._unemitted.extend(enriched.outcome for _, enriched in done if enriched is not None)
            return None
        return self._record(item, [(name, enriched) for name, enriched in done if enriched is not None])

    async def _one(self, task: Task, item: Item, runs: dict[str, asyncio.Future[Enriched | None]]) -> Enriched | None:
        done = await self._run(task, item, runs)
        if self._commit is not None and sum(not run.done() for run in runs.values()) > 1:
            # Others of the row still run (a dependent one may take long): a kill meanwhile keeps this answer.
            self._commit()
        return done

    async def _run(self, task: Task, item: Item, runs: dict[str, asyncio.Future[Enriched | None]]) -> Enriched | None:
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
        """The task's request done: by the answerer when there is one, else as a read asks it."""
        if self._answerer is None:
            return await enricher(item)
        planned = enricher.plan(item)
        if isinstance(planned, Enriched):
            return planned
        return await self._answerer(enricher, planned)

    def _record(self, item: Item, done: list[tuple[str, Enriched]]) -> Enriched:
        position, row = item
        values = dict(row)
        values[ROW_NUMBER] = position + 1
        for name, enriched in done:
            values.update({self._by_name[name].prefix + column: enriched.values.get(column)
                           for column in self._by_name[name].enricher.output_columns})
            values.update(task_meta(name, enriched.outcome))
        return Enriched(position + 1, values, row_outcome([(name, enriched.outcome) for name, enriched in done]))
