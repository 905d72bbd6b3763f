"""Rate limits read from the endpoint's headers, and the limiter that paces to them, on a fake clock
(nothing here waits for real; an OpenAI-style bucket stands in for the server's count)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from connector.config.load import load_config
from connector.config.parts import parts_of
from connector.endpoint.limits import ConcurrencyGate, TokenBucket
from connector.endpoint.pacing import Estimate, Limiter
from connector.endpoint.rate_headers import hints_from_headers, limits_from_headers, parse_reset
from connector.pipeline.connect import limiter_for
from tests.test_limits import FakeClock

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("value, seconds", [
    ("6m0s", 360.0), ("1s", 1.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("2m59.56s", 179.56), ("0.5", 0.5),
    ("2026-01-01T00:00:05Z", 5.0), ("2026-01-01T00:01:00+00:00", 60.0), ("2025-12-31T23:59:00Z", 0.0),
    ("soon", None), ("2026-13-01T00:00:00Z", None),
])
def test_reset_durations_and_rfc3339_times(value: str, seconds: float | None) -> None:
    assert parse_reset(value, NOW) == (pytest.approx(seconds) if seconds is not None else None)


def test_an_rfc3339_time_is_not_read_without_a_clock() -> None:
    assert parse_reset("2026-01-01T00:00:05Z") is None


OPENAI = {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "599",
          "x-ratelimit-reset-requests": "100ms", "x-ratelimit-limit-tokens": "400000",
          "x-ratelimit-remaining-tokens": "399000", "x-ratelimit-reset-tokens": "150ms"}
ANTHROPIC = {"anthropic-ratelimit-requests-limit": "1000", "anthropic-ratelimit-requests-remaining": "999",
             "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:00Z",
             "anthropic-ratelimit-input-tokens-limit": "80000", "anthropic-ratelimit-input-tokens-remaining": "80000",
             "anthropic-ratelimit-input-tokens-reset": "2026-01-01T00:00:00Z",
             "anthropic-ratelimit-output-tokens-limit": "16000",
             "anthropic-ratelimit-output-tokens-remaining": "16000",
             "anthropic-ratelimit-output-tokens-reset": "2026-01-01T00:00:00Z",
             "anthropic-ratelimit-tokens-limit": "96000", "anthropic-ratelimit-tokens-remaining": "96000",
             "anthropic-ratelimit-tokens-reset": "2026-01-01T00:00:00Z"}


def _per_minute(headers: dict[str, str]) -> dict[str, float | None]:
    return {kind: learnt.per_minute if learnt else None for kind, learnt in limits_from_headers(headers).items()}


def test_openai_limits_per_minute_from_their_refill() -> None:
    assert _per_minute(OPENAI) == {"requests": 600.0, "tokens": 400_000.0}


def test_groq_requests_per_day_and_tokens_per_minute_told_apart_by_the_refill() -> None:
    groq = {"x-ratelimit-limit-requests": "14400", "x-ratelimit-remaining-requests": "14370",
            "x-ratelimit-reset-requests": "2m59.56s", "x-ratelimit-limit-tokens": "18000",
            "x-ratelimit-remaining-tokens": "17997", "x-ratelimit-reset-tokens": "10ms"}
    learnt = limits_from_headers(groq)
    assert _per_minute(groq) == {"requests": 10.0, "tokens": 18_000.0}  # 14,400 a day is 10 a minute
    assert learnt["requests"] is not None and learnt["requests"].describe() == "14,400 requests/day (10.0/min)"


def test_together_unsuffixed_headers_are_requests() -> None:
    together = {"x-ratelimit-limit": "600", "x-ratelimit-remaining": "598", "x-ratelimit-reset": "0.2"}
    assert _per_minute(together) == {"requests": 600.0}


def test_anthropic_input_and_output_budgets_apart_and_the_combined_one_left_out() -> None:
    assert _per_minute(ANTHROPIC) == {"requests": 1000.0, "input_tokens": 80_000.0, "output_tokens": 16_000.0}


def test_a_limit_with_nothing_spent_yet_is_announced_but_not_learnt() -> None:
    fresh = {"x-ratelimit-limit-tokens": "400000", "x-ratelimit-remaining-tokens": "400000",
             "x-ratelimit-reset-tokens": "0s"}
    assert _per_minute(fresh) == {"tokens": None}


def test_an_exhausted_anthropic_budget_pauses_until_its_reset_time() -> None:
    spent = {**ANTHROPIC, "anthropic-ratelimit-requests-remaining": "0",
             "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:07Z"}
    pause = hints_from_headers(spent, NOW)
    assert pause is not None and pause[0] == pytest.approx(7.0) and "requests-remaining is 0" in pause[1]


class ServerBucket:
    """The endpoint's count, OpenAI-style: a bucket of a minute's limit refilled continuously."""

    def __init__(self, per_minute: float, clock: FakeClock) -> None:
        self.per_minute, self.clock = per_minute, clock
        self.level, self.stamp, self.refused = per_minute, 0.0, 0

    def admit(self, amount: float = 1.0) -> bool:
        now = self.clock()
        self.level = min(self.per_minute, self.level + (now - self.stamp) * self.per_minute / 60)
        self.stamp = now
        if self.level < amount:
            self.refused += 1
            return False
        self.level -= amount
        return True


def _headers(server: ServerBucket) -> dict[str, str]:
    used = server.per_minute - int(server.level)
    return {"x-ratelimit-limit-requests": f"{server.per_minute:.0f}",
            "x-ratelimit-remaining-requests": f"{int(server.level)}",
            "x-ratelimit-reset-requests": f"{used * 60 / server.per_minute:.3f}s"}


@pytest.mark.parametrize("configured", [True, False])
def test_the_run_holds_the_limit_without_429s(configured: bool) -> None:
    """Ten minutes of requests, sent as fast as the limiter lets them: with requests_per_minute set,
    and with it learnt from the first reply's headers (the requests before that reply are the
    concurrency cap's worth: 16 here)."""
    clock = FakeClock()
    server = ServerBucket(600, clock)
    notes: list[str] = []
    limiter = Limiter(ConcurrencyGate(16, clock=clock, sleep=clock.sleep), {"requests": 600 if configured else None},
                      notice=lambda _level, text: notes.append(text), clock=clock, sleep=clock.sleep)
    sent = 0

    async def run() -> None:
        nonlocal sent
        pending = 0
        while clock.now < 600:
            ticket = await limiter.before(Estimate())
            server.admit()
            sent += 1
            pending += 1
            if pending == 16 or "requests" in limiter.buckets:  # the first 16 answer together
                for _ in range(pending):
                    limiter.after(ticket, overloaded=False, clean=True, headers=_headers(server))
                pending = 0

    asyncio.run(run())
    assert server.refused == 0
    assert sent >= 0.98 * 600 * 10  # at least 98 % of the limit over the ten minutes
    assert notes == ([] if configured else
                     ["rate limits learnt from the endpoint's headers: 600 requests/min (x-ratelimit-limit-requests); "
                      "requests are paced to 99 % of them (requests_per_minute, tokens_per_minute, "
                      "input_tokens_per_minute, output_tokens_per_minute set them instead)"])


def test_a_configured_budget_is_kept_over_the_announced_one() -> None:
    clock = FakeClock()
    limiter = Limiter(ConcurrencyGate(4), {"requests": 100}, clock=clock, sleep=clock.sleep)
    limiter.after(0, overloaded=False, clean=True, headers=OPENAI)
    assert limiter.buckets["requests"].per_minute == 100
    assert limiter.buckets["tokens"].per_minute == 400_000  # not configured: learnt


def test_input_and_output_tokens_are_charged_to_their_own_budgets() -> None:
    clock = FakeClock()
    limiter = Limiter(ConcurrencyGate(4), clock=clock, sleep=clock.sleep, wall=lambda: NOW)
    limiter.after(0, overloaded=False, clean=True, headers=ANTHROPIC)
    assert limiter.needs_estimates
    start = {kind: bucket.tokens for kind, bucket in limiter.buckets.items()}
    asyncio.run(limiter.before(Estimate(prompt=300, output=50)))
    spent = {kind: start[kind] - bucket.tokens for kind, bucket in limiter.buckets.items()}
    assert spent == {"requests": 1, "input_tokens": 300, "output_tokens": 50}
    limiter.settle(Estimate(prompt=300, output=50), prompt=200, output=120)  # the reply's usage
    spent = {kind: start[kind] - bucket.tokens for kind, bucket in limiter.buckets.items()}
    assert spent == {"requests": 1, "input_tokens": 200, "output_tokens": 120}


def test_replies_without_limits_stop_the_reading_after_a_while() -> None:
    limiter = Limiter(ConcurrencyGate(4))
    for _ in range(Limiter.LOOK_FOR):
        limiter.after(0, overloaded=False, clean=True, headers={"content-type": "application/json"})
    limiter.after(0, overloaded=False, clean=True, headers=OPENAI)
    assert limiter.buckets == {} and not limiter.needs_estimates


@pytest.mark.parametrize("budget", [60, 600, 10_000])
def test_a_configured_budget_is_used_to_98_percent_over_a_long_run(budget: int) -> None:
    clock = FakeClock()
    bucket = TokenBucket(budget, clock=clock, sleep=clock.sleep)

    async def run() -> int:
        taken = 0
        while clock.now < 600:
            await bucket.take(1)
            taken += 1
        return taken

    assert asyncio.run(run()) >= 0.98 * budget * 10


def test_a_request_larger_than_the_burst_is_paid_in_full() -> None:
    clock = FakeClock()
    bucket = TokenBucket(6000, clock=clock, sleep=clock.sleep)  # a burst of 60 tokens, 99 a second

    async def run() -> None:
        for _ in range(10):
            await bucket.take(990)

    asyncio.run(run())
    assert clock.now >= 9 * 990 / bucket.rate - 1  # each 990 waited out, not 60


def test_what_the_endpoint_has_left_is_spent_at_once_less_what_is_in_flight() -> None:
    """A learnt budget starts with the allowance the reply says is left (OpenAI's and Anthropic's buckets
    hold a whole minute), less the requests still in flight, which the endpoint may not have counted yet."""
    clock = FakeClock()
    gate = ConcurrencyGate(1000, clock=clock, sleep=clock.sleep)
    limiter = Limiter(gate, clock=clock, sleep=clock.sleep)
    left = {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "500",
            "x-ratelimit-reset-requests": "10s"}

    async def run() -> int:
        for _ in range(10):
            await limiter.before(Estimate())  # ten requests in flight when the first reply comes
        limiter.after(await limiter.before(Estimate()), overloaded=False, clean=True, headers=left)
        sent = 0
        while clock.now == 0:
            await limiter.before(Estimate())
            sent += 1
        return sent

    assert asyncio.run(run()) == 490 + 1  # 500 left, 10 in flight; the next waits for the refill


def test_input_and_output_token_budgets_from_the_config() -> None:
    config = load_config({"url": "http://x/v1", "prompt": "{{t}}", "input": {"rows": [{"t": 1}]},
                          "input_tokens_per_minute": 80_000, "output_tokens_per_minute": 16_000})
    limiter = limiter_for(parts_of(config).limits)
    assert {kind: bucket.per_minute for kind, bucket in limiter.buckets.items()} == {
        "input_tokens": 80_000, "output_tokens": 16_000}
    assert limiter.needs_estimates
