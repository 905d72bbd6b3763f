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
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def _next_of(items: AsyncIterator[T]) -> T:
    return await items.__anext__()


async def ordered_map(
    items: Iterator[T] | AsyncIterator[T],
    fn: Callable[[T], Coroutine[Any, Any, R]],
    concurrency: int,
    window: int | None = None,
) -> AsyncIterator[R]:
    """Yield ``fn(item)`` for every item, in input order, ``concurrency`` at a time (each call's coroutine
    runs as a task of its own).

    The first exception raised by ``fn`` cancels the calls still in flight and
    propagates once every earlier result has been yielded.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    calls = _Calls(items, fn, concurrency, max(window or concurrency * 4, concurrency))
    tasks, wake = calls.tasks, calls.wake
    try:
        while True:
            calls.start_more()
            head = tasks.get(calls.next_out)
            if head is None:
                if calls.fetch is None or calls.exhausted or calls.failed:
                    return  # nothing left to start and everything yielded
            elif head.done():
                del tasks[calls.next_out]
                calls.next_out += 1
                yield head.result()
                continue
            wake.clear()
            await wake.wait()  # a call ended, or the source's next item arrived
    finally:
        await calls.cancel()


_NOTHING: Any = object()  # no item now: the source is exhausted, or its next item is not there yet


class _Calls:
    """The calls of one :func:`ordered_map`: started in input order while the bounds allow, each
    signalling its end through one event."""

    def __init__(self, items: Iterator[T] | AsyncIterator[T], fn: Callable[[T], Coroutine[Any, Any, R]],
                 concurrency: int, window: int) -> None:
        self.fn, self.concurrency, self.window = fn, concurrency, window
        self.tasks: dict[int, asyncio.Task[Any]] = {}
        self.wake = asyncio.Event()
        self.in_flight = 0
        self.next_index = 0  # next item to start
        self.next_out = 0  # next result to yield
        self.exhausted = False
        self.failed = False  # once a call raised, start no new one
        self.items = items
        self.pulling: AsyncIterator[Any] | None = items if isinstance(items, AsyncIterator) else None
        self.fetch: asyncio.Task[Any] | None = None  # the pending next item of an async source

    def start_more(self) -> None:
        """Start calls while fewer than ``concurrency`` are in flight and the reorder buffer has room."""
        while not (self.exhausted or self.failed) and self.in_flight < self.concurrency \
                and self.next_index - self.next_out < self.window:
            item = self._next_item()
            if item is _NOTHING:
                return
            # fn's own coroutine is the task (no coroutine around it: a frame more at every resumption)
            task = asyncio.create_task(self.fn(item))
            task.add_done_callback(self._finished)
            self.tasks[self.next_index] = task
            self.next_index += 1
            self.in_flight += 1

    def _next_item(self) -> Any:
        """The next item, or _NOTHING (exhausted; or an async source's item not there yet, being fetched)."""
        pulling = self.pulling
        if pulling is None:
            try:
                return next(self.items)  # type: ignore[arg-type]
            except StopIteration:
                self.exhausted = True
                return _NOTHING
        if self.fetch is None:
            self.fetch = asyncio.create_task(_next_of(pulling))
            self.fetch.add_done_callback(_wake_on(self.wake))
        if not self.fetch.done():
            return _NOTHING
        done, self.fetch = self.fetch, None
        try:
            return done.result()
        except StopAsyncIteration:
            self.exhausted = True
            return _NOTHING

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self.in_flight -= 1
        if not task.cancelled() and task.exception() is not None:
            self.failed = True
        self.wake.set()

    async def cancel(self) -> None:
        """Cancel what is still running (calls, and the pending fetch) and wait for it to end."""
        pending: list[asyncio.Task[Any]] = list(self.tasks.values())
        if self.fetch is not None:
            pending.append(self.fetch)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


async def as_async(items: Iterator[T] | AsyncIterator[T]) -> AsyncIterator[T]:
    """``items`` as an async iterator, whichever kind they come as."""
    if isinstance(items, AsyncIterator):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


def _wake_on(event: asyncio.Event) -> Callable[[Any], None]:
    return lambda _task: event.set()
