"""The endpoint client: one chat completion (plain or streamed), with retries; model listing.

HTTP statuses become :mod:`connector.errors` here, and the one retry policy lives
here: tenacity, exponential backoff with full jitter, the server's
``Retry-After`` (or ``retry-after-ms``) honoured as a floor, only for errors
marked retryable (408/409/429/5xx, connection errors, broken or incomplete
streams, and 2xx bodies that are not a usable reply, as proxies sometimes send).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from connector import errors
from connector.config.model import SourceConfig
from connector.dialects import Dialect, Prepared, dialect_for
from connector.dialects.openai_chat import Reply, error_message
from connector.endpoint.classify import is_quota
from connector.endpoint.limits import Limiter, SpendBudget, TokenEstimator
from connector.endpoint.sse import SSEParser
from connector.endpoint.transport import Response, Transport
from connector.jsonbytes import dumps

Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class Completion:
    """A normalised reply and how it went."""

    reply: Reply
    latency_ms: float
    ttft_ms: float | None
    attempts: int = 1
    headers: Mapping[str, str] | None = None


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds the server asks us to wait, from ``retry-after-ms`` or ``retry-after``."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # an HTTP date; Python >= 3.10 raises (rather than returns None) on garbage
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def _status_error(
    url: str, response: Response, describe: Callable[[bytes], str] = error_message
) -> errors.HTTPStatusError:
    body = (await response.read())[:4096]
    return http_error(url, response.status, body, response.headers, describe)


def http_error(
    where: str, status: int, body: bytes, headers: Mapping[str, str], describe: Callable[[bytes], str] = error_message
) -> errors.HTTPStatusError:
    """The error for a non-2xx answer (or a batch item's): what the status means, where, the endpoint's words."""
    detail = describe(body) if body else "(empty body)"
    if 300 <= status < 400:
        target = headers.get("location", "another address")
        return errors.HTTPStatusError(
            f"the endpoint redirected ({status}) {where} to {target}; set url to the final address "
            "(redirects are not followed, so the key is never sent to another host)",
            status=status,
        )
    meaning = {
        401: "API key rejected",
        403: "access forbidden (key lacks permission for this model or endpoint)",
        404: "not found",
        408: "request timeout",
        413: "request body too large for the server; shorten this row's input or raise the server's body limit",
        429: "rate limited",
    }.get(status, "server error" if status >= 500 else "request rejected")
    error = errors.HTTPStatusError(
        f"{meaning} ({status}) at {where}: {detail}",
        status=status,
        retry_after=retry_after_seconds(headers),
        body=body.decode("utf-8", "replace"),
    )
    if is_quota(error):
        error.retryable = False  # a 429 that means "out of credit" does not pass with waiting
    return error


class EndpointClient:
    """Talks to one endpoint through an injected transport; its dialect (the configured API shape)
    gives the URL, headers, body parsing and stream assembly of each request."""

    def __init__(
        self,
        config: SourceConfig,
        transport: Transport,
        sleep: Sleep | None = None,
        limiter: Limiter | None = None,
        dialect: Dialect | None = None,
        budget: SpendBudget | None = None,
    ) -> None:
        import asyncio

        self._dialect = dialect if dialect is not None else dialect_for(config)
        self._url = self._dialect.endpoint_url
        self._models_url = self._dialect.models_url
        self._timeout = float(config.timeout)
        self._max_attempts = config.max_retries + 1
        self._transport = transport
        self._sleep: Sleep = sleep or asyncio.sleep
        self._limiter = limiter
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

    async def complete_once(self, body: dict[str, Any]) -> Completion:
        """One attempt, no retry; through the limiter when there is one."""
        prepared = self._dialect.prepare(body)
        payload = dumps(prepared.body)
        limiter, budget = self._limiter, self._budget
        if limiter is None and budget is None:
            return await self._send(prepared, payload)
        estimated = 0
        if (limiter is not None and limiter.tpm is not None) or (budget is not None and budget.needs_estimates):
            max_out = self._dialect.max_output_tokens(body)
            estimated = self._estimator.prompt_tokens(len(payload)) + self._estimator.output_tokens(max_out)
        ticket = await limiter.before(estimated) if limiter is not None else 0
        overloaded = clean = False
        retry_after: float | None = None
        headers: Any = None
        actual: int | None = None
        reserved: int | None = None
        try:
            if budget is not None:
                reserved = budget.reserve(estimated)  # SpendLimitReached: nothing is sent
            completion = await self._send(prepared, payload)
            clean, headers = True, completion.headers
            usage = completion.reply.get("usage")
            usage = usage if isinstance(usage, dict) else {}
            total = usage.get("total_tokens")
            actual = total if isinstance(total, int) and not isinstance(total, bool) else None
            prompt, output = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if isinstance(prompt, int) and (output is None or isinstance(output, int)):
                self._estimator.observe(len(payload), prompt, output)
            return completion
        except errors.HTTPStatusError as exc:
            overloaded = exc.status in _OVERLOAD_STATUSES
            retry_after = exc.retry_after
            raise
        except (errors.ReadTimeout, errors.ConnectTimeout):
            overloaded = True
            raise
        finally:
            if limiter is not None:
                limiter.after(ticket, overloaded=overloaded, clean=clean, headers=headers, retry_after=retry_after)
                limiter.settle_tokens(estimated, actual)
            if budget is not None and reserved is not None:
                budget.settle(reserved, actual if clean else 0)

    async def _send(self, prepared: Prepared, payload: bytes) -> Completion:
        self.requests_sent += 1
        dialect, url = self._dialect, prepared.url
        headers = await dialect.headers("POST", url, payload)
        started = time.perf_counter()
        async with self._transport.request("POST", url, headers, payload, self._timeout) as resp:
            if resp.status >= 300:
                raise await _status_error(url, resp, dialect.error_message)
            if not prepared.stream:
                reply = dialect.parse_reply(await resp.read())
                return Completion(reply, (time.perf_counter() - started) * 1000, None, headers=resp.headers)
            parser, assembler = SSEParser(), dialect.stream_assembler()
            ttft: float | None = None
            async for chunk in resp.iter_chunks():
                for event in parser.feed(chunk):
                    assembler.feed(event.data)
                    if ttft is None and assembler.got_first_token:
                        ttft = (time.perf_counter() - started) * 1000
            for event in parser.close():
                assembler.feed(event.data)
            elapsed = (time.perf_counter() - started) * 1000
            return Completion(assembler.result(), elapsed, ttft, headers=resp.headers)

    async def complete(self, body: dict[str, Any]) -> Completion:
        """One completion, retried on transient failures; the last error is raised."""
        # The first attempt runs outside tenacity: most rows succeed at once, and
        # setting up a retry loop costs more CPU than the rest of the row (measured
        # with cProfile at 256 in flight: its per-attempt introspection was ~7%).
        try:
            return await self.complete_once(body)
        except errors.EndpointError as exc:
            if not (exc.retryable and self._max_attempts > 1):
                raise
            await self._sleep(_retry_delay(1, exc))
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts - 1),
            wait=_wait_with_retry_after,
            retry=retry_if_exception(_is_retryable),
            sleep=self._sleep,
            reraise=True,
        )
        attempts = 1
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number + 1
                    completion = await self.complete_once(body)
        except errors.EndpointError as exc:
            exc.attempts = attempts
            raise
        completion.attempts = attempts
        return completion

    async def list_models(self) -> list[str] | None:
        """Model ids from ``GET /models`` (or the shape's equivalent); None when there is none."""
        url = self._models_url
        if url is None:
            return None
        headers = await self._dialect.headers("GET", url, None)
        async with self._transport.request("GET", url, headers, None, self._timeout) as resp:
            if resp.status in (404, 405):
                return None
            if resp.status >= 300:
                raise await _status_error(url, resp, self._dialect.error_message)
            body = await resp.read()
        try:
            return self._dialect.parse_models(body)
        except (ValueError, TypeError, AttributeError):
            raise errors.BadReply(f"GET {url} did not return a model list") from None


# Answers that mean "too much, slow down": they shrink the concurrency cap.
_OVERLOAD_STATUSES = frozenset({429, 503, 529})


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, errors.EndpointError) and exc.retryable


def _retry_delay(failed_attempts: int, exc: BaseException | None) -> float:
    """Exponential backoff with full jitter (0.5 s doubling, at most 30 s), never shorter
    than the server's Retry-After (capped at 5 minutes)."""
    delay = random.uniform(0, min(30.0, 0.5 * 2 ** (failed_attempts - 1)))
    if isinstance(exc, errors.HTTPStatusError) and exc.retry_after is not None:
        delay = max(delay, min(exc.retry_after, 300.0))
    return delay


def _wait_with_retry_after(state: RetryCallState) -> float:
    """tenacity's wait for the retry loop, which starts after the first failed attempt."""
    exc = state.outcome.exception() if state.outcome else None
    return _retry_delay(state.attempt_number + 1, exc)
