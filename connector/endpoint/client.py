"""The endpoint client: one chat completion (plain or streamed), with retries; model listing.

The one retry policy lives here, a plain loop over attempts (:meth:`EndpointClient.complete`)
whose decisions are :mod:`connector.endpoint.retry_policy`'s small functions (what an HTTP status
means, ``Retry-After``, the backoff): exponential backoff with full jitter, the server's
``Retry-After`` (or ``retry-after-ms``) honoured as a floor, only for errors marked retryable
(408/409/429/5xx, connection errors, broken or incomplete streams, and 2xx bodies that are not
JSON, as proxies sometimes send). A streamed reply is assembled by :mod:`connector.endpoint.streaming`.

An attempt that ends without an answer after the endpoint began one (cut by the deadline, a
reset, a broken stream) was still billed: its tokens, as the stream reported them or estimated
(:meth:`~connector.endpoint.streaming.Reception.billed`), count against the spend budget and are
told to the caller of :meth:`EndpointClient.complete`, so the row's totals include them.

Three bounds hold whatever the server does:

- ``timeout`` is a deadline for each attempt as a whole: connecting, sending and
  reading every byte of the answer, streamed or not. A stream kept alive with
  comments, or a body trickled one byte at a time, ends at the deadline as
  ``ReadTimeout`` (error class ``timeout``) and is retried as such. ``check``'s
  probes go through the same attempt.
- a wait the server asks for passes the limiter's
  :class:`~connector.endpoint.limits.WaitCap`: announced, and
  :class:`~connector.errors.WaitTooLong` beyond ``max_wait_seconds``.
- a local resource error (EMFILE, ENOBUFS) is backpressure: the request never left,
  so it is retried after a short pause without counting as an attempt, for at most
  ``max_wait_seconds`` in all.

Every reply, whichever dialect read it, is normalised by the dialect's ``normalise``
(:func:`connector.dialects.replies.normalise` for the shapes that answer text) before anyone
else sees it.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connector import errors
from connector.callbacks import Notice, Sleep, no_notice
from connector.config.parts import ClientPart
from connector.dialects import Dialect, Prepared
from connector.dialects.openai_chat import Reply
from connector.dialects.usage import TokenUsage
from connector.endpoint.deadlines import Deadlines
from connector.endpoint.limits import SpendBudget, TokenEstimator, WaitCap
from connector.endpoint.pacing import Estimate, Limiter
from connector.endpoint.retry_policy import OVERLOAD_STATUSES, retry_delay, status_error, why
from connector.endpoint.streaming import Reception, answers_whole, assemble, read_whole, whole
from connector.endpoint.transport import Transport, origin
from connector.jsonbytes import dumps

# Told the tokens of each attempt that ended without an answer but was billed (see endpoint/streaming.py).
Billed = Callable[[TokenUsage], None]


@dataclass(slots=True)
class Completion:
    """A normalised reply and how it went."""

    reply: Reply
    latency_ms: float
    ttft_ms: float | None
    attempts: int = 1
    headers: Mapping[str, str] | None = None


_NO_ESTIMATE = Estimate()  # no budget needs the tokens: none estimated
_MAX_ADAPTATIONS = 3  # max_completion_tokens, then two structured-output modes


class EndpointClient:
    """Talks to one endpoint through an injected transport; its dialect (the configured API shape)
    gives the URL, headers, body parsing and stream assembly of each request.

    Waits the endpoint asks for are judged by the limiter's WaitCap, or without a limiter
    by one of the client's own with the config's ``max_wait_seconds``.
    """

    def __init__(
        self,
        settings: ClientPart,
        transport: Transport,
        dialect: Dialect,
        *,
        sleep: Sleep | None = None,
        limiter: Limiter | None = None,
        budget: SpendBudget | None = None,
        notice: Notice | None = None,
    ) -> None:
        self._dialect = dialect
        self.notice: Notice = notice or no_notice  # says what the run changed on its own (a LOG line)
        self._url = self._dialect.endpoint_url
        self._models_url = self._dialect.models_url
        self._timeout = settings.timeout
        self._max_reply = settings.max_reply_bytes
        self._deadlines = Deadlines(self._timeout)  # the deadline of every attempt, one watchdog for all
        self._max_attempts = settings.max_retries + 1
        self._transport = transport
        self._sleep: Sleep = sleep or asyncio.sleep
        self._limiter = limiter
        self._waits = limiter.waits if limiter is not None else WaitCap(settings.max_wait_seconds)
        self._budget = budget
        # Token estimates for the rate and spend budgets, corrected from every reply's usage.
        self._estimator = limiter.estimator if limiter is not None else TokenEstimator()
        self.requests_sent = 0  # attempts, retries included

    @property
    def url(self) -> str:
        return self._url

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    @property
    def budget(self) -> SpendBudget | None:
        """The spend guards this client's requests are counted against, if any."""
        return self._budget

    async def complete_once(self, body: dict[str, Any], billed: Billed | None = None, media: int = 0) -> Completion:
        """One attempt, no retry; through the limiter and the spend budget when there are. An attempt that
        ends without an answer but was billed (see :meth:`Reception.billed`) has its tokens told to
        ``billed`` and counted against the budgets."""
        prepared = self._dialect.prepare(body)
        payload = dumps(prepared.body)
        limiter, budget = self._limiter, self._budget
        max_out = self._dialect.max_output_tokens(body)
        estimate = self._estimate(len(payload), max_out)
        ticket = limiter.ready() if limiter is not None else 0
        if ticket is None:  # a budget or a pause to wait for, or no slot free
            ticket = await self._wait_for_slot(estimate)
        overloaded = clean = unsent = False
        retry_after: float | None = None
        reason = ""
        headers: Mapping[str, str] | None = None
        actual = prompt = output = None
        reserved: int | None = None
        reception = Reception()
        try:
            if budget is not None:
                reserved = budget.reserve(estimate.total)  # SpendLimitReached: nothing is sent
            completion = await self._send(prepared, payload, reception)
            clean, headers = True, completion.headers
            usage = completion.reply.get("usage") or {}  # normalised: whole counts or None
            actual = usage.get("total_tokens")
            prompt, output = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if prompt is not None:
                self._estimator.observe(len(payload), prompt, output)
            return completion
        except errors.EndpointError as exc:
            if isinstance(exc, errors.HTTPStatusError):
                overloaded = exc.status in OVERLOAD_STATUSES
                retry_after, reason = exc.retry_after, why(exc, prepared.url)
            overloaded = overloaded or isinstance(exc, (errors.ReadTimeout, errors.ConnectTimeout,
                                                        errors.LocalResourcesExhausted))
            unsent = isinstance(exc, errors.LocalResourcesExhausted)
            cut = self._cut(exc, reception, body, max_out, billed, media)
            if cut is not None:
                prompt, output = cut.prompt, cut.completion
                actual = (prompt or 0) + (output or 0)
            raise
        finally:
            if limiter is not None:
                limiter.after(ticket, overloaded=overloaded, clean=clean, headers=headers, retry_after=retry_after,
                              why=reason)
                limiter.settle(estimate, prompt, output)
            if budget is not None and reserved is not None:
                budget.settle(reserved, actual if clean or actual is not None else 0)
                budget.requests -= unsent  # nothing left this machine: not a request sent

    def _estimate(self, payload_bytes: int, max_out: int | None) -> Estimate:
        """The request's tokens, estimated only when a budget needs them."""
        limiter, budget = self._limiter, self._budget
        if (limiter is not None and limiter.needs_estimates) or (budget is not None and budget.needs_estimates):
            return Estimate(self._estimator.prompt_tokens(payload_bytes), self._estimator.output_tokens(max_out))
        return _NO_ESTIMATE

    async def _wait_for_slot(self, estimate: Estimate) -> int:
        assert self._limiter is not None, "only with a limiter"
        return await self._limiter.before(estimate)

    def _cut(self, exc: errors.EndpointError, reception: Reception, body: dict[str, Any], max_out: int | None,
             billed: Billed | None, media_tokens: int) -> TokenUsage | None:
        """The tokens an attempt that failed with ``exc`` was billed for (told to ``billed``), or None. Its
        prompt, when estimated, as the dry run estimates it: the text, and ``media_tokens`` for its media."""
        estimator = self._estimator
        prompt = estimator.prompt_tokens(self._dialect.prompt_chars(body)) + media_tokens
        cut = reception.billed(exc, self._dialect, prompt, estimator.output_tokens(max_out), estimator)
        if cut is None:
            return None
        if billed is not None:
            billed(cut)
        return cut

    async def _send(self, prepared: Prepared, payload: bytes, reception: Reception) -> Completion:
        """One attempt under the ``timeout`` deadline; ``reception`` follows what it received."""
        self.requests_sent += 1
        try:
            if sys.version_info >= (3, 11):  # the deadline kept in this frame: no coroutine more per attempt
                with self._deadlines.watch():
                    return await self._attempt(prepared, payload, reception)
            return await self._deadlines.run(self._attempt(prepared, payload, reception))
        except asyncio.TimeoutError:
            reply = whole(self._dialect, reception)  # complete, but its end never came: the answer all the same
            if reply is None:
                raise self._deadline_passed(prepared.url) from None
            return Completion(reply, (time.perf_counter() - reception.started) * 1000, reception.ttft,
                              headers=reception.headers)
        except errors.LocalResourcesExhausted:
            self.requests_sent -= 1  # nothing left this machine: not a request the spend guard counts
            raise

    def _deadline_passed(self, url: str) -> errors.ReadTimeout:
        return errors.ReadTimeout(f"{origin(url)} did not answer within {self._timeout:g} s "
                                  "(timeout: the deadline for the whole answer)")

    async def _attempt(self, prepared: Prepared, payload: bytes, reception: Reception) -> Completion:
        dialect, url = self._dialect, prepared.url
        headers = await dialect.headers("POST", url, payload)
        started = reception.started = time.perf_counter()
        async with self._transport.request("POST", url, headers, payload, self._timeout, watched=True) as resp:
            if resp.status >= 300:
                raise await status_error(url, resp, dialect.error_message)
            reception.answered, reception.headers = True, resp.headers
            chunks = resp.iter_chunks()
            first = await anext(chunks, b"") if prepared.stream else b""
            if not prepared.stream or answers_whole(resp.headers, first):
                reply = await read_whole(dialect, reception, resp, first, self._max_reply)
                return Completion(reply, (time.perf_counter() - started) * 1000, None, headers=resp.headers)
            reply, ttft = await assemble(dialect, reception, first, chunks, started, self._max_reply)
            return Completion(reply, (time.perf_counter() - started) * 1000, ttft, headers=resp.headers)

    async def complete(self, body: dict[str, Any], billed: Billed | None = None, media_tokens: int = 0
                       ) -> Completion:
        """One completion, retried on transient failures; the last error is raised. A request the endpoint
        refused for a reason the dialect can fix (OpenAI's "Use 'max_completion_tokens'", json_schema refused)
        is sent again, changed, with a LOG line saying so. ``billed`` hears the tokens of every attempt that
        ended without an answer but was billed (a stream cut by the deadline), so the row can count them;
        ``media_tokens``: the estimate of the body's images and documents (their base64 is not text)."""
        attempts = 0  # attempts that reached the endpoint
        starved = 0.0  # seconds waited for local resources
        adapted = 0  # each adaptation changes the dialect for good, so there are few: bounded all the same
        while True:
            try:
                completion = await self.complete_once(body, billed, media_tokens)
            except errors.LocalResourcesExhausted as exc:
                starved += await self._wait_for_resources(starved, exc)
                continue
            except errors.EndpointError as exc:
                attempts += 1
                change = self._adapt(exc) if adapted < _MAX_ADAPTATIONS else None
                if change is not None:
                    adapted += 1
                    self.notice("WARN", f"{change} (the request was sent again; {exc.message})")
                    continue
                if not exc.retryable or attempts >= self._max_attempts:
                    exc.attempts = attempts
                    raise
                await self._sleep(self._retry_delay(attempts, exc))
                continue
            completion.attempts = attempts + 1
            return completion

    def _adapt(self, exc: errors.EndpointError) -> str | None:
        if not isinstance(exc, errors.HTTPStatusError):
            return None
        return self._dialect.adapt(exc.status, f"{exc.message} {exc.body}")

    def _retry_delay(self, failed_attempts: int, exc: errors.EndpointError) -> float:
        return retry_delay(failed_attempts, exc, self._waits, self._url)

    async def _wait_for_resources(self, starved: float, exc: errors.LocalResourcesExhausted) -> float:
        """Sleep a little while local resources free up (the limiter meanwhile halved the requests
        in flight); WaitTooLong once that took longer than ``max_wait_seconds``."""
        delay = random.uniform(0.05, 0.25) * (1.0 + min(starved, 7.0))  # longer as the shortage lasts
        if starved + delay > self._waits.max_seconds:
            raise errors.WaitTooLong(
                f"{exc.message}, and it has not recovered in {starved:.0f} s (max_wait_seconds "
                f"{self._waits.max_seconds:g}): lower concurrency or raise the open-files limit (ulimit -n), "
                "then run again with the last state", seconds=starved) from exc
        await self._sleep(delay)
        return delay

    async def list_models(self) -> list[str] | None:
        """Model ids from ``GET /models`` (or the shape's equivalent); None when there is none."""
        url = self._models_url
        if url is None:
            return None
        try:
            body = await self._deadlines.run(self._get(url))
        except asyncio.TimeoutError:
            raise self._deadline_passed(url) from None
        if body is None:
            return None
        try:
            return self._dialect.parse_models(body)
        except (ValueError, TypeError, AttributeError):
            raise errors.BadReply(f"GET {url} did not return a model list") from None

    async def _get(self, url: str) -> bytes | None:
        headers = await self._dialect.headers("GET", url, None)
        async with self._transport.request("GET", url, headers, None, self._timeout, watched=True) as resp:
            if resp.status in (404, 405):
                return None
            if resp.status >= 300:
                raise await status_error(url, resp, self._dialect.error_message)
            return await resp.read(self._max_reply)
