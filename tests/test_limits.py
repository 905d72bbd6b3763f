"""Rate limits and adaptive concurrency, on a fake clock: nothing here waits for real."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from connector import errors
from connector.config.load import load_config
from connector.endpoint.client import EndpointClient
from connector.endpoint.limits import ConcurrencyGate, TokenBucket, TokenEstimator, WaitCap
from connector.endpoint.pacing import Limiter
from connector.endpoint.rate_headers import hints_from_headers, parse_reset
from tests.conftest import chat_reply, client_for, mock_transport


class FakeClock:
    """Time that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


@pytest.mark.parametrize("budget", [1, 7, 60, 600])
def test_requests_per_minute_hold_over_every_window(budget: int) -> None:
    clock = FakeClock()
    bucket = TokenBucket(budget, clock=clock, sleep=clock.sleep)
    stamps: list[float] = []

    async def run() -> None:
        for _ in range(budget * 3 + 5):
            await bucket.take(1)
            stamps.append(clock.now)

    asyncio.run(run())
    for i, start in enumerate(stamps):
        in_window = sum(1 for t in stamps[i:] if t < start + 60 - 1e-9)
        assert in_window <= budget, (start, in_window)
    # and the budget is actually used: after the burst, requests come at the refill rate
    expected = (len(stamps) - bucket.capacity) / bucket.rate
    assert stamps[-1] <= expected + 1


def test_token_budget_holds_with_corrections_from_usage() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10_000, clock=clock, sleep=clock.sleep)
    spent: list[tuple[float, int]] = []

    async def run() -> None:
        rng = random.Random(7)
        for _ in range(200):
            estimate = rng.randint(100, 600)
            actual = int(estimate * rng.uniform(0.5, 1.5))
            await bucket.take(estimate)
            bucket.adjust(estimate, actual)
            spent.append((clock.now, actual))

    asyncio.run(run())
    for i, (start, _) in enumerate(spent):
        window = sum(tokens for t, tokens in spent[i:] if t < start + 60 - 1e-9)
        # the last request's overrun is paid after it was sent: at most one request over
        assert window <= 10_000 + 900, window


def test_concurrency_never_exceeds_the_cap() -> None:
    gate = ConcurrencyGate(maximum=5, adaptive=False)
    in_flight = peak = 0

    async def worker() -> None:
        nonlocal in_flight, peak
        ticket = await gate.acquire()
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        in_flight -= 1
        gate.release(ticket, clean=True)

    async def run() -> None:
        await asyncio.gather(*(worker() for _ in range(100)))

    asyncio.run(run())
    assert peak == 5 == gate.peak_in_use
    assert gate.in_use == 0


def test_cap_halves_once_per_burst_then_recovers() -> None:
    gate = ConcurrencyGate(maximum=64, minimum=2)

    async def run() -> None:
        tickets = [await gate.acquire() for _ in range(64)]
        # 429s for 20 requests that were all in flight under the same cap: one halving
        for ticket in tickets[:20]:
            gate.release(ticket, overloaded=True)
        assert gate.limit == 32
        for ticket in tickets[20:]:
            gate.release(ticket, clean=True)
        # a request sent after the decrease that is overloaded too halves it again
        ticket = await gate.acquire()
        gate.release(ticket, overloaded=True)
        assert gate.limit == 16
        # clean answers grow it back by one per cap's worth
        for _ in range(16 * 10):
            gate.release(await gate.acquire(), clean=True)
        assert 16 + 5 <= gate.limit <= 16 + 10

    asyncio.run(run())


def test_cap_never_goes_below_the_minimum() -> None:
    gate = ConcurrencyGate(maximum=8, minimum=3)

    async def run() -> None:
        for _ in range(50):
            gate.release(await gate.acquire(), overloaded=True)

    asyncio.run(run())
    assert gate.limit == 3


def test_retry_after_pauses_every_new_request() -> None:
    clock = FakeClock()
    gate = ConcurrencyGate(maximum=4, clock=clock, sleep=clock.sleep)

    async def run() -> list[float]:
        gate.pause(12.5)
        starts = []

        async def worker() -> None:
            ticket = await gate.acquire()
            starts.append(clock.now)
            gate.release(ticket, clean=True)

        await asyncio.gather(*(worker() for _ in range(3)))
        return starts

    starts = asyncio.run(run())
    assert all(t >= 12.5 for t in starts)


def test_rate_limit_headers_are_hints() -> None:
    assert parse_reset("6m0s") == 360.0
    assert parse_reset("20ms") == pytest.approx(0.02)
    assert parse_reset("1.5") == 1.5
    seconds, why = hints_from_headers({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}) \
        or (None, "")
    assert seconds == 2.0 and "x-ratelimit-remaining-requests is 0" in why
    assert parse_reset("1h") == 3600.0 and parse_reset("nan") == 0.0 and parse_reset("1e400") == float("inf")
    assert hints_from_headers({"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "2s"}) is None


def test_estimator_learns_from_usage() -> None:
    estimator = TokenEstimator()
    before = estimator.prompt_tokens(3000)
    for _ in range(60):
        estimator.observe(3000, 1500, 40)  # this server counts 2 chars per token
    assert estimator.prompt_tokens(3000) > before * 1.7
    assert estimator.output_tokens(None) == pytest.approx(40, abs=2)
    assert estimator.output_tokens(16) == 16


def test_client_halves_the_cap_once_for_a_burst_of_429s_and_honours_retry_after() -> None:
    clock = FakeClock()
    arrived = {"n": 0}
    all_in_flight = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        arrived["n"] += 1
        if arrived["n"] <= 8:  # the first wave: all eight in flight, then all rate limited
            if arrived["n"] == 8:
                all_in_flight.set()
            await all_in_flight.wait()
            return httpx.Response(429, headers={"retry-after": "4"}, json={"error": {"message": "slow down"}})
        return httpx.Response(200, json=chat_reply("ok"))

    config = load_config({"url": "http://x/v1", "prompt": "{{t}}", "input": {"rows": [{"t": 1}]},
                          "concurrency": 8})
    gate = ConcurrencyGate(8, clock=clock, sleep=clock.sleep)
    client = client_for(config, mock_transport(handler)(8), sleep=clock.sleep, limiter=Limiter(gate))

    async def run() -> list[int]:
        body = {"messages": [{"role": "user", "content": "hi"}]}
        done = await asyncio.gather(*(client.complete(body) for _ in range(8)))
        return [c.attempts for c in done]

    assert asyncio.run(run()) == [2] * 8
    # halved once for the burst (8 -> 4), not eight times; the clean retries then grow it again
    assert gate.decreases == 1 and 4 <= gate.limit < 8
    assert min(clock.slept) >= 4  # every retry waited at least Retry-After


# Waits the endpoint asks for: capped and announced -----------------------------------------


class Notices(list[tuple[str, str]]):
    def __call__(self, level: str, text: str) -> None:
        self.append((level, text))


def test_wait_cap_announces_a_pause_once_and_refuses_one_beyond_the_cap() -> None:
    notices = Notices()
    waits = WaitCap(60, notices, wall=lambda: 0.0)
    assert waits.allow(0.5, "short") == 0.5 and notices == []  # routine backoff is not news
    assert waits.allow(30, "Retry-After on a 429") == 30
    assert waits.allow(30, "Retry-After on a 429") == 30  # a second request meeting the same pause
    assert notices == [("WARN", "waiting 30.0 s, until 1970-01-01 00:00:30 UTC: Retry-After on a 429 "
                                "(max_wait_seconds 60)")]
    assert waits.allow(float("nan"), "garbage") == 0.0
    with pytest.raises(errors.WaitTooLong) as info:
        waits.allow(3600, "x-ratelimit-remaining-requests is 0")
    assert "until 1970-01-01 01:00:00 UTC" in info.value.message and info.value.until == 3600
    with pytest.raises(errors.WaitTooLong, match="without end"):
        waits.allow(float("inf"), "Retry-After: 1e400")


def _client_with_budget_headers(reset: str, notices: Notices, clock: FakeClock) -> tuple[EndpointClient, list[int]]:
    sent = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        sent[0] += 1
        return httpx.Response(200, json=chat_reply("ok"), headers={
            "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": reset})

    config = load_config({"url": "http://x/v1", "prompt": "{{t}}", "input": {"rows": [{"t": 1}]}})
    gate = ConcurrencyGate(4, clock=clock, sleep=clock.sleep, waits=WaitCap(300, notices, wall=clock))
    return client_for(config, mock_transport(handler)(4), sleep=clock.sleep, limiter=Limiter(gate)), sent


def test_an_exhausted_budget_within_the_cap_pauses_every_request_and_says_so() -> None:
    clock, notices = FakeClock(), Notices()
    client, sent = _client_with_budget_headers("2m", notices, clock)
    body = {"messages": [{"role": "user", "content": "hi"}]}

    async def run() -> None:
        await client.complete(body)
        await client.complete(body)

    asyncio.run(run())
    assert sent == [2] and clock.slept == [120.0]
    assert len(notices) == 1 and notices[0][0] == "WARN"
    assert "waiting 120.0 s, until 1970-01-01 00:02:00 UTC: x-ratelimit-remaining-requests is 0" in notices[0][1]


def test_an_exhausted_budget_beyond_the_cap_delivers_the_answer_then_stops() -> None:
    clock, notices = FakeClock(), Notices()
    client, sent = _client_with_budget_headers("1h", notices, clock)
    body = {"messages": [{"role": "user", "content": "hi"}]}

    async def run() -> None:
        first = await client.complete(body)  # the answer that brought the news is kept
        assert first.reply["choices"][0]["message"]["content"] == "ok"
        await client.complete(body)

    with pytest.raises(errors.WaitTooLong, match=r"wait 3,600 s \(x-ratelimit-remaining-requests is 0.*1h\)"):
        asyncio.run(run())
    assert sent == [1] and clock.slept == []
