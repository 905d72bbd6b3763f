"""A row's tasks as columns: each task's own columns, and the row's outcome from its tasks' outcomes.

Each task's columns carry its name as prefix: its output columns (``summary_answer``; their own names
with the task's ``column_prefix`` off) and its
metadata (``summary_status``, ``summary_error_class``, ``summary_error``, ``summary_model``,
``summary_attempts``, ``summary_cached``, ``summary_prompt_tokens``, ``summary_completion_tokens``,
``summary_cost``). The record's own metadata columns (``_status``, ``_cost``, ...) are the row's,
by the rule of :func:`row_outcome`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connector.answers.outcomes import RowOutcome
from connector.answers.records import META_COLUMNS

# A task's metadata: its RowOutcome field -> the schema of the column {task}_{field}.
TASK_META: dict[str, dict[str, Any]] = {
    field: META_COLUMNS[f"_{field}"]
    for field in ("status", "error_class", "error", "model", "attempts", "cached", "prompt_tokens",
                  "completion_tokens", "cost")
}


def task_meta(name: str, outcome: RowOutcome) -> dict[str, Any]:
    """The task's metadata columns, from its outcome."""
    return {f"{name}_{field}": getattr(outcome, field) for field in TASK_META}


def _total(values: list[Any]) -> Any:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def row_outcome(tasks: Sequence[tuple[str, RowOutcome]]) -> RowOutcome:
    """The row's outcome from its tasks' (in dependency order).

    ``_status`` is ``ok`` only when every task is ok; else ``error`` when a task failed (so
    ``on_row_error`` and ``max_error_rate`` judge the row), else the first task's status that is
    not ok (``truncated``, ``skipped_null``, ``skipped_too_long``; ``skipped_upstream`` never
    comes first). ``_error_class`` is the first failed task's; ``_error`` names every task not ok.
    Attempts, tokens and cost add up the tasks' (null when no task knows them); ``_cached`` is
    true when every task's answer came from the cache; ``_model`` is the model when all tasks
    used one, else null (each task's is in ``{task}_model``); ``_batch_id`` is the first task's that a
    provider batch answered.
    """
    outcomes = [o for _, o in tasks]
    failed = [o for o in outcomes if o.status == "error"]
    not_ok = [(name, o) for name, o in tasks if o.status != "ok"]
    status = "error" if failed else not_ok[0][1].status if not_ok else "ok"
    models = {o.model for o in outcomes}
    return RowOutcome(
        status, failed[0].error_class if failed else None,
        "; ".join(f"{name}: {o.status}" + (f": {o.error}" if o.error else "") for name, o in not_ok) or None,
        model=models.pop() if len(models) == 1 else None,
        attempts=sum(o.attempts for o in outcomes), cached=all(o.cached for o in outcomes),
        prompt_tokens=_total([o.prompt_tokens for o in outcomes]),
        completion_tokens=_total([o.completion_tokens for o in outcomes]),
        cached_tokens=_total([o.cached_tokens for o in outcomes]),
        cache_write_tokens=_total([o.cache_write_tokens for o in outcomes]),
        reasoning_tokens=_total([o.reasoning_tokens for o in outcomes]),
        cost=_total([o.cost for o in outcomes]),
        cost_source=next((o.cost_source for o in outcomes if o.cost_source), None),
        batch_id=next((o.batch_id for o in outcomes if o.batch_id), None),
        requests=sum(1 for o in outcomes if o.attempts))
