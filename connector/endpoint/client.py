"""The endpoint client: one chat completion (plain or streamed), with retries; model listing.

HTTP statuses become :mod:`connector.errors` here, and the one retry policy lives
here, a plain loop over attempts: exponential backoff with full jitter, the
server's ``Retry-After`` (or ``retry-after-ms``) honoured as a floor, only for
errors marked retryable (408/409/429/5xx, connection errors, broken or incomplete
streams, and 2xx bodies that are not JSON, as proxies sometimes send).

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
import email.utils
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from connector import errors
from connector.callbacks import Notice, Sleep, no_notice
from connector.config.parts import ClientPart
from connector.dialects import Dialect, Prepared
from connector.dialects.openai_chat import Reply, error_message
from connector.endpoint.classify import is_quota, rejects_key
from connector.endpoint.deadlines import Deadlines
from connector.endpoint.limits import Limiter, SpendBudget, TokenEstimator, WaitCap
from connector.endpoint.sse import SSEEvent, SSEParser
from connector.endpoint.transport import Response, Transport, bounded, origin
from connector.jsonbytes import dumps


@dataclass(slots=True)
class Completion:
    """A normalised reply and how it went."""

    reply: Reply
    latency_ms: float
    ttft_ms: float | None
    attempts: int = 1
    headers: Mapping[str, str] | None = None


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait, from ``retry-after-ms`` or ``retry-after``.

    LiteLLM's proxy sends its own 429s (a model group over its ``rpm``) with no
    ``Retry-After`` but ``llm_provider-retry-after`` (the seconds until its window
    frees up), so that name counts too when the standard ones are absent.
    """
    millis = headers.get("retry-after-ms")
    if millis:
        seconds = _number(millis)
        if seconds is not None:
            return seconds / 1000
    value = headers.get("retry-after") or headers.get("llm_provider-retry-after")
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:  # an HTTP date; Python >= 3.10 raises (rather than returns None) on garbage
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _number(text: str) -> float | None:
    """A non-negative number of a header (negative is 0; ``1e400`` is infinite); None when not one."""
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else max(0.0, value)


def _answers_whole(headers: Mapping[str, str], first: bytes) -> bool:
    """A streamed request answered with one plain JSON body (some gateways and servers do)."""
    kind = headers.get("content-type", "").lower()
    if "event-stream" in kind:
        return False
    return "json" in kind or first.lstrip()[:1] == b"{"


async def _status_error(url: str, response: Response, describe: Callable[[bytes], str] = error_message
                        ) -> errors.HTTPStatusError:
    """The error of a non-2xx answer, from the first 4 KB of its body (the rest is never read)."""
    return http_error(url, response.status, await response.head(4096), response.headers, describe)


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
    text = body.decode("utf-8", "replace")
    meaning = {
        401: "API key rejected",
        403: "access forbidden (key lacks permission for this model or endpoint)",
        404: "not found",
        408: "request timeout",
        413: "request body too large for the server; shorten this row's input or raise the server's body limit",
        429: "rate limited",
    }.get(status) or ("API key rejected" if rejects_key(status, text) else  # a gateway's 400 (LiteLLM)
                      "server error" if status >= 500 else "request rejected")
    error = errors.HTTPStatusError(f"{meaning} ({status}) at {where}: {detail}", status=status,
                                   retry_after=retry_after_seconds(headers), body=text)
    if is_quota(error):
        error.retryable = False  # a 429 that means "out of credit" does not pass with waiting
    return error


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

    async def complete_once(self, body: dict[str, Any]) -> Completion:
        """One attempt, no retry; through the limiter and the spend budget when there are."""
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
        overloaded = clean = unsent = False
        retry_after: float | None = None
        why = ""
        headers: Mapping[str, str] | None = None
        actual: int | None = None
        reserved: int | None = None
        try:
            if budget is not None:
                reserved = budget.reserve(estimated)  # SpendLimitReached: nothing is sent
            completion = await self._send(prepared, payload)
            clean, headers = True, completion.headers
            usage = completion.reply.get("usage") or {}  # normalised: whole counts or None
            actual = usage.get("total_tokens")
            prompt, output = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if prompt is not None:
                self._estimator.observe(len(payload), prompt, output)
            return completion
        except errors.HTTPStatusError as exc:
            overloaded = exc.status in _OVERLOAD_STATUSES
            retry_after, why = exc.retry_after, _why(exc, prepared.url)
            raise
        except (errors.ReadTimeout, errors.ConnectTimeout):
            overloaded = True
            raise
        except errors.LocalResourcesExhausted:
            overloaded = unsent = True
            raise
        finally:
            if limiter is not None:
                limiter.after(ticket, overloaded=overloaded, clean=clean, headers=headers, retry_after=retry_after,
                              why=why)
                limiter.settle_tokens(estimated, actual)
            if budget is not None and reserved is not None:
                budget.settle(reserved, actual if clean else 0)
                budget.requests -= unsent  # nothing left this machine: not a request sent

    async def _send(self, prepared: Prepared, payload: bytes) -> Completion:
        """One attempt under the ``timeout`` deadline."""
        self.requests_sent += 1
        try:
            return await self._deadlines.run(self._attempt(prepared, payload))
        except asyncio.TimeoutError:
            raise self._deadline_passed(prepared.url) from None
        except errors.LocalResourcesExhausted:
            self.requests_sent -= 1  # nothing left this machine: not a request the spend guard counts
            raise

    def _deadline_passed(self, url: str) -> errors.ReadTimeout:
        return errors.ReadTimeout(f"{origin(url)} did not answer within {self._timeout:g} s "
                                  "(timeout: the deadline for the whole answer)")

    async def _attempt(self, prepared: Prepared, payload: bytes) -> Completion:
        dialect, url = self._dialect, prepared.url
        headers = await dialect.headers("POST", url, payload)
        started = time.perf_counter()
        async with self._transport.request("POST", url, headers, payload, self._timeout) as resp:
            if resp.status >= 300:
                raise await _status_error(url, resp, dialect.error_message)
            chunks = resp.iter_chunks()
            first = await anext(chunks, b"") if prepared.stream else b""
            if not prepared.stream or _answers_whole(resp.headers, first):
                raw = first + await resp.read(self._max_reply, already=len(first))
                try:
                    reply = dialect.normalise(dialect.parse_reply(raw))
                except _SHAPE_ERRORS as exc:
                    raise self._shape_error(exc) from exc
                return Completion(reply, (time.perf_counter() - started) * 1000, None, headers=resp.headers)
            reply, ttft = await self._assemble(first, chunks, started)
            return Completion(reply, (time.perf_counter() - started) * 1000, ttft, headers=resp.headers)

    async def _assemble(self, first: bytes, rest: AsyncIterator[bytes], started: float) -> tuple[Reply, float | None]:
        """A streamed reply from its SSE events, and the time to its first token."""
        parser, assembler = SSEParser(), self._dialect.stream_assembler()
        ttft: float | None = None

        def feed(events: Iterable[SSEEvent]) -> None:
            nonlocal ttft
            for event in events:
                if assembler.finished:  # after the end marker: not part of the answer
                    return
                if event.event == "error":  # any shape: the stream ends in an error, not an answer
                    raise errors.BadReply("the endpoint reported an error mid-stream: "
                                          f"{self._dialect.error_message(event.data)}")
                assembler.feed(event.data)
                if ttft is None and assembler.got_first_token:
                    ttft = (time.perf_counter() - started) * 1000

        try:
            feed(parser.feed(first))
            # Transport failures arrive as TransportError, not caught below; max_reply_bytes bounds the stream.
            async for chunk in bounded(rest, self._max_reply, len(first)):
                feed(parser.feed(chunk))
            feed(parser.close())
            return self._dialect.normalise(assembler.result()), ttft
        except _SHAPE_ERRORS as exc:
            raise self._shape_error(exc) from exc

    def _shape_error(self, exc: Exception) -> errors.BadReply:
        """A reply the dialect could not read (a field of an unexpected type): BadReply, never a crash."""
        return errors.BadReply(f"the reply does not have the {self._dialect.name} shape "
                               f"({type(exc).__name__}: {exc})", retryable=False)

    async def complete(self, body: dict[str, Any]) -> Completion:
        """One completion, retried on transient failures; the last error is raised. A request the endpoint
        refused for a reason the dialect can fix (OpenAI's "Use 'max_completion_tokens'", json_schema refused)
        is sent again, changed, with a LOG line saying so."""
        attempts = 0  # attempts that reached the endpoint
        starved = 0.0  # seconds waited for local resources
        adapted = 0  # each adaptation changes the dialect for good, so there are few: bounded all the same
        while True:
            try:
                completion = await self.complete_once(body)
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
        async with self._transport.request("GET", url, headers, None, self._timeout) as resp:
            if resp.status in (404, 405):
                return None
            if resp.status >= 300:
                raise await _status_error(url, resp, self._dialect.error_message)
            return await resp.read(self._max_reply)


def retry_delay(failed_attempts: int, exc: errors.EndpointError, waits: WaitCap, url: str) -> float:
    """The run's one backoff: exponential with full jitter (0.5 s doubling, at most 30 s), never shorter
    than the server's Retry-After, which the WaitCap announces or refuses (WaitTooLong)."""
    delay = random.uniform(0, min(30.0, 0.5 * 2 ** (failed_attempts - 1)))
    if isinstance(exc, errors.HTTPStatusError) and exc.retry_after is not None:
        delay = max(delay, waits.allow(exc.retry_after, _why(exc, url)))
    return delay


def _why(exc: errors.HTTPStatusError, url: str) -> str:
    """What a Retry-After wait is for, in a notice."""
    return f"Retry-After on a {exc.status} from {origin(url)}"


# What reading a reply of an unexpected shape raises (JSON errors are BadReply already).
_SHAPE_ERRORS = (TypeError, AttributeError, KeyError, IndexError, ValueError)

# Answers that mean "too much, slow down": they shrink the concurrency cap.
_OVERLOAD_STATUSES = frozenset({429, 503, 529})
