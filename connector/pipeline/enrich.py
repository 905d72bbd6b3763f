"""One row in, one enriched record out: the orchestrator of a row's jobs.

:meth:`RowEnricher.plan` checks the row, renders it and fits it to the context window
(:mod:`connector.pipeline.fit`); :meth:`RowEnricher.__call__` asks the endpoint (the primary model,
then each fallback the error class allows), with the answer cache and single flight in front
(:meth:`RowEnricher._answer`); the answer is validated and asked again with feedback
(:meth:`RowEnricher._validated`), priced (:mod:`connector.answers.prices`) and judged into the
row's typed outcome (:mod:`connector.answers.judge`).

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connector import errors
from connector.answers.cache import AnswerCache, SingleFlight, cache_key, limit_of
from connector.answers.extract import ResponseExtractor
from connector.answers.judge import charge, content_of, finish_reason, judged
from connector.answers.outcomes import RowOutcome, Status, model_name
from connector.answers.prices import PriceList, Spend
from connector.answers.records import ROW_NUMBER, Enriched, Record
from connector.answers.truncation import flag_cut_prompt
from connector.config.parts import RowPolicy
from connector.dialects.media_rules import byte_limit
from connector.dialects.media_rules import problem as media_problem
from connector.dialects.media_rules import tokens as media_tokens
from connector.dialects.usage import TokenUsage, usage_from
from connector.endpoint.classify import classify, fatal, is_fatal
from connector.endpoint.client import Completion, EndpointClient
from connector.errors import ErrorClass
from connector.pipeline.fit import ContextFit
from connector.pipeline.validate import AnswerCheck
from connector.requests.media import DEFAULT_LIMIT, MediaError, StoreReader, load, media_of, place, stand_ins
from connector.requests.templates import RequestTemplate
from connector.rows.columns import FlawedRow
from connector.secrets import Redactor

Body = dict[str, Any]


@dataclass(slots=True)
class Ask:
    """A row ready to send: its values so far and the request body."""

    number: int
    values: Record
    body: Body
    media_tokens: int = 0  # the estimate of its images and documents (their base64 is not counted as text)
    truncated: str | None = None  # what too_long_policy truncate cut, for _input_truncated


class _Answer:
    """An answer and what it took."""

    __slots__ = ("attempts", "cached", "completion", "reply", "shown")

    def __init__(self, reply: dict[str, Any], completion: Completion | None, attempts: int, cached: bool,
                 shown: dict[str, Any] | None = None) -> None:
        self.reply, self.completion, self.attempts, self.cached = reply, completion, attempts, cached
        self.shown = shown  # the reply with the run's secrets masked, once it was (None: not yet)


class RowEnricher:
    """Callable that turns (position, row) into the row's :class:`~connector.answers.records.Enriched`.

    Looks each request up in the answer cache first, sends identical requests in
    flight only once, and stores each new answer before returning it.
    """

    def __init__(self, policy: RowPolicy, client: EndpointClient, template: RequestTemplate,
                 extractor: ResponseExtractor, redactor: Redactor, cache: AnswerCache | None = None, *,
                 requester: str, store: StoreReader | None = None) -> None:
        self._policy = policy
        self._dialect = client.dialect  # the run's one dialect: bodies are built for the shape the client speaks
        self._template = template
        self._check = AnswerCheck(extractor, self._dialect, policy.validation_retries)
        self._client = client
        self._prices = PriceList.at(policy.prices, client.url)
        self._redact = redactor
        self._cache = cache if cache is not None and cache.enabled else None
        self._requester = requester  # secrets.requester_identity: a keyed hash, no credential in any cache key
        self._single_flight = SingleFlight()
        # Rows a spend guard refused after some of their attempts were billed (cut before their answer).
        self.refused: list[RowOutcome] = []
        self._used_columns = sorted(template.columns)
        self._media = dict(policy.media_columns)
        self._store = store  # media cells naming s3:// (gs://, az://) objects are read through it
        self._fallbacks = policy.fallback_models
        self._fit = ContextFit(self._dialect, self.body_for, policy.context_window, policy.context_windows,
                               policy.too_long_policy, policy.truncate_column)

    @property
    def redact(self) -> Redactor:
        """The run's mask for anything said about a row (error messages)."""
        return self._redact

    @property
    def output_columns(self) -> list[str]:
        return self._check.column_names

    def columns_of(self, reply: dict[str, Any]) -> Record | None:
        """The output columns of ``reply`` (an answer from the cache), or None when it does not pass
        validation (the dry run's view of an answer a later task uses)."""
        columns, problem = self._check.check(reply)
        return columns if problem is None else None

    def body_for(self, row: Mapping[str, Any]) -> Body:
        if self._media:  # media columns: their stand-ins become content parts (connector.requests.media)
            return self._dialect.build(place(self._template.render(row), media_of(row)))
        return self._dialect.build(self._template.render(row))

    # The row -------------------------------------------------------------------------

    async def __call__(self, item: tuple[int, dict[str, Any]]) -> Enriched | None:
        """The row done; None when a spend guard refused its request (the row is not done)."""
        planned = self.plan(item)
        if isinstance(planned, Enriched):
            return planned
        return await self.ask(planned)

    def plan(self, item: tuple[int, dict[str, Any]]) -> Enriched | Ask:
        """The request to send for the row, or the row done without one (skipped, or a value that does
        not fit). Sends nothing: ``--dry-run`` renders every row with it."""
        position, row = item
        values = dict(row)
        values[ROW_NUMBER] = number = position + 1
        policy = self._policy
        if isinstance(row, FlawedRow):  # a value did not fit its column: nothing to ask about
            return self._unanswered(number, values, "error", row.problem, "bad_input")
        blank = [c for c in self._used_columns if _is_blank(row.get(c))]
        if blank and policy.null_policy == "skip":
            return self._unanswered(number, values, "skipped_null",
                                    f"column(s) {', '.join(blank)} null or empty (null_policy skip)")
        if blank and policy.null_policy == "literal":
            row = {**row, **dict.fromkeys(blank, policy.null_literal)}
        media_tokens = 0
        try:
            if self._media:
                row, media_tokens = self._with_media(row)
            body = self.body_for(row)  # a media column placed where no media can go: MediaError
        except MediaError as exc:
            return self._unanswered(number, values, "error", str(exc), "bad_input")
        truncated = None
        if policy.context_window:
            fitted = self._fit.fit(row, body, position, media_tokens)
            if isinstance(fitted, str):
                return self._unanswered(number, values, "skipped_too_long", fitted)
            body, truncated = fitted
        return Ask(number, values, body, media_tokens, truncated)

    def _with_media(self, row: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
        """The row with its media loaded, and their estimated tokens; MediaError when they cannot be sent
        in this API shape (nothing is)."""
        shape = self._dialect.name
        refused = media_problem(shape, [])  # a shape that takes no media: nothing is read or downloaded
        if refused is not None:
            raise MediaError(refused)
        media = [load(row.get(column), kind, column, store=self._store, limit=byte_limit(shape, kind, DEFAULT_LIMIT))
                 for column, kind in self._media.items()
                 if column in self._used_columns and not _is_blank(row.get(column))]
        problem = media_problem(shape, media)
        if problem is not None:
            raise MediaError(problem)
        return stand_ins(row, {m.column: m for m in media}), media_tokens(self._dialect.name, media)

    async def ask(self, ask: Ask, prior: Sequence[TokenUsage] = ()) -> Enriched | None:
        """A planned row done, asked alone (the primary model, then each fallback its error class allows); None when
        a spend guard refused it (its cut attempts' cost is in ``refused``). ``prior``: its share of a shared request's
        usage that gave it no usable answer (:mod:`.row_packs`, :mod:`.input_groups`), counted in its cost too."""
        body, attempts = ask.body, 0
        error: tuple[ErrorClass, str] | None = None
        passed_over: list[str] = []
        spend = self._spent(body, prior)
        tried: object = None  # the last model asked (a body's model is whatever JSON the template gave)
        for model in [body.get("model"), *self._fallbacks]:
            asked = body if model == body.get("model") else {**body, "model": model}
            window = self._fit.too_big_for(model, asked, ask.media_tokens)
            if window is not None:
                passed_over.append(f"{model} (context window {window})")
                continue
            tried = model
            try:
                answer = await self._answer(asked, spend, ask.media_tokens)
            except errors.SpendLimitReached:
                self._refused(spend, tried)  # attempts cut before their answer were billed
                return None
            except errors.EndpointError as exc:
                attempts += exc.attempts
                error = (self._classify(exc), self._redact(exc.message))
                if error[0] in self._policy.fallback_on:
                    continue
                break
            answer.attempts += attempts
            return await self._validated(ask, asked, answer, spend)  # _judged gives it input_truncated
        return self._unasked(ask, error, passed_over, attempts, tried, spend)

    def _refused(self, spend: Spend, model: object) -> None:
        """A row a spend guard stopped: what it had bought goes into the summary (``refused``), not a record."""
        if spend.paid:
            self.refused.append(self._charged(RowOutcome("error"), spend, model))

    def _unasked(self, ask: Ask, error: tuple[ErrorClass, str] | None, passed_over: list[str], attempts: int,
                 tried: object, spend: Spend) -> Enriched:
        if error is None:  # no model answered: every one was passed over for its context window
            done = self._unanswered(ask.number, ask.values, "skipped_too_long",
                                    f"the prompt fits no model's context window: {', '.join(passed_over)}")
        else:
            done = self._unanswered(ask.number, ask.values, "error", error[1], error[0], attempts)
            done.outcome.model = model_name(tried)  # every model failed: the last one asked (not one passed over)
            if spend.paid:  # attempts cut before their answer were still billed
                self._charged(done.outcome, spend, tried)
        done.outcome.input_truncated = ask.truncated  # also when it failed: the prompt it failed with was cut
        return done

    def _spent(self, body: Body, billed: Sequence[TokenUsage]) -> Spend:
        spend = Spend()  # starting with ``billed``: its share of requests that gave it no answer
        for usage in billed:
            self._count(spend, body, usage)
        return spend

    def refused_after(self, body: Body, billed: Sequence[TokenUsage]) -> None:
        """A request a spend guard refused after ``billed`` attempts of it were cut: the summary counts them."""
        self._refused(self._spent(body, billed), body.get("model"))

    def _charged(self, outcome: RowOutcome, spend: Spend, model: object) -> RowOutcome:
        """``outcome`` with the tokens and cost of what ``spend`` bought."""
        charge(outcome, spend.usage(), spend, self._prices, model)
        outcome.attempts = max(outcome.attempts, spend.paid)
        return outcome

    def answer_key(self, body: Body) -> str:
        """The answer-cache key of ``body`` as this run sends it: the same body to another URL, in
        another shape, with another key or routing header is another request."""
        return cache_key(self._client.url, self._dialect.name, body, self._requester)

    async def _answer(self, body: Body, spend: Spend, media: int = 0) -> _Answer:
        """From the cache, from an identical request in flight, or from the endpoint (added to ``spend``);
        ``media``: the estimate of the body's media tokens, for an attempt cut before its usage."""
        key = self.answer_key(body)
        cache = self._cache
        if cache is not None and (reply := self.cached_answer(body, key)) is not None:
            return _Answer(reply, None, 0, cached=True)
        def billed(usage: TokenUsage) -> None:  # an attempt cut before its answer, billed all the same
            self._count(spend, body, usage)

        completion, shared = await self._single_flight.run(key, lambda: self._client.complete(body, billed, media))
        if shared:
            return _Answer(completion.reply, completion, 0, cached=True)
        shown, raw = self._redact.masked_json(completion.reply)  # masked once, for the cache and the record alike
        usage = usage_from(completion.reply, completion.headers)  # read once, for the keep and the spend
        if cache is not None:
            cache.put(key, shown, masked=True, raw=raw)  # stored before the record exists: never paid twice
            self._keep(cache, body, completion.reply, usage)
        self._spend(spend, body, completion.reply, usage=usage)
        return _Answer(completion.reply, completion, completion.attempts, cached=False, shown=shown)

    def cached_answer(self, body: Body, key: str | None = None) -> dict[str, Any] | None:
        """The answer to ``body`` in the answer cache: its own, or one bought with another output-token cap
        that ended on its own (not cut off) within this body's cap; None when there is none.

        So raising ``max_tokens`` after some answers were cut off asks again only those: the others ended
        before the old cap, and would have ended there under the new one too. Looked up only when the cache
        had such answers at open (:attr:`AnswerCache.limits`, :attr:`AnswerCache.has_kept`)."""
        cache = self._cache
        if cache is None:
            return None
        key = key or self.answer_key(body)
        reply = cache.get(key)
        if reply is not None or not (cache.limits or cache.has_kept):
            return reply
        cap = self._dialect.max_output_tokens(body)
        for other in cache.under_other_caps(self._dialect, body, self.answer_key):
            reply = cache.get(other)
            if reply is not None and finish_reason(reply) not in ("length", None):
                used = usage_from(reply).completion
                if cap is None or (used is not None and used <= cap):
                    return reply
        return None

    def _keep(self, cache: AnswerCache, body: Body, reply: dict[str, Any], usage: TokenUsage) -> None:
        """An answer that ended on its own under a cap, with its output tokens known, is found by a request with
        another cap: the cache notes the cap (once per cap, not once per answer)."""
        if finish_reason(reply) in ("length", None) or usage.completion is None:
            return
        limit = limit_of(self._dialect, body)
        if limit is not None:
            cache.note_limit(limit)

    def _spend(self, spend: Spend, body: Mapping[str, Any], reply: Mapping[str, Any],
               headers: Mapping[str, str] | None = None, batch: bool = False, usage: TokenUsage | None = None) -> None:
        usage = usage if usage is not None else usage_from(reply, headers)
        self._count(spend, body, usage, batch)
        self._fit.observe(body, usage.prompt, usage.completion)

    def _count(self, spend: Spend, body: Mapping[str, Any], usage: TokenUsage, batch: bool = False) -> None:
        spend.add(self._prices, self._dialect.CACHE_PRICING, body.get("model"), body.get("service_tier"),
                  usage, batch)

    async def _validated(self, ask: Ask, body: Body, answer: _Answer, spend: Spend) -> Enriched | None:
        """Validate the answer (asking again with feedback, :mod:`connector.pipeline.validate`), then judge
        it into the row's outcome; None when a spend guard refused a retry (what was bought is in ``refused``)."""
        columns, problem = self._check.check(answer.reply)
        retries = self._check.retries
        while (retry_body := self._check.ask_again(body, answer.reply, problem, retries)) is not None:
            retries -= 1
            change = self._dialect.answered_free_text(content_of(answer.reply))
            if change is not None:  # the retry, and every request after it, goes in the next mode
                self._client.notice("WARN", change)
            try:
                again = await self._answer(retry_body, spend, ask.media_tokens)
            except errors.SpendLimitReached:
                self._refused(spend, body.get("model"))  # the answers before the retry were bought
                return None
            except errors.EndpointError as exc:
                # The retry failed: the row is an error of that class, its first answer kept.
                done = self._judged(ask, columns, body, answer, problem, spend)
                done.outcome.status, done.outcome.error_class = "error", self._classify(exc)
                done.outcome.attempts = answer.attempts + exc.attempts
                done.outcome.error = self._redact(f"the answer could not be used ({problem}) and asking again "
                                                  f"failed: {exc.message}")
                return done
            again.attempts += answer.attempts
            body, answer = retry_body, again
            columns, problem = self._check.check(answer.reply)
        return self._judged(ask, columns, body, answer, problem, spend)

    def _judged(self, ask: Ask, columns: Record, body: Body, answer: _Answer, problem: str | None,
                spend: Spend) -> Enriched:
        # An endpoint that echoes the key into its answer: masked in every column and _raw_answer.
        ask.values.update(self._redact.masked(columns))
        headers = answer.completion.headers if answer.completion is not None else None  # None: from the cache
        shown = answer.shown if answer.shown is not None else self._redact.masked(answer.reply)
        outcome = judged(shown, body.get("model"), problem, attempts=answer.attempts,
                         cached=answer.cached, completion=answer.completion, spend=spend, prices=self._prices,
                         request_id=self._dialect.request_id(headers) if headers is not None else None)
        outcome.input_truncated = ask.truncated
        if outcome.status == "ok" and not answer.cached:
            flag_cut_prompt(outcome, lambda: self._dialect.prompt_chars(body))
        return Enriched(ask.number, ask.values, outcome)

    def _unanswered(self, number: int, values: Record, status: Status, message: str,
                    error_class: ErrorClass | None = None, attempts: int = 0) -> Enriched:
        values.update(dict.fromkeys(self._check.column_names))
        return Enriched(number, values, RowOutcome(status, error_class, message, attempts=attempts))

    def _classify(self, exc: errors.EndpointError) -> ErrorClass:
        """The row's error class for ``exc``; a failure no later row could escape ends the sync instead."""
        if is_fatal(exc):
            raise fatal(exc) from exc
        return classify(exc)

    # Rows a provider batch answered (pipeline/batch_source.py) ------------------------

    async def finish_batch(self, ask: Ask, reply: dict[str, Any], batch_id: str) -> Enriched | None:
        """The row ``ask`` whose answer came from provider batch ``batch_id``: validated like any answer
        (a validation retry is a normal request), priced at the batch price."""
        spend = Spend()
        self._spend(spend, ask.body, reply, batch=True)
        done = await self._validated(ask, ask.body, _Answer(reply, None, 1, cached=False), spend)
        if done is not None:  # None: a spend guard refused its validation retry
            done.outcome.latency_ms, done.outcome.batch_id = None, batch_id  # hours in a queue: not a latency
        return done

    async def finish_shared(self, ask: Ask, reply: dict[str, Any], completion: Completion | None,
                            billed: Sequence[TokenUsage] = ()) -> Enriched | None:
        """The row ``ask`` answered inside a request it shared with other rows (:mod:`.input_groups`):
        ``reply`` is the row's own part, with its share of the usage (``billed``: of the attempts cut before
        it). ``completion`` is the shared request's, or None when the answer was bought earlier (the cache)
        or for an identical row of the same request."""
        spend = self._spent(ask.body, billed)
        if completion is None:
            return await self._validated(ask, ask.body, _Answer(reply, None, 0, cached=True), spend)
        self._spend(spend, ask.body, reply)
        own = Completion(reply, completion.latency_ms, None, completion.attempts)
        return await self._validated(ask, ask.body, _Answer(reply, own, completion.attempts, cached=False), spend)

    def batch_error(self, ask: Ask, error: errors.EndpointError, batch_id: str) -> Enriched:
        """The row ``ask`` whose request failed inside provider batch ``batch_id`` (nothing bought)."""
        done = self._unanswered(ask.number, ask.values, "error", self._redact(error.message), self._classify(error), 1)
        done.outcome.model, done.outcome.batch_id = model_name(ask.body.get("model")), batch_id
        done.outcome.input_truncated = ask.truncated
        return done


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
