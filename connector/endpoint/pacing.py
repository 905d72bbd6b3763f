"""The limiter: everything that stands in front of one HTTP attempt, and the rate limits it learns.

Budgets are per-minute :class:`~connector.endpoint.limits.TokenBucket`\\ s by kind: ``requests``,
``tokens`` (a request's prompt and output together), ``input_tokens`` and ``output_tokens``
(separate, as Anthropic counts them). A budget the config sets is kept as set. A kind the config
leaves unset is learnt from the first replies that announce it
(:func:`~connector.endpoint.rate_headers.limits_from_headers`), said in one LOG line, and from
then on paced like a configured one: 99 % of the limit, so the endpoint's 429s stay rare. Until
then only the concurrency cap paces the requests; the endpoint's own burst allowance (a whole
minute's budget at OpenAI and Anthropic) absorbs that start.

A reply without any of those headers counts towards :attr:`Limiter.LOOK_FOR` replies, after
which the limiter stops reading them (local servers announce no limits).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

from connector.callbacks import Clock, Notice, Sleep, no_notice
from connector.endpoint.limits import ConcurrencyGate, TokenBucket, TokenEstimator, WaitCap
from connector.endpoint.rate_headers import KINDS, Learnt, hints_from_headers, limits_from_headers


@dataclass(frozen=True, slots=True)
class Estimate:
    """A request's tokens as estimated before it is sent: its prompt and its output."""

    prompt: int = 0
    output: int = 0

    @property
    def total(self) -> int:
        return self.prompt + self.output


class Limiter:
    """The concurrency gate and the rate budgets of one run (shared by its clients)."""

    LOOK_FOR = 20  # replies without rate-limit headers after which none are expected

    def __init__(self, gate: ConcurrencyGate, budgets: Mapping[str, float | None] | None = None, *,
                 estimator: TokenEstimator | None = None, learn: bool = True, notice: Notice = no_notice,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep, wall: Clock = time.time) -> None:
        """``budgets``: per-minute limits by kind (requests, tokens, input_tokens, output_tokens);
        ``learn``: take the kinds left unset from the endpoint's headers."""
        self.gate = gate
        self.estimator = estimator or TokenEstimator()
        self._clock, self._sleep, self._wall, self._notice = clock, sleep, wall, notice
        self.buckets: dict[str, TokenBucket] = {
            kind: TokenBucket(per_minute, clock, sleep) for kind, per_minute in (budgets or {}).items() if per_minute}
        self.learnt: dict[str, float] = {}  # per minute, by kind
        self._unannounced = self.LOOK_FOR if learn and len(self.buckets) < len(KINDS) else 0

    @property
    def needs_estimates(self) -> bool:
        """Whether a request's tokens must be estimated before it is sent (a token budget is set)."""
        return len(self.buckets) > ("requests" in self.buckets)

    def ready(self) -> int | None:
        """The gate's ticket when a request need not wait at all (no budget, no pause, a free slot), without
        the coroutines of :meth:`before`; None when it must wait: then :meth:`before`."""
        return None if self.buckets else self.gate.try_acquire()

    async def before(self, estimate: Estimate) -> int:
        """Wait for the budgets and a slot; returns the gate's ticket."""
        buckets = self.buckets
        if buckets:
            for kind, bucket in buckets.items():
                await bucket.take(_share(kind, estimate))
        return await self.gate.acquire()

    @property
    def waits(self) -> WaitCap:
        """The cap on waits the endpoint asks for (the gate's)."""
        return self.gate.waits

    def after(self, ticket: int, *, overloaded: bool, clean: bool, headers: Mapping[str, str] | None = None,
              retry_after: float | None = None, why: str = "Retry-After") -> None:
        """The attempt is over: free its slot, honour the pauses the endpoint asked for, learn its limits."""
        self.gate.release(ticket, overloaded=overloaded, clean=clean)
        if retry_after:
            self.gate.pause(retry_after, why)
        if headers:
            if self._unannounced:
                self._learn(headers)
            hint = hints_from_headers(headers, self._wall())
            if hint:
                self.gate.pause(*hint)

    def settle(self, estimate: Estimate, prompt: int | None, output: int | None) -> None:
        """Correct the token budgets by what the reply's ``usage`` says was used."""
        if prompt is None and output is None:
            return
        used = Estimate(estimate.prompt if prompt is None else prompt, estimate.output if output is None else output)
        for kind, bucket in self.buckets.items():
            if kind != "requests":
                bucket.adjust(_share(kind, estimate), _share(kind, used))

    def _learn(self, headers: Mapping[str, str]) -> None:
        found = limits_from_headers(headers)
        if not found:
            self._unannounced -= 1
            return
        new = [learnt for kind, learnt in found.items() if learnt is not None and kind not in self.buckets]
        for learnt in new:
            bucket = self.buckets[learnt.kind] = TokenBucket(learnt.per_minute, self._clock, self._sleep)
            # What the endpoint has left may be spent at once, less what may be on its way there already
            # (the requests in flight, each taken to cost what the requests counted so far did on average).
            bucket.credit(learnt.remaining - self.gate.in_use * _each(learnt, found.get("requests")))
            self.learnt[learnt.kind] = learnt.per_minute
        if new:
            self._notice("INFO", "rate limits learnt from the endpoint's headers: "
                         + ", ".join(f"{learnt.describe()} ({learnt.header})" for learnt in new)
                         + "; requests are paced to 99 % of them (requests_per_minute, tokens_per_minute, "
                         "input_tokens_per_minute, output_tokens_per_minute set them instead)")
        if found.keys() <= self.buckets.keys():
            self._unannounced = 0  # every limit announced is known: the headers are not read again


def _each(learnt: Learnt, requests: Learnt | None) -> float:
    """What one request has cost of ``learnt``'s allowance so far, by the same reply's counts."""
    if learnt.kind == "requests":
        return 1.0
    spent = learnt.limit - learnt.remaining
    return spent / max(1.0, requests.limit - requests.remaining) if requests is not None else spent


def _share(kind: str, estimate: Estimate) -> float:
    """What a request spends of a budget of ``kind``."""
    if kind == "requests":
        return 1.0
    if kind == "input_tokens":
        return estimate.prompt
    if kind == "output_tokens":
        return estimate.output
    return estimate.total
