"""One row in, one enriched record out: check, render, fit, ask (with fallbacks), validate, annotate.

A row's own trouble never stops the sync: its record is still emitted with a
status (``error``, ``truncated``, ``skipped_null``, ``skipped_too_long``), an
error class and a message. Only failures that no later row could escape (the key
rejected, quota exhausted, the URL or model wrong) are raised, as
:class:`~connector.errors.FatalEndpointError`, to end the sync with a resumable
state. A row whose request a spend guard refused gives ``None``: it was not done,
and the run loop stops before it.

What a row cost is what every attempt for it cost: an answer that failed
validation and was asked again was paid for too, so ``_prompt_tokens``,
``_completion_tokens`` and ``_cost`` add up all the answers bought for the row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector import errors
from connector.answers.cache import AnswerCache, SingleFlight, cache_key
from connector.answers.columns import ExtraOutputs
from connector.answers.extract import CONTENT_PATH, ResponseExtractor, dig
from connector.answers.records import ROW_NUMBER, empty_meta
from connector.config.model import SourceConfig
from connector.dialects.replies import token_count
from connector.endpoint.classify import classify, fatal, is_fatal
from connector.endpoint.client import Completion, EndpointClient
from connector.endpoint.limits import TokenEstimator
from connector.requests.templates import RequestTemplate
from connector.rows.columns import FlawedRow
from connector.secrets import Redactor

Record = dict[str, Any]


class _Spent:
    """What the answers bought for one row cost, summed over every attempt that got one."""

    __slots__ = ("completion_tokens", "cost", "paid", "prompt_tokens", "reported")

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost = 0.0
        self.paid = 0  # answers bought (not from the cache, not shared with an identical row)
        self.reported = 0  # of those, the answers whose usage said what they cost


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
        self._dialect = client.dialect  # the run's one dialect: bodies are built for the shape the client speaks
        self._template = template or RequestTemplate.from_config(config, self._dialect.conversation_key)
        self._extractor = ResponseExtractor(config.response_template, ExtraOutputs.from_config(config))
        self._client = client
        self._redact = redactor
        self._cache = cache if cache is not None and cache.enabled else None
        self._single_flight = SingleFlight()
        self._estimator = TokenEstimator()
        self._used_columns = sorted(self._template.columns)
        self._fallbacks = [m for m in config.fallback_models if m]
        self._windows = dict(config.context_windows)
        if config.model and config.context_window:
            self._windows.setdefault(config.model, config.context_window)
        # Prompt sizes are estimated (and the estimate corrected from usage) only for context windows.
        self._sizes_prompts = bool(self._windows or config.context_window)

    @property
    def output_columns(self) -> list[str]:
        return self._extractor.column_names

    def body_for(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return self._dialect.build(self._template.render(row))

    # The row -------------------------------------------------------------------------

    async def __call__(self, item: tuple[int, dict[str, Any]]) -> Record | None:
        """The row's record; None when a spend guard refused its request (the row is not done)."""
        data, body = self.plan(item)
        if body is None:
            return data
        try:
            return await self._ask(data, body)
        except errors.SpendLimitReached:
            return None

    def plan(self, item: tuple[int, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The record so far and the body to send for it; no body when the row is skipped (its
        record is then complete). Sends nothing: ``--dry-run`` renders every row with it."""
        position, row = item
        data = dict(row)
        data[ROW_NUMBER] = position + 1
        config = self._config
        if isinstance(row, FlawedRow):  # a value did not fit its column: nothing to ask about
            return self._without_answer(data, "error", "bad_input", row.problem), None

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

    async def _ask(self, data: Record, body: dict[str, Any]) -> Record:
        """Ask the primary model, then each fallback the error class allows."""
        attempts = 0
        error: tuple[str, str] | None = None
        passed_over: list[str] = []
        spent = _Spent()
        tried: object = None  # the last model asked (a body's model is whatever JSON the template gave)
        for model in [body.get("model"), *self._fallbacks]:
            asked = body if model == body.get("model") else {**body, "model": model}
            window = self._windows.get(str(model)) if model else None
            if window is not None and self._prompt_tokens(asked) + self._max_output(asked) > window:
                passed_over.append(f"{model} (context window {window})")
                continue
            tried = model
            try:
                answer = await self._answer(asked, spent)
            except errors.EndpointError as exc:
                if is_fatal(exc):
                    raise fatal(exc) from exc
                attempts += exc.attempts
                error = (classify(exc), self._redact(exc.message))
                if error[0] in self._config.fallback_on:
                    continue
                break
            answer.attempts += attempts
            return await self._finish(data, asked, answer, spent)
        if error is None:  # every model was passed over for its context window
            return self._without_answer(data, "skipped_too_long", None,
                                        f"the prompt fits no model's context window: {', '.join(passed_over)}")
        data.update(dict.fromkeys(self._extractor.column_names))
        data.update(empty_meta("error", error[0], error[1], attempts))
        data["_model"] = tried  # every model failed: the last one asked (not one passed over)
        return data

    async def _answer(self, body: dict[str, Any], spent: _Spent) -> _Answer:
        """From the cache, from an identical request in flight, or from the endpoint (added to ``spent``)."""
        key = cache_key(self._client.url, self._dialect.name, body)  # the same body, another shape: another request
        cache = self._cache
        if cache is not None:
            reply = cache.get(key)
            if reply is not None:
                return _Answer(reply, None, 0, cached=True)
        completion, shared = await self._single_flight.run(key, lambda: self._client.complete(body))
        if shared:
            return _Answer(completion.reply, completion, 0, cached=True)
        if cache is not None:
            cache.put(key, completion.reply)  # stored before the record exists: never paid twice
        self._spend(spent, body, completion)
        return _Answer(completion.reply, completion, completion.attempts, cached=False)

    def _spend(self, spent: _Spent, body: Mapping[str, Any], completion: Completion, batch: bool = False) -> None:
        usage = completion.reply.get("usage") or {}
        prompt, output = token_count(usage.get("prompt_tokens")), token_count(usage.get("completion_tokens"))
        spent.paid += 1
        spent.reported += prompt is not None or output is not None
        spent.prompt_tokens += prompt or 0
        spent.completion_tokens += output or 0
        spent.cost += self._price(body, prompt, output, batch) or 0.0
        if prompt is not None and self._sizes_prompts:
            self._estimator.observe(self._dialect.prompt_chars(body), prompt, output)

    async def _finish(self, data: Record, body: dict[str, Any], answer: _Answer, spent: _Spent) -> Record:
        """Validate the answer (asking again with feedback), then fill the record."""
        columns, problem = self._extractor.extract(answer.reply)
        retries = self._config.validation_retries
        while problem and retries and _finish_reason(answer.reply) != "length":
            retry_body = self._with_feedback(body, dig(answer.reply, CONTENT_PATH), problem)
            if retry_body is None:
                break
            retries -= 1
            try:
                again = await self._answer(retry_body, spent)
            except errors.EndpointError as exc:
                if is_fatal(exc):
                    raise fatal(exc) from exc
                # The retry failed: the row is an error of that class, its first answer kept.
                data.update(columns)
                record = self._fill(data, body, answer, problem, spent)
                record.update(_status="error", _error_class=classify(exc), _attempts=answer.attempts + exc.attempts,
                              _error=self._redact(f"the answer could not be used ({problem}) and asking again "
                                                  f"failed: {exc.message}"))
                return record
            again.attempts += answer.attempts
            body, answer = retry_body, again
            columns, problem = self._extractor.extract(answer.reply)
        data.update(columns)
        return self._fill(data, body, answer, problem, spent)

    def _fill(self, data: Record, body: Mapping[str, Any], answer: _Answer, problem: str | None,
              spent: _Spent) -> Record:
        reply = answer.reply
        finish = _finish_reason(reply)
        content = dig(reply, CONTENT_PATH)
        status, error_class, error = "ok", None, None
        if finish == "length":
            status, error = "truncated", "the answer was cut off by the token limit (finish_reason length)"
        elif finish == "content_filter":
            status, error_class, error = "error", "content_filter", "the provider's content filter withheld the answer"
        elif problem:
            status, error_class, error = "error", "validation", problem
        if spent.paid:  # what this run bought for the row, every attempt included; unknown without usage
            prompt_tokens: int | None = spent.prompt_tokens if spent.reported else None
            completion_tokens: int | None = spent.completion_tokens if spent.reported else None
        else:  # from the cache or shared with an identical row: what that answer had used
            usage = reply.get("usage") or {}
            prompt_tokens = token_count(usage.get("prompt_tokens"))
            completion_tokens = token_count(usage.get("completion_tokens"))
        completion = answer.completion
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
            _cost=self._row_cost(body, spent),
            _latency_ms=None if completion is None else round(completion.latency_ms, 1),
            _ttft_ms=None if completion is None or completion.ttft_ms is None else round(completion.ttft_ms, 1),
            _raw_answer=content if problem and status == "error" else None,
            _batch_id=None,
        )
        return data

    def _without_answer(self, data: dict[str, Any], status: str, error_class: str | None,
                        message: str) -> dict[str, Any]:
        data.update(dict.fromkeys(self._extractor.column_names))
        data.update(empty_meta(status, error_class, message))
        return data

    # Rows a provider batch answered (pipeline/batch_source.py) ------------------------

    async def finish_batch(self, data: Record, body: dict[str, Any], reply: dict[str, Any], batch_id: str) -> Record:
        """The record of a row whose answer came from provider batch ``batch_id``: validated like any
        answer (a validation retry is a normal request), priced at the batch price."""
        spent = _Spent()
        self._spend(spent, body, Completion(reply, 0.0, None), batch=True)
        record = await self._finish(data, body, _Answer(reply, None, 1, cached=False), spent)
        record["_latency_ms"] = None  # hours in a queue, not a request's latency
        record["_batch_id"] = batch_id
        return record

    def batch_error(self, data: Record, body: Mapping[str, Any], error: errors.EndpointError,
                    batch_id: str) -> Record:
        """The record of a row whose request failed inside provider batch ``batch_id`` (nothing bought)."""
        if is_fatal(error):
            raise fatal(error) from error
        data.update(dict.fromkeys(self._extractor.column_names))
        data.update(empty_meta("error", classify(error), self._redact(error.message), 1))
        data.update(_model=body.get("model"), _batch_id=batch_id)
        return data

    # Sizes and prices ----------------------------------------------------------------

    def _prompt_tokens(self, body: Mapping[str, Any]) -> int:
        return self._estimator.prompt_tokens(self._dialect.prompt_chars(body))

    def _max_output(self, body: Mapping[str, Any]) -> int:
        """The room the answer needs, from the body's own output-limit field (max_output_tokens,
        generationConfig.maxOutputTokens, ...)."""
        return self._dialect.max_output_tokens(body) or 0

    def _with_feedback(self, body: Mapping[str, Any], answer: Any, problem: str) -> dict[str, Any] | None:
        """The conversation so far, the unusable answer, and what was wrong with it, in the run's API
        shape; None when the body has no conversation to extend."""
        said = answer if isinstance(answer, str) else ""
        ask = f"That answer could not be used: {problem}. Reply again with only the corrected JSON object."
        return self._dialect.with_feedback(body, said, ask)

    def _fit(self, row: Mapping[str, Any], body: dict[str, Any], position: int) -> dict[str, Any] | str:
        """The body, truncated to fit where the policy says so; a skip reason when it cannot fit."""
        config = self._config
        window = int(config.context_window or 0)
        allowed = window - self._max_output(body)
        estimate = self._prompt_tokens(body)
        if estimate <= allowed:
            return body
        reason = (f"the prompt is ~{estimate} tokens and max_tokens {self._max_output(body)}: "
                  f"more than context_window {window}")
        if config.too_long_policy == "fail":
            raise errors.RowTooLong(f"row {position + 1}: {reason}; set too_long_policy to skip or truncate")
        column = config.truncate_column
        if config.too_long_policy == "skip":
            return reason + " (too_long_policy skip)"
        if not column or not isinstance(row.get(column), str):
            return reason + f" and column {column!r} is not text to truncate"
        fitted = self._truncated(row, column, allowed)
        return fitted if fitted is not None else reason + f" even with column {column!r} emptied"

    def _truncated(self, row: Mapping[str, Any], column: str, allowed: int) -> dict[str, Any] | None:
        """The body with the longest prefix of ``column`` (marked with "…") whose prompt fits in
        ``allowed`` tokens; None when not even the empty cell fits.

        A binary search over the prefix length: the estimate grows with the prefix, whatever
        the API shape, the template (the column may appear twice) and JSON escaping do to it.
        """
        text: str = row[column]

        def body_with(keep: int) -> dict[str, Any]:
            return self.body_for({**row, column: text[:keep] + "…"})

        shortest = body_with(0)
        if self._prompt_tokens(shortest) > allowed:
            return None
        best, low, high = shortest, 1, len(text) - 1  # the whole text is known not to fit
        while low <= high:
            middle = (low + high) // 2
            candidate = body_with(middle)
            if self._prompt_tokens(candidate) <= allowed:
                best, low = candidate, middle + 1
            else:
                high = middle - 1
        return best

    def _price(self, body: Mapping[str, Any], prompt_tokens: int | None,
               completion_tokens: int | None, batch: bool = False) -> float | None:
        """What one answer cost, or None without a price for its model; at the batch price for a
        provider batch's answer or OpenAI's flex tier (which bills batch rates)."""
        prices = self._config.prices
        price = prices.get(str(body.get("model"))) or prices.get("*")
        if price is None:
            return None
        per_input, per_output = price.rates(batch or body.get("service_tier") == "flex")
        return ((prompt_tokens or 0) * per_input + (completion_tokens or 0) * per_output) / 1_000_000

    def _row_cost(self, body: Mapping[str, Any], spent: _Spent) -> float | None:
        """The row's ``_cost``: what this run paid for it (0 for a cached answer), None without prices."""
        prices = self._config.prices
        if not prices or (str(body.get("model")) not in prices and "*" not in prices and not spent.cost):
            return None
        if spent.paid and not spent.reported:
            return None  # bought, but the server did not say what it used: unknown, not free
        return spent.cost


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _finish_reason(reply: Mapping[str, Any]) -> str | None:
    value = dig(reply, ("choices", 0, "finish_reason"))
    return str(value) if value is not None else None
