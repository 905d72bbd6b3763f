"""One row in, one enriched record out: check, render, fit, ask (with fallbacks), validate, annotate.

A row's own trouble never stops the sync: its record is still emitted with a
status (``error``, ``truncated``, ``skipped_null``, ``skipped_too_long``), an
error class and a message. Only failures that no later row could escape (the key
rejected, quota exhausted, the URL or model wrong) are raised, as
:class:`FatalEndpointError`, to end the sync with a resumable state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from connector import errors
from connector.airbyte.protocol import dumps
from connector.answers.cache import AnswerCache, SingleFlight, cache_key
from connector.answers.columns import ExtraOutputs
from connector.answers.outcomes import classify, is_quota
from connector.answers.records import META_COLUMNS, ROW_NUMBER, Tally, empty_meta
from connector.config.model import SourceConfig
from connector.dialects.openai_chat import RequestBuilder
from connector.endpoint.client import Completion, EndpointClient
from connector.endpoint.limits import TokenEstimator
from connector.requests.templates import CONTENT_PATH, RequestTemplate, ResponseExtractor, dig
from connector.secrets import Redactor

__all__ = ["META_COLUMNS", "ROW_NUMBER", "FatalEndpointError", "RowEnricher", "Tally", "is_fatal"]


class FatalEndpointError(errors.ConnectorError):
    """An endpoint failure that every following row would hit too."""

    def __init__(self, cause: errors.EndpointError) -> None:
        if is_quota(cause):
            message = (f"quota or billing limit reached: {cause.message}. Add credit or raise the limit, "
                       "then run again from the last state: rows already emitted are not redone.")
        else:
            message = cause.message
        super().__init__(message)
        self.failure_type = "config_error" if not cause.retryable else "transient_error"
        self.cause = cause


class RowTooLong(errors.ConfigError):
    """A prompt does not fit the context window and ``too_long_policy`` is ``fail``."""


def is_fatal(exc: errors.EndpointError) -> bool:
    """3xx (URL moved), 401/403 (key), 404 (URL or model), quota: retrying other rows cannot help."""
    if not isinstance(exc, errors.HTTPStatusError):
        return False
    return exc.status in (401, 403, 404) or 300 <= exc.status < 400 or is_quota(exc)


class _Answer:
    """An answer and what it took."""

    __slots__ = ("attempts", "cached", "completion", "reply")

    def __init__(self, reply: dict[str, Any], completion: Completion | None, attempts: int, cached: bool) -> None:
        self.reply, self.completion, self.attempts, self.cached = reply, completion, attempts, cached


class RowEnricher:
    """Callable that turns (position, row) into a record's data.

    Looks each request up in the answer cache first, sends identical requests in
    flight only once, and stores each new answer before returning it.
    """

    def __init__(
        self,
        config: SourceConfig,
        client: EndpointClient,
        redactor: Redactor,
        template: RequestTemplate | None = None,
        cache: AnswerCache | None = None,
    ) -> None:
        self._config = config
        self._template = template or RequestTemplate.from_config(config)
        self._builder = RequestBuilder(config)
        self._extractor = ResponseExtractor(config.response, ExtraOutputs.from_config(config))
        self._client = client
        self._redact = redactor
        self._cache = cache if cache is not None and cache.enabled else None
        self._single_flight = SingleFlight()
        self._dialect = client.dialect.name  # the same body means another request in another API shape
        self._estimator = TokenEstimator()
        self._used_columns = sorted(self._template.columns)
        self._fallbacks = [m for m in config.fallback_models if m]
        self._windows = dict(config.context_windows)
        if config.model and config.context_window:
            self._windows.setdefault(config.model, config.context_window)

    @property
    def output_columns(self) -> list[str]:
        return self._extractor.column_names

    def body_for(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return self._builder.build(self._template.render(row))

    # The row -------------------------------------------------------------------------

    async def __call__(self, item: tuple[int, dict[str, Any]]) -> dict[str, Any]:
        data, body = self.plan(item)
        if body is None:
            return data
        return await self._ask(data, body)

    def plan(self, item: tuple[int, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The record so far and the body to send for it; no body when the row is skipped (its
        record is then complete). Sends nothing: ``--dry-run`` renders every row with it."""
        position, row = item
        data = dict(row)
        data[ROW_NUMBER] = position + 1
        config = self._config

        blank = [c for c in self._used_columns if _is_blank(row.get(c))]
        if blank and config.null_policy == "skip":
            return self._without_answer(data, "skipped_null", None,
                                        f"column(s) {', '.join(blank)} null or empty (null_policy skip)"), None
        if blank and config.null_policy == "literal":
            row = {**row, **dict.fromkeys(blank, config.null_literal)}

        body = self.body_for(row)
        if config.context_window:
            fitted = self._fit(row, body, position)
            if isinstance(fitted, str):
                return self._without_answer(data, "skipped_too_long", None, fitted), None
            body = fitted
        return data, body

    async def _ask(self, data: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """Ask the primary model, then each fallback the error class allows."""
        attempts = 0
        error: tuple[str, str] | None = None
        passed_over: list[str] = []
        for model in [body.get("model"), *self._fallbacks]:
            asked = body if model == body.get("model") else {**body, "model": model}
            window = self._windows.get(str(model)) if model else None
            if window is not None and self._prompt_tokens(asked) + _max_output(asked) > window:
                passed_over.append(f"{model} (context window {window})")
                continue
            try:
                answer = await self._answer(asked)
            except errors.EndpointError as exc:
                if is_fatal(exc):
                    raise FatalEndpointError(exc) from exc
                attempts += exc.attempts
                error = (classify(exc), self._redact(exc.message))
                if error[0] in self._config.fallback_on:
                    continue
                break
            answer.attempts += attempts
            return await self._finish(data, asked, answer)
        if error is None:  # every model was passed over for its context window
            return self._without_answer(data, "skipped_too_long", None,
                                        f"the prompt fits no model's context window: {', '.join(passed_over)}")
        data.update(dict.fromkeys(self._extractor.column_names))
        data.update(empty_meta("error", error[0], error[1], attempts))
        return data

    async def _answer(self, body: dict[str, Any]) -> _Answer:
        """From the cache, from an identical request in flight, or from the endpoint."""
        key = cache_key(self._client.url, self._dialect, body)
        cache = self._cache
        if cache is not None:
            reply = cache.get(key)
            if reply is not None:
                return _Answer(reply, None, 0, cached=True)
        completion, shared = await self._single_flight.run(key, lambda: self._client.complete(body))
        if cache is not None and not shared:
            cache.put(key, completion.reply)  # stored before the record exists: never paid twice
        return _Answer(completion.reply, completion, 0 if shared else completion.attempts, cached=shared)

    async def _finish(self, data: dict[str, Any], body: dict[str, Any], answer: _Answer) -> dict[str, Any]:
        """Validate the answer (asking again with feedback), then fill the record."""
        columns, problem = self._extractor.extract(answer.reply)
        retries = self._config.validation_retries
        while problem and retries and _finish_reason(answer.reply) != "length":
            retry_body = _with_feedback(body, dig(answer.reply, CONTENT_PATH), problem)
            if retry_body is None:
                break
            retries, body = retries - 1, retry_body
            try:
                again = await self._answer(body)
            except errors.EndpointError as exc:
                if is_fatal(exc):
                    raise FatalEndpointError(exc) from exc
                break
            again.attempts += answer.attempts
            answer = again
            columns, problem = self._extractor.extract(answer.reply)
        data.update(columns)
        return self._fill(data, body, answer, problem)

    def _fill(self, data: dict[str, Any], body: Mapping[str, Any], answer: _Answer,
              problem: str | None) -> dict[str, Any]:
        reply = answer.reply
        usage = reply.get("usage") or {}
        finish = _finish_reason(reply)
        content = dig(reply, CONTENT_PATH)
        status, error_class, error = "ok", None, None
        if finish == "length":
            status, error = "truncated", "the answer was cut off by the token limit (finish_reason length)"
        elif finish == "content_filter":
            status, error_class, error = "error", "content_filter", "the provider's content filter withheld the answer"
        elif problem:
            status, error_class, error = "error", "validation", problem
        prompt_tokens, completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
        completion = answer.completion
        if completion is not None and isinstance(prompt_tokens, int):
            self._estimator.observe(_prompt_chars(body), prompt_tokens, completion_tokens)
        data.update(
            _status=status,
            _error_class=error_class,
            _error=error,
            _finish_reason=finish,
            _model=reply.get("model") or body.get("model"),
            _attempts=answer.attempts,
            _cached=answer.cached,
            _prompt_tokens=prompt_tokens,
            _completion_tokens=completion_tokens,
            _cost=self._cost(body, prompt_tokens, completion_tokens, answer.cached),
            _latency_ms=None if completion is None else round(completion.latency_ms, 1),
            _ttft_ms=None if completion is None or completion.ttft_ms is None else round(completion.ttft_ms, 1),
            _raw_answer=content if problem and status == "error" else None,
        )
        return data

    def _without_answer(self, data: dict[str, Any], status: str, error_class: str | None,
                        message: str) -> dict[str, Any]:
        data.update(dict.fromkeys(self._extractor.column_names))
        data.update(empty_meta(status, error_class, message))
        return data

    # Sizes and prices ----------------------------------------------------------------

    def _prompt_tokens(self, body: Mapping[str, Any]) -> int:
        return self._estimator.prompt_tokens(_prompt_chars(body))

    def _fit(self, row: Mapping[str, Any], body: dict[str, Any], position: int) -> dict[str, Any] | str:
        """The body, truncated to fit where the policy says so; a skip reason when it cannot fit."""
        config = self._config
        window = int(config.context_window or 0)
        allowed = window - _max_output(body)
        estimate = self._prompt_tokens(body)
        if estimate <= allowed:
            return body
        reason = (f"the prompt is ~{estimate} tokens and max_tokens {_max_output(body)}: "
                  f"more than context_window {window}")
        if config.too_long_policy == "fail":
            raise RowTooLong(f"row {position + 1}: {reason}; set too_long_policy to skip or truncate")
        column = config.truncate_column
        if config.too_long_policy == "skip" or not column or not isinstance(row.get(column), str):
            return reason + " (too_long_policy skip)" if config.too_long_policy == "skip" else \
                reason + f" and column {column!r} is not text to truncate"
        text = row[column]
        for _ in range(4):  # the estimate is linear in characters: one or two rounds suffice
            excess = estimate - allowed
            cut = math.ceil(excess * self._estimator.chars_per_token * 1.1) + 16
            if cut >= len(text):
                return reason + f" even with column {column!r} emptied"
            text = text[: len(text) - cut] + "…"
            body = self.body_for({**row, column: text})
            estimate = self._prompt_tokens(body)
            if estimate <= allowed:
                return body
        return reason

    def _cost(self, body: Mapping[str, Any], prompt_tokens: Any, completion_tokens: Any,
              cached: bool) -> float | None:
        prices = self._config.prices
        price = prices.get(str(body.get("model"))) or prices.get("*")
        if price is None:
            return None
        if cached:
            return 0.0
        return ((prompt_tokens or 0) * price.input_per_million
                + (completion_tokens or 0) * price.output_per_million) / 1_000_000


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _max_output(body: Mapping[str, Any]) -> int:
    value = body.get("max_tokens") or body.get("max_completion_tokens") or 0
    return int(value) if isinstance(value, (int, float)) else 0


def _finish_reason(reply: Mapping[str, Any]) -> str | None:
    value = dig(reply, ("choices", 0, "finish_reason"))
    return str(value) if value is not None else None


def _prompt_chars(body: Mapping[str, Any]) -> int:
    """Characters of the conversation part of a body, whichever API shape it has."""
    for key in ("messages", "input", "contents"):
        if key in body:
            extra = body.get("system") or body.get("instructions") or body.get("systemInstruction") or ""
            return len(dumps(body[key])) + len(dumps(extra))
    return len(dumps(body))


def _with_feedback(body: dict[str, Any], answer: Any, problem: str) -> dict[str, Any] | None:
    """The conversation so far, the unusable answer, and what was wrong with it; None when the
    body's shape has no conversation to extend."""
    said = answer if isinstance(answer, str) else ""
    ask = f"That answer could not be used: {problem}. Reply again with only the corrected JSON object."
    if isinstance(body.get("messages"), list):  # chat completions, Anthropic Messages
        turns = [{"role": "assistant", "content": said}, {"role": "user", "content": ask}]
        return {**body, "messages": [*body["messages"], *turns]}
    if isinstance(body.get("contents"), list):  # Gemini
        parts: list[dict[str, Any]] = [{"role": "model", "parts": [{"text": said}]},
                                       {"role": "user", "parts": [{"text": ask}]}]
        return {**body, "contents": [*body["contents"], *parts]}
    if isinstance(body.get("input"), (list, str)):  # Responses
        before = body["input"] if isinstance(body["input"], list) else [{"role": "user", "content": body["input"]}]
        turns = [{"role": "assistant", "content": said}, {"role": "user", "content": ask}]
        return {**body, "input": [*before, *turns]}
    return None
