"""The retry policy's decisions, each its own small function: what a non-2xx answer means
(:func:`http_error`), how long the server asks us to wait (:func:`retry_after_seconds`), and the
backoff before the next attempt (:func:`retry_delay`). The loop over attempts that applies them is
:meth:`connector.endpoint.client.EndpointClient.complete`; the batch APIs use the same functions
(:mod:`connector.endpoint.batch.retry`).
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Mapping

from connector import errors
from connector.dialects.openai_chat import error_message
from connector.endpoint.classify import is_quota, rejects_key
from connector.endpoint.limits import WaitCap
from connector.endpoint.transport import Response, origin

# Answers that mean "too much, slow down": they shrink the concurrency cap.
OVERLOAD_STATUSES = frozenset({429, 503, 529})


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


async def status_error(url: str, response: Response, describe: Callable[[bytes], str] = error_message
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


def retry_delay(failed_attempts: int, exc: errors.EndpointError, waits: WaitCap, url: str) -> float:
    """The run's one backoff: exponential with full jitter (0.5 s doubling, at most 30 s), never shorter
    than the server's Retry-After, which the WaitCap announces or refuses (WaitTooLong)."""
    delay = random.uniform(0, min(30.0, 0.5 * 2 ** (failed_attempts - 1)))
    if isinstance(exc, errors.HTTPStatusError) and exc.retry_after is not None:
        delay = max(delay, waits.allow(exc.retry_after, why(exc, url)))
    return delay


def why(exc: errors.HTTPStatusError, url: str) -> str:
    """What a Retry-After wait is for, in a notice."""
    return f"Retry-After on a {exc.status} from {origin(url)}"
