"""The per-row result contract: a row's typed outcome, its statuses and error classes.

These names are a public contract (downstream SQL filters on them); add, never rename.

Statuses: ``ok``, ``error``, ``truncated`` (the answer was cut off by the token
limit), ``skipped_null`` (a cell the template uses is null or empty and
``null_policy`` is ``skip``), ``skipped_too_long`` (the prompt does not fit the
context window and ``too_long_policy`` is ``skip``), ``skipped_upstream`` (a task not asked
because a task whose answer it uses is not ``ok``; :mod:`connector.answers.task_columns`).

Error classes (:data:`connector.errors.ErrorClass`): ``rate_limit``, ``quota``, ``auth``,
``timeout``, ``connection``, ``server``, ``bad_request``, ``not_found``, ``context_length``,
``content_filter``, ``bad_reply``, ``validation``, ``unanswered`` (a provider batch, or an
imported results file, has no answer for the row), ``bad_input`` (a value of the
input row does not fit its column's type; nothing was sent).

A row's :class:`RowOutcome` is built where its answer is judged (:mod:`connector.pipeline.enrich`)
and becomes the record's metadata columns in one place, :meth:`RowOutcome.columns`; the run
tally reads the typed value, never the columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import orjson

from connector.errors import ErrorClass

Status = Literal["ok", "error", "truncated", "skipped_null", "skipped_too_long", "skipped_upstream"]
STATUSES: tuple[Status, ...] = get_args(Status)
ERROR_CLASSES: tuple[ErrorClass, ...] = get_args(ErrorClass)


@dataclass(slots=True)
class RowOutcome:
    """What happened to one row: the record's metadata columns, typed (docs/PROMISES.md)."""

    status: Status
    error_class: ErrorClass | None = None
    error: str | None = None  # why it failed or was skipped, in words, secrets masked
    finish_reason: str | None = None
    model: str | None = None  # the model that answered; when every model failed, the last one asked
    attempts: int = 0  # HTTP attempts, retries, fallbacks and validation retries included
    cached: bool = False
    prompt_tokens: int | None = None  # every input token, however priced
    completion_tokens: int | None = None  # every output token, reasoning included
    cached_tokens: int | None = None  # of prompt_tokens, read from the provider's prompt cache
    cache_write_tokens: int | None = None  # of prompt_tokens, written to it
    reasoning_tokens: int | None = None  # of completion_tokens
    cost: float | None = None
    cost_source: str | None = None  # config (prices) or endpoint (the cost it reported)
    request_id: str | None = None  # the provider's id of the request that got the answer
    latency_ms: float | None = None
    ttft_ms: float | None = None
    raw_answer: str | None = None  # kept when a structured answer could not be used
    batch_id: str | None = None
    input_truncated: str | None = None  # too_long_policy truncate cut a cell to fit: which, and how much
    requests: int = 1  # the requests the row needs (with tasks: those asked): more attempts than this are retries

    @property
    def failed(self) -> bool:
        return self.status == "error"

    def columns(self) -> dict[str, Any]:
        """The record's metadata columns (all but ``_row_number``), in the schema's order."""
        return {
            "_status": self.status,
            "_error_class": self.error_class,
            "_error": self.error,
            "_finish_reason": self.finish_reason,
            "_model": self.model,
            "_attempts": self.attempts,
            "_cached": self.cached,
            "_prompt_tokens": self.prompt_tokens,
            "_completion_tokens": self.completion_tokens,
            "_cached_tokens": self.cached_tokens,
            "_cache_write_tokens": self.cache_write_tokens,
            "_reasoning_tokens": self.reasoning_tokens,
            "_cost": self.cost,
            "_cost_source": self.cost_source,
            "_request_id": self.request_id,
            "_latency_ms": self.latency_ms,
            "_ttft_ms": self.ttft_ms,
            "_raw_answer": self.raw_answer,
            "_batch_id": self.batch_id,
            "_input_truncated": self.input_truncated,
        }


def model_name(value: object) -> str | None:
    """A model as the ``_model`` column holds it: text, or None when there is none."""
    if value is None or value == "":
        return None
    return as_text(value)


def as_text(value: object) -> str:
    """A value the server sent for a text column, as text whatever its JSON type: a string as it is,
    anything else (an object, a number) as its JSON text, so the column's type never drifts from the
    discovered schema."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS).decode()
