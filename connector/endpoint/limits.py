"""Rate limits and adaptive concurrency: how fast the connector may talk to the endpoint.

Three mechanisms, all in front of each HTTP attempt (retries included), all
driven by an injectable clock and sleep so tests never wait for real:

- :class:`ConcurrencyGate`: a cap on requests in flight that adapts, AIMD-style:
  +1 after a cap's worth of clean answers, halved on overload (429, 503, 529,
  timeouts), within configured bounds. Like TCP's once-per-round-trip rule, only
  a request *sent after* the last decrease can cause the next one, so a burst of
  429s for requests already in flight halves the cap once, not once per reply.
  A server's ``Retry-After`` pauses *every* new request until it has passed, so
  workers do not stampede back together.
- :class:`TokenBucket`: a per-minute budget (requests, tokens) paced at 99 % of it.
  A request's tokens are estimated before sending (:class:`TokenEstimator`) and
  corrected from the reply's ``usage`` afterwards.

:mod:`connector.endpoint.pacing`'s ``Limiter`` puts them in front of each attempt, with
the budgets the endpoint's rate-limit headers announce (:mod:`connector.endpoint.rate_headers`;
an exhausted one there pauses the gate until its reset).

Every wait the *endpoint* asks for (``Retry-After``, an exhausted budget) passes
:class:`WaitCap`: announced when it is a second or more, and refused with
:class:`~connector.errors.WaitTooLong` beyond ``max_wait_seconds``, which ends
the sync resumably instead of holding it for an hour or forever.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque

from connector.callbacks import Clock, Notice, Sleep, no_notice
from connector.errors import WaitTooLong


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


class WaitCap:
    """The one rule for waits the endpoint asks for: at most ``max_seconds``, and said out loud.

    :meth:`allow` returns the wait, after a WARN notice naming what is waited for and until
    when (once per pause: many requests meeting the same pause announce it once), or raises
    :class:`~connector.errors.WaitTooLong` when the wait is longer than the cap (an infinite
    ``Retry-After: 1e400`` included). ``wall`` is the clock "until when" is told in.
    """

    ANNOUNCE_FROM = 1.0  # shorter waits are routine backoff, not news

    def __init__(self, max_seconds: float = 300.0, notice: Notice = no_notice, wall: Clock = time.time) -> None:
        self.max_seconds = max_seconds
        self._notice, self._wall = notice, wall
        self._announced_until = 0.0

    def allow(self, seconds: float, why: str) -> float:
        """``seconds`` to wait for ``why`` (e.g. "Retry-After on a 429"); WaitTooLong beyond the cap."""
        if not seconds > 0:  # also NaN
            return 0.0
        now = self._wall()
        if seconds > self.max_seconds:
            if math.isinf(seconds):
                raise WaitTooLong(
                    f"the endpoint asked to wait without end ({why}), longer than max_wait_seconds "
                    f"({self.max_seconds:g} s): the sync stops here. Run it again later with the last state; "
                    "rows already emitted are not redone and answers already paid for come from the answer cache.",
                    seconds=seconds)
            until = now + seconds
            raise WaitTooLong(
                f"the endpoint asked to wait {seconds:,.0f} s ({why}), until {_utc(until)}, longer than "
                f"max_wait_seconds ({self.max_seconds:g} s): the sync stops here. Run it again after "
                f"{_utc(until)} with the last state; rows already emitted are not redone and answers already "
                "paid for come from the answer cache.",
                seconds=seconds, until=until)
        until = now + seconds
        if seconds >= self.ANNOUNCE_FROM and until > self._announced_until + self.ANNOUNCE_FROM:
            self._announced_until = until
            self._notice("WARN", f"waiting {seconds:,.1f} s, until {_utc(until)}: {why} "
                                 f"(max_wait_seconds {self.max_seconds:g})")
        return seconds


class ConcurrencyGate:
    """An adjustable semaphore with AIMD adaptation and a shared pause."""

    def __init__(
        self,
        maximum: int,
        minimum: int = 1,
        initial: int | None = None,
        adaptive: bool = True,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        waits: WaitCap | None = None,
    ) -> None:
        self.maximum = max(1, maximum)
        self.minimum = max(1, min(minimum, self.maximum))
        self.limit = min(self.maximum, max(self.minimum, initial or self.maximum))
        self.adaptive = adaptive
        self.in_use = 0
        self.peak_in_use = 0
        self.decreases = 0
        self._clock, self._sleep = clock, sleep
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._clean = 0  # clean answers since the last change
        self._epoch = 0  # bumped by each decrease; requests carry the epoch they were sent in
        self._paused_until = 0.0
        self._pause_reason = "a pause the endpoint asked for"
        self.waits = waits or WaitCap()

    # Pausing ------------------------------------------------------------------

    def pause(self, seconds: float, why: str = "a pause the endpoint asked for") -> None:
        """No new request starts for ``seconds`` (the longest pause asked for wins).

        The pause is judged by :class:`WaitCap` when a request meets it, in :meth:`acquire`:
        an answer that brought the news is still delivered.
        """
        until = self._clock() + seconds
        if until > self._paused_until:
            self._paused_until, self._pause_reason = until, why

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    # Slots --------------------------------------------------------------------

    def try_acquire(self) -> int | None:
        """A slot at once, as :meth:`acquire` would give it without waiting (none paused, a slot free, nobody
        waiting before): its ticket; None when it would wait. Nearly every request: no coroutine for it."""
        if self.in_use < self.limit and not self._waiters and self._paused_until - self._clock() <= 0:
            self._take()
            return self._epoch
        return None

    async def acquire(self) -> int:
        """Wait for a slot; returns the ticket to hand back to :meth:`release`."""
        while (delay := self.paused_for) > 0:
            await self._sleep(self.waits.allow(delay, self._pause_reason))
        if self.in_use < self.limit and not self._waiters:
            self._take()
            return self._epoch
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._give_back()  # granted just as we were cancelled: pass it on
            raise
        return self._epoch

    def release(self, ticket: int = -1, overloaded: bool = False, clean: bool = False) -> None:
        """Free a slot, and adapt the cap to how the request went."""
        self._give_back()
        if not self.adaptive:
            return
        if overloaded:
            if ticket >= self._epoch:  # sent after the last decrease
                self.limit = max(self.minimum, self.limit // 2)
                self.decreases += 1
                self._epoch += 1
            self._clean = 0
        elif clean:
            self._clean += 1
            if self._clean >= self.limit and self.limit < self.maximum:
                self.limit += 1
                self._clean = 0
                self._wake()

    def _take(self) -> None:
        self.in_use += 1
        self.peak_in_use = max(self.peak_in_use, self.in_use)

    def _give_back(self) -> None:
        self.in_use -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_use < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._take()
                waiter.set_result(None)


class TokenBucket:
    """A per-minute budget that holds over *any* 60-second window; FIFO for waiters.

    A plain bucket holding a minute's budget lets a sliding minute see twice the
    budget (a full burst, then a minute of refill). Here the burst is a hundredth of
    the budget and the refill rate the other 99 hundredths per minute, so
    ``burst + rate * 60 == budget``: no 60-second window ever spends more (but for
    the overrun of its last request, see :meth:`take`), and a long run holds 99 %
    of the budget. A provider that counts with a bucket of a whole minute's budget
    (OpenAI, Anthropic) therefore never refuses a request for the rate.
    """

    BURST_FRACTION = 0.01

    def __init__(self, per_minute: float, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be > 0")
        self.per_minute = per_minute
        self.capacity = max(1.0, per_minute * self.BURST_FRACTION)
        self.rate = max(per_minute - self.capacity, 1.0) / 60.0
        self.tokens = self._ceiling = self.capacity  # the ceiling: the burst, or a credit's start
        self._clock, self._sleep = clock, sleep
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        if self.tokens < self.capacity:  # a credit above the burst (see credit) is spent, never refilled
            self.tokens = min(self.capacity, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def credit(self, amount: float) -> None:
        """Start with ``amount`` to spend at once, beyond the burst: what the endpoint says is left
        of its own allowance (its ``remaining`` header) when the budget is learnt from it."""
        self._refill()
        self.tokens = max(self.tokens, amount)
        self._ceiling = max(self._ceiling, self.tokens)

    async def take(self, amount: float) -> None:
        """Wait until ``amount`` is available, then spend it. More than the burst waits for a full
        bucket and leaves a debt the next requests wait out, so a large request is paid in full."""
        need = min(amount, self.capacity)
        async with self._lock:
            self._refill()
            # The tolerance matters: after sleeping exactly the computed time, float
            # rounding can leave the bucket a hair short, and a sleep too small to
            # move the clock would then spin forever.
            while self.tokens < need - 1e-6:
                await self._sleep(max((need - self.tokens) / self.rate, 0.001))
                self._refill()
            self.tokens -= amount

    def adjust(self, estimated: float, actual: float) -> None:
        """Correct a spend once the real cost is known (may go negative: a debt paid by waiting)."""
        self.tokens = min(self._ceiling, self.tokens + estimated - actual)


class TokenEstimator:
    """Offline token estimate: characters times a ratio learned from replies' ``usage``.

    Starts at 4 characters per token (English text with BPE tokenizers) and moves
    towards what the server reports, so no tokenizer download is needed.
    """

    def __init__(self, chars_per_token: float = 4.0, default_output: int = 256) -> None:
        self.chars_per_token = chars_per_token
        self.default_output = default_output
        self._out_tokens: float | None = None

    def prompt_tokens(self, prompt_chars: int) -> int:
        return int(prompt_chars / self.chars_per_token) + 1

    def output_tokens(self, max_tokens: int | None) -> int:
        """The output to expect: the request's cap (0 when it generates nothing: embeddings), else the
        learned average (``default_output`` before any reply)."""
        if max_tokens is not None:
            return max(max_tokens, 0)
        return int(self._out_tokens) if self._out_tokens is not None else self.default_output

    def observe(self, prompt_chars: int, prompt_tokens: int | None, completion_tokens: int | None) -> None:
        if prompt_tokens and prompt_chars:
            seen = prompt_chars / prompt_tokens
            self.chars_per_token += 0.1 * (seen - self.chars_per_token)
        if completion_tokens is not None:
            prev = self._out_tokens
            self._out_tokens = completion_tokens if prev is None else prev + 0.1 * (completion_tokens - prev)


class SpendBudget:
    """The spend guards of one run, asked before every attempt is sent.

    ``max_requests``: at most that many requests reach the endpoint, retries included.
    ``max_total_tokens``: a request is sent only while the tokens already used (from the
    replies' ``usage``) plus the estimates of the requests in flight plus its own estimate
    stay within the budget. So the total can pass ``max_total_tokens`` only by what the
    requests in flight use beyond their estimates (an estimate is the prompt's length over
    the learned characters per token, plus ``max_tokens`` when set).
    """

    def __init__(self, max_requests: int | None, max_tokens: int | None) -> None:
        self.max_requests = max_requests
        self.max_tokens = max_tokens
        self.requests = 0  # requests sent
        self.tokens = 0  # tokens used by the answers received
        self._in_flight = 0  # estimated tokens of the requests sent and not yet answered
        self.reason: str | None = None  # why a request was refused, once one was

    @property
    def needs_estimates(self) -> bool:
        return self.max_tokens is not None

    def reserve(self, estimated_tokens: int) -> int:
        """Count one request about to be sent; SpendLimitReached when a guard refuses it."""
        from connector.errors import SpendLimitReached

        if self.max_requests is not None and self.requests >= self.max_requests:
            self.reason = self.reason or f"max_requests ({self.max_requests}) reached"
            raise SpendLimitReached(self.reason)
        if self.max_tokens is not None and self.tokens + self._in_flight + estimated_tokens > self.max_tokens:
            self.reason = self.reason or (f"max_total_tokens ({self.max_tokens}) reached ({self.tokens} used, "
                                          f"the next request estimated at {estimated_tokens})")
            raise SpendLimitReached(self.reason)
        self.requests += 1
        self._in_flight += estimated_tokens
        return estimated_tokens

    def settle(self, reserved: int, used: int | None) -> None:
        """The request is over: ``used`` tokens (None: answered without usage, so the estimate counts)."""
        self._in_flight -= reserved
        self.tokens += reserved if used is None else used
