"""The attempt deadline: one watchdog for every attempt of a client (connector/endpoint/deadlines.py)."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from connector.endpoint.deadlines import Deadlines

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="the watchdog needs Task.uncancel (3.11+)")


async def _answer_after(seconds: float, value: str) -> str:
    await asyncio.sleep(seconds)
    return value


def test_an_attempt_past_its_deadline_is_cut_off_and_one_within_it_is_answered() -> None:
    deadlines = Deadlines(0.2)

    async def both() -> tuple[BaseException | str, BaseException | str]:
        slow, fast = await asyncio.gather(deadlines.run(_answer_after(30, "slow")),
                                          deadlines.run(_answer_after(0.05, "fast")), return_exceptions=True)
        return slow, fast

    started = time.monotonic()
    slow, fast = asyncio.run(both())
    assert isinstance(slow, TimeoutError) and fast == "fast"
    assert time.monotonic() - started < 5  # cut off near 0.2 s, not after the 30 s answer


def test_each_attempt_has_its_own_deadline_counted_from_when_it_began() -> None:
    deadlines = Deadlines(0.4)
    ended: dict[str, float] = {}

    async def attempt(name: str, delay: float, length: float) -> str:
        await asyncio.sleep(delay)
        began = time.monotonic()
        try:
            return await deadlines.run(_answer_after(length, name))
        finally:
            ended[name] = time.monotonic() - began

    async def three() -> list[BaseException | str]:
        return await asyncio.gather(attempt("first", 0, 30), attempt("later", 0.3, 0.3),
                                    attempt("again", 0.45, 30), return_exceptions=True)

    first, later, again = asyncio.run(three())
    # "later" began 0.3 s after "first" and needed 0.3 s: the first's deadline does not cut it.
    assert later == "later"
    assert isinstance(first, TimeoutError) and isinstance(again, TimeoutError)
    assert 0.4 <= ended["first"] < 3 and 0.4 <= ended["again"] < 3


def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    deadlines = Deadlines(30)

    async def cancelled() -> None:
        task = asyncio.create_task(deadlines.run(_answer_after(30, "x")))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())


def test_the_same_client_keeps_its_deadlines_in_a_second_event_loop() -> None:
    deadlines = Deadlines(0.2)
    for _ in range(2):  # e.g. check, then read, in one process
        with pytest.raises(TimeoutError):
            asyncio.run(deadlines.run(_answer_after(30, "x")))
    assert asyncio.run(deadlines.run(_answer_after(0.01, "ok"))) == "ok"


def test_an_attempt_that_fails_on_its_own_keeps_its_error() -> None:
    deadlines = Deadlines(30)

    async def broken() -> str:
        await asyncio.sleep(0)
        raise ValueError("the reply was not JSON")

    with pytest.raises(ValueError, match="not JSON"):
        asyncio.run(deadlines.run(broken()))
