"""The async pipeline: items in, bounded concurrency, results out in input order.

:func:`ordered_map` keeps at most ``concurrency`` calls in flight and at most
``window`` results waiting for an earlier, slower one (the reorder buffer), so
memory is bounded whatever the number of rows. Completion is signalled through
one event rather than by scanning the in-flight set, so the bookkeeping per item
is O(1) at any concurrency.

``items`` may also be an async iterator (rows piped in on stdin): the next item is
then awaited in a task of its own, so results keep flowing out while the source
is waiting for its producer, and the event loop is never blocked by a slow pipe.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def _call(fn: Callable[[T], Awaitable[R]], item: T) -> R:
    return await fn(item)


async def _next_of(items: AsyncIterator[T]) -> T:
    return await items.__anext__()


async def ordered_map(
    items: Iterator[T] | AsyncIterator[T],
    fn: Callable[[T], Awaitable[R]],
    concurrency: int,
    window: int | None = None,
) -> AsyncIterator[R]:
    """Yield ``fn(item)`` for every item, in input order, ``concurrency`` at a time.

    The first exception raised by ``fn`` cancels the calls still in flight and
    propagates once every earlier result has been yielded.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    window = max(window or concurrency * 4, concurrency)
    tasks: dict[int, asyncio.Task[R]] = {}
    wake = asyncio.Event()
    in_flight = 0
    next_index = 0  # next item to start
    next_out = 0  # next result to yield
    exhausted = False
    failed = False  # once a call raised, start no new one
    pulling: AsyncIterator[T] | None = items if isinstance(items, AsyncIterator) else None
    fetch: asyncio.Task[T] | None = None  # the pending next item of an async source

    def finished(task: asyncio.Future[R]) -> None:
        nonlocal in_flight, failed
        in_flight -= 1
        if not task.cancelled() and task.exception() is not None:
            failed = True
        wake.set()

    try:
        while True:
            while not (exhausted or failed) and in_flight < concurrency and next_index - next_out < window:
                if pulling is not None:
                    if fetch is None:
                        fetch = asyncio.create_task(_next_of(pulling))
                        fetch.add_done_callback(_wake_on(wake))
                    if not fetch.done():
                        break
                    done, fetch = fetch, None
                    try:
                        item = done.result()
                    except StopAsyncIteration:
                        exhausted = True
                        break
                else:
                    try:
                        item = next(items)  # type: ignore[arg-type]
                    except StopIteration:
                        exhausted = True
                        break
                task = asyncio.create_task(_call(fn, item))
                task.add_done_callback(finished)
                tasks[next_index] = task
                next_index += 1
                in_flight += 1
            head = tasks.get(next_out)
            if head is None:
                if fetch is None or exhausted or failed:
                    return  # nothing left to start and everything yielded
                wake.clear()
                await wake.wait()  # waiting for the source's next item
                continue
            if head.done():
                del tasks[next_out]
                next_out += 1
                yield head.result()
                continue
            wake.clear()
            await wake.wait()
    finally:
        pending: list[asyncio.Task[Any]] = list(tasks.values())
        if fetch is not None:
            pending.append(fetch)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def _wake_on(event: asyncio.Event) -> Callable[[Any], None]:
    return lambda _task: event.set()
