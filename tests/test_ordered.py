"""connector.pipeline.ordered.ordered_map: input order, bounded concurrency and window, failure handling.

Timing is driven by event-loop turns (asyncio.sleep(0)) and events, never the wall clock.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from connector.pipeline.ordered import ordered_map

# A safety net only (no test waits on the clock): a broken cancel would hang, not fail.
pytestmark = pytest.mark.timeout(10)


async def spin(turns: int = 50) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


async def collect(gen: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in gen]


class Tracker:
    """Wraps a coroutine function and records starts, ends, cancellations, peak concurrency."""

    def __init__(self, body: Callable[[int], Awaitable[Any]]) -> None:
        self.body = body
        self.started: list[int] = []
        self.finished: list[int] = []
        self.cancelled: list[int] = []
        self.in_flight = 0
        self.peak = 0

    async def __call__(self, item: int) -> Any:
        self.started.append(item)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            result = await self.body(item)
        except asyncio.CancelledError:
            self.cancelled.append(item)
            raise
        finally:
            self.in_flight -= 1
        self.finished.append(item)
        return result


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("concurrency", "window"), [(1, None), (4, None), (8, 8), (3, 50)])
async def test_output_in_input_order_when_completions_arrive_shuffled(
    seed: int, concurrency: int, window: int | None
) -> None:
    rng = random.Random(seed)
    delays = [rng.randrange(0, 30) for _ in range(60)]

    async def body(i: int) -> str:
        await spin(delays[i])
        return f"r{i}"

    tracker = Tracker(body)
    out = await collect(ordered_map(iter(range(60)), tracker, concurrency, window))
    assert out == [f"r{i}" for i in range(60)]
    assert tracker.started == list(range(60))  # items are started in input order
    if concurrency > 1:
        # the completions really did arrive out of order (else the test proves nothing)
        assert tracker.finished != sorted(tracker.finished)
    assert 1 <= tracker.peak <= concurrency


@pytest.mark.parametrize("concurrency", [1, 2, 5, 16])
async def test_never_more_than_concurrency_calls_in_flight(concurrency: int) -> None:
    rng = random.Random(concurrency)

    async def body(i: int) -> int:
        await spin(rng.randrange(1, 10))
        return i

    tracker = Tracker(body)
    out = await collect(ordered_map(iter(range(100)), tracker, concurrency))
    assert out == list(range(100))
    assert tracker.peak == concurrency  # reached, never exceeded


async def test_reorder_window_bounds_how_far_ahead_items_start() -> None:
    release_head = asyncio.Event()

    async def body(i: int) -> int:
        if i == 0:
            await release_head.wait()
        return i

    tracker = Tracker(body)
    consumer = asyncio.ensure_future(collect(ordered_map(iter(range(100)), tracker, 3, window=6)))
    await spin()
    # item 0 is stuck: at most `window` items may be started past the last yielded one
    assert tracker.started == [0, 1, 2, 3, 4, 5]
    assert tracker.in_flight == 1
    release_head.set()
    assert await consumer == list(range(100))


async def test_window_is_at_least_concurrency() -> None:
    release_head = asyncio.Event()

    async def body(i: int) -> int:
        if i == 0:
            await release_head.wait()
        await spin(5)
        return i

    tracker = Tracker(body)
    consumer = asyncio.ensure_future(collect(ordered_map(iter(range(20)), tracker, 4, window=2)))
    await spin()
    assert tracker.started == [0, 1, 2, 3]
    release_head.set()
    assert await consumer == list(range(20))


async def test_default_window_is_four_times_concurrency() -> None:
    release_head = asyncio.Event()

    async def body(i: int) -> int:
        if i == 0:
            await release_head.wait()
        return i

    tracker = Tracker(body)
    consumer = asyncio.ensure_future(collect(ordered_map(iter(range(100)), tracker, 2)))
    await spin(100)
    assert tracker.started == list(range(8))
    release_head.set()
    assert await consumer == list(range(100))


async def test_items_are_pulled_lazily() -> None:
    pulled: list[int] = []

    def source() -> Iterator[int]:
        for i in range(1000):
            pulled.append(i)
            yield i

    async def body(i: int) -> int:
        return i

    gen = ordered_map(source(), body, concurrency=2, window=4)
    first = await gen.__anext__()
    assert first == 0
    assert len(pulled) <= 5
    await gen.aclose()


class Boom(Exception):
    pass


async def test_failure_propagates_after_earlier_results_and_cancels_later_in_flight() -> None:
    never = asyncio.Event()

    async def body(i: int) -> int:
        if i < 3:
            await spin(i + 1)
            return i
        if i == 3:
            await spin(10)
            raise Boom("item 3")
        await never.wait()  # later items never finish on their own
        return i

    tracker = Tracker(body)
    got: list[int] = []
    with pytest.raises(Boom, match="item 3"):
        async for value in ordered_map(iter(range(50)), tracker, concurrency=4):
            got.append(value)
    assert got == [0, 1, 2]
    later_in_flight = [i for i in tracker.started if i > 3]
    assert later_in_flight, "some later item should have been in flight when 3 failed"
    assert sorted(tracker.cancelled) == later_in_flight
    assert tracker.in_flight == 0
    # nothing is left running in the loop
    await spin(5)
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []


async def test_no_new_item_starts_once_a_call_has_failed() -> None:
    release_head = asyncio.Event()
    never = asyncio.Event()

    async def body(i: int) -> int:
        if i == 0:
            await release_head.wait()
            return 0
        if i == 1:
            raise Boom("item 1")
        await never.wait()
        return i

    tracker = Tracker(body)
    got: list[int] = []

    async def consume() -> None:
        async for value in ordered_map(iter(range(100)), tracker, concurrency=3, window=10):
            got.append(value)

    consumer = asyncio.ensure_future(consume())
    await spin()
    # 1 failed and freed its slot; without the stop rule item 3 would start now
    assert tracker.started == [0, 1, 2]
    assert got == []
    release_head.set()
    with pytest.raises(Boom, match="item 1"):
        await consumer
    assert got == [0]  # the earlier result still came out before the error
    assert tracker.started == [0, 1, 2]
    assert tracker.cancelled == [2]


async def test_failure_of_the_first_item() -> None:
    async def body(i: int) -> int:
        if i == 0:
            raise Boom("first")
        await spin(3)
        return i

    tracker = Tracker(body)
    with pytest.raises(Boom, match="first"):
        await collect(ordered_map(iter(range(10)), tracker, concurrency=2))
    assert tracker.in_flight == 0


async def test_consumer_stopping_early_cancels_in_flight_calls() -> None:
    never = asyncio.Event()

    async def body(i: int) -> int:
        if i == 0:
            return 0
        await never.wait()
        return i

    tracker = Tracker(body)
    gen = ordered_map(iter(range(10)), tracker, concurrency=3)
    assert await gen.__anext__() == 0
    await gen.aclose()
    assert tracker.in_flight == 0
    assert sorted(tracker.cancelled) == [i for i in tracker.started if i > 0]


async def test_empty_input_yields_nothing_and_calls_nothing() -> None:
    async def body(i: int) -> int:
        raise AssertionError("must not be called")

    assert await collect(ordered_map(iter([]), body, concurrency=4)) == []


async def test_single_item() -> None:
    async def body(i: int) -> int:
        return i * 10

    assert await collect(ordered_map(iter([7]), body, concurrency=4)) == [70]


async def test_concurrency_below_one_rejected() -> None:
    async def body(i: int) -> int:
        return i

    with pytest.raises(ValueError, match="concurrency"):
        await collect(ordered_map(iter([1]), body, concurrency=0))


async def test_results_may_be_none_or_falsy() -> None:
    async def body(i: int) -> Any:
        await spin(3 - i)
        return [None, 0, "", False][i]

    assert await collect(ordered_map(iter(range(4)), body, concurrency=4)) == [None, 0, "", False]
