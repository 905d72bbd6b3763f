"""Tasks: several requests per row in one pass, each with its own prompt (the ``tasks`` field).

A task names a request asked of every row: its prompt and system prompt, and optionally its own
model, generation parameters, output schema, response template and fallback models; everything
else (endpoint, limits, cache, policies) is the config's. A task uses an earlier task's answer by writing
``{{summary.answer}}`` (task name, dot, output column): the tasks form a graph, checked here for
unknown names and cycles. A config without ``tasks`` is one task, as it always was.

What tasks cannot do yet is refused here, naming the field: batch mode without the answer cache
(``batch.enabled`` and not ``cache.enabled``: the cache carries one wave's answers to the next) and
embeddings; a dependent task in ``--export-batch`` / ``--import-batch`` is refused where the run
is prepared (:mod:`connector.pipeline.prepare`).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from pydantic import Field, model_validator

from connector.config.sections import Parameters, ResponseTemplate, Strict


class Switch(Protocol):
    """A config section that is on or off (``batch``, ``cache``)."""

    @property
    def enabled(self) -> bool: ...


# A placeholder reaching into a task's answer: {{name.column}} (its head is the task's name).
_REACHES = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\.")


class TaskConfig(Strict):
    """One task: a request asked of every row."""

    name: str = Field(..., pattern=r"^[a-z][a-z0-9_]*$", max_length=40, title="Name",
                      description="Prefixes the task's columns (summary -> summary_answer, summary_status); "
                                  "{{summary.answer}} in a later task's prompt is its answer.",
                      json_schema_extra={"order": 0, "examples": ["summary"]})
    prompt: str = Field(..., min_length=1, title="Prompt",
                        description="The user message, with {{column}} and {{task.column}} placeholders.",
                        json_schema_extra={"order": 1})
    system_prompt: str | None = Field(None, title="System prompt", description="Default: the config's.",
                                      json_schema_extra={"order": 2})
    model: str | None = Field(None, title="Model", description="Default: the config's.",
                              json_schema_extra={"order": 3})
    parameters: Parameters | None = Field(None, title="Generation parameters", description="Default: the config's.",
                                          json_schema_extra={"order": 4})
    output_schema: dict[str, Any] | None = Field(
        None, title="Output JSON schema", description="Structured output for this task (default: the config's).",
        json_schema_extra={"order": 5})
    response_template: ResponseTemplate | None = Field(
        None, title="Response format", description="This task's output columns (default: the config's).",
        json_schema_extra={"order": 6})
    fallback_models: list[str] | None = Field(
        None, title="Fallback models", description="Tried in order for this task's request when its error class is "
                                                   "in fallback_on (default: the config's).",
        json_schema_extra={"order": 7})
    column_prefix: bool = Field(
        True, title="Prefix its output columns",
        description="Its output columns carry its name as prefix (summary_answer); false: its output schema's (or "
                    "response template's) own names, when no other column has them (a clash is a config error at "
                    "check). Its metadata columns keep the prefix (summary_status).",
        json_schema_extra={"order": 8})

    @property
    def prefix(self) -> str:
        """What its output columns start with: its name and an underscore, or nothing (``column_prefix`` off)."""
        return f"{self.name}_" if self.column_prefix else ""

    @model_validator(mode="after")
    def _schema(self) -> TaskConfig:
        if self.output_schema is not None:
            from connector.config.output_schema import check_schema

            try:
                check_schema(self.output_schema)
            except ValueError as exc:
                raise ValueError(f"output_schema: {exc}") from None
        return self

    def reaches(self) -> list[str]:
        """The heads of its {{head.column}} placeholders, in order of appearance."""
        return _REACHES.findall(self.prompt + "\n" + (self.system_prompt or ""))


class TaskSettings(Strict):
    """The ``tasks`` field of the config (see the module doc)."""

    tasks: list[TaskConfig] | None = Field(
        None, min_length=1, title="Tasks",
        description="Several requests per row in one pass, each with its own prompt and optionally its own model, "
                    "parameters and output schema; each task's columns carry its name as prefix. Instead of "
                    "prompt / request_template (docs/CONFIGURATION.md, Tasks).",
        json_schema_extra={"order": 60})


def needs(task: TaskConfig, names: set[str]) -> tuple[str, ...]:
    """The tasks ``task`` takes an answer from (among ``names``), each once, in order of use."""
    return tuple(dict.fromkeys(head for head in task.reaches() if head in names))


def task_order(tasks: list[TaskConfig]) -> list[TaskConfig]:
    """The tasks so that each comes after those it needs (config order otherwise); ValueError naming
    the tasks of a cycle."""
    names = {t.name for t in tasks}
    waiting = {t.name: set(needs(t, names)) for t in tasks}
    ordered: list[TaskConfig] = []
    while waiting:
        ready = [t for t in tasks if t.name in waiting and not waiting[t.name]]
        if not ready:
            raise ValueError(f"tasks: {', '.join(sorted(waiting))} wait for each other's answers (a cycle); a task "
                             "may only use the answers of tasks that do not use its own")
        for task in ready:
            ordered.append(task)
            del waiting[task.name]
        for pending in waiting.values():
            pending.difference_update(t.name for t in ready)
    return ordered


def check_tasks(tasks: list[TaskConfig], prompt: str | None, request_template: object, batch: Switch,
                embeddings: object, cache: Switch) -> None:
    """What a config with tasks must not also say, and the tasks' graph; ValueError naming the field
    (``batch`` and ``cache``: the config's sections of those names)."""
    if prompt is not None or request_template is not None:
        raise ValueError("tasks: give each task its prompt; the top-level prompt and request_template are the "
                         "one-task form, not used with tasks (a top-level system_prompt is every task's default)")
    if batch.enabled and not cache.enabled:
        raise ValueError("tasks: batch mode (batch.enabled) with tasks needs the answer cache (cache.enabled): one "
                         "wave's answers are the next wave's inputs, and the next sync's")
    if embeddings is not None:
        raise ValueError("tasks: embeddings does not support tasks yet; use one config per embedding")
    seen: set[str] = set()
    for i, task in enumerate(tasks):
        if task.name in seen:
            raise ValueError(f"tasks.{i}.name: '{task.name}' names two tasks; give each task its own name")
        seen.add(task.name)
        if task.name in needs(task, {task.name}):
            raise ValueError(f"tasks.{i}.prompt: task '{task.name}' uses its own answer ({{{{{task.name}.…}}}})")
    task_order(tasks)
