"""The run's retry policy for the batch protocols' calls, and the one rule for a create whose answer is unclear.

Every call is retried as a normal request is (``max_retries`` times, the client's backoff with
``Retry-After`` as a floor and ``max_wait_seconds`` as a cap: :func:`~connector.endpoint.retry_policy.
retry_delay`) when what it does is safe to repeat: a poll, a list, a download, a cancel, and an
upload (a second copy of an input file costs nothing and nothing refers to the first).

A create is not safe to repeat blindly: a second batch of the same rows is every answer bought
twice. So a failed create is read for what it proves (:func:`refused`):

- refused: a 4xx answer other than 408 (a 429 rate limit, a 400 on the input, a 401 on the key)
  or no connection at all (refused, connect timeout, TLS): nothing was created. A retryable
  refusal (429, 409, 425) is sent again after the wait; another is raised.
- unknown: a 5xx, a 408, a cut connection, a read timeout, a 2xx without an id. The batch may
  exist: it is looked for (``BatchAPI.find``) after the wait, and created again only when the
  provider's list shows it is not there. When the retries run out first,
  :class:`~connector.errors.BatchUnconfirmed` ends the sync and the STATE keeps the batch as
  unconfirmed, so the next sync looks for it again before creating another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TypeVar

from connector import errors
from connector.callbacks import Sleep
from connector.endpoint.batch.protocol_base import BatchAPI, BatchRequest, Submission
from connector.endpoint.limits import WaitCap
from connector.endpoint.retry_policy import retry_delay

T = TypeVar("T")
_NEVER_SENT = (errors.ConnectFailed, errors.ConnectTimeout, errors.TLSFailed, errors.LocalResourcesExhausted)


def refused(exc: errors.EndpointError) -> bool:
    """The failure proves the provider created nothing: a 4xx refusal (not 408) or a request that never left."""
    if isinstance(exc, errors.HTTPStatusError):
        return 400 <= exc.status < 500 and exc.status != 408
    return isinstance(exc, _NEVER_SENT)


@dataclass
class BatchRetry:
    """The run's retry policy (``max_retries``, backoff, ``Retry-After`` within ``max_wait_seconds``)."""

    max_retries: int
    waits: WaitCap
    url: str  # named in the notice of a long Retry-After wait
    sleep: Sleep = asyncio.sleep

    async def wait(self, failed: int, exc: errors.EndpointError) -> None:
        """Sleep before attempt ``failed + 1``; WaitTooLong when the server asks for more than the cap."""
        await self.sleep(retry_delay(failed, exc, self.waits, self.url))

    async def call(self, call: Callable[[], Awaitable[T]]) -> T:
        """A call that is safe to repeat, retried while it fails retryably; the last error raised."""
        failed = 0
        while True:
            try:
                return await call()
            except errors.EndpointError as exc:
                failed += 1
                if not exc.retryable or failed > self.max_retries:
                    raise
                await self.wait(failed, exc)

    async def create(self, api: BatchAPI, requests: Sequence[BatchRequest], submission: Submission,
                     exclude: Collection[str] = ()) -> tuple[str, bool]:
        """Create one batch by the rule of the module docstring: its id, and whether it was found (created by an
        attempt whose answer was unclear) rather than created by the answer seen. Raises the refusal (nothing
        was created) or :class:`~connector.errors.BatchUnconfirmed` (it may exist)."""
        failed, unclear = 0, False
        while True:
            try:
                if unclear:
                    found = await api.find(submission, exclude)
                    if found is not None:
                        return found, True
                    unclear = False  # not at the provider: creating again is safe
                return await api.create(requests, submission), False
            except errors.EndpointError as exc:
                failed += 1
                unclear = unclear or not refused(exc)
                if not unclear and (not exc.retryable or failed > self.max_retries):
                    raise
                if unclear and failed > self.max_retries:
                    raise _unconfirmed(submission, failed, exc) from exc
                try:
                    await self.wait(failed, exc)
                except errors.WaitTooLong as long:
                    if unclear:
                        raise _unconfirmed(submission, failed, exc, long.message) from exc
                    raise


def _unconfirmed(submission: Submission, failed: int, exc: errors.EndpointError,
                 why: str = "") -> errors.BatchUnconfirmed:
    return errors.BatchUnconfirmed(
        f"creating a batch of {submission.size} requests got no clear answer ({exc.message}), and after {failed} "
        f"attempts the provider's batch list has not shown it{f' ({why})' if why else ''}. It may exist: the state "
        "keeps it as unconfirmed, and the next sync looks for it again before creating another (nothing is bought "
        "twice). Run again later")
