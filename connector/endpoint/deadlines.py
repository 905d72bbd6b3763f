"""The ``timeout`` deadline of every attempt, kept by one watchdog instead of a timer each.

``asyncio.timeout`` arms a timer per use: a handle pushed on the event loop's heap, and
cancelled (left on the heap until swept) when the attempt ends. On the row path that was the
largest cost this round added: about 40,000 of the ~990,000 CPU instructions a row costs
(callgrind, one request in flight), and more with hundreds in flight, where the heap is deep.

Every attempt of one client has the same length, so the attempts in flight, kept in the order
they began, are also in the order of their deadlines. A watchdog that wakes every twentieth of
the deadline (at most once a second) cancels the attempts past theirs, from the front, and stops
at the first that is not; an attempt itself costs a dict insert and delete. The price is
precision: an attempt ends at most one tick (5 %) after its deadline.

Cancellation follows ``asyncio.timeout``: the watchdog cancels the attempt's task, and the
``CancelledError`` becomes :class:`TimeoutError` only when nobody else asked to cancel the task
meanwhile (a Ctrl-C, a stopped run still cancels it).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

# The watchdog wakes this often, as a share of the deadline, and at least this often in seconds.
_TICKS_PER_DEADLINE = 20
_LONGEST_TICK_S = 1.0


class Deadlines:
    """Runs awaitables under one client's ``seconds`` deadline."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._tick = min(_LONGEST_TICK_S, seconds / _TICKS_PER_DEADLINE)
        self._due: dict[asyncio.Task[Any], float] = {}  # in the order the attempts began
        self._expired: set[asyncio.Task[Any]] = set()  # cancelled by the watchdog, not yet back
        self._watch: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, work: Awaitable[T]) -> T:
        """``work``; past the deadline it is cancelled and TimeoutError raised."""
        if sys.version_info < (3, 11):  # no Task.uncancel: a timer (and a task) per attempt
            return await asyncio.wait_for(work, self.seconds)
        with self.watch():
            return await work

    def watch(self) -> _Watch:
        """The current task under the deadline until the ``with`` block it opens ends (3.11+): past it, the
        task is cancelled and the block ends in TimeoutError. An attempt awaited inside the block directly
        has no coroutine between it and its caller, as :meth:`run` puts one."""
        if sys.version_info < (3, 11):
            raise RuntimeError("Deadlines.watch needs Task.uncancel (Python 3.11); use run")
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadlines.watch must be used inside a task")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop: the old one's watchdog is gone with it
            self._due.clear()
            self._expired.clear()
            self._loop, self._watch = loop, None
        self._due[task] = loop.time() + self.seconds
        if self._watch is None:
            self._watch = loop.call_later(self._tick, self._sweep)
        return _Watch(self, task, task.cancelling())

    def _timed_out(self, task: asyncio.Task[Any], cancelling: int) -> bool:
        """After ``task`` was cancelled: True when the watchdog did it (that request withdrawn) and nobody else
        asked to cancel it meanwhile (a Ctrl-C, a stopped run: that one stays a cancellation)."""
        if sys.version_info < (3, 11):
            return False
        return self._release(task) and task.cancelling() <= cancelling

    def _release(self, task: asyncio.Task[Any]) -> bool:
        """Forget ``task`` (again is harmless); True when the watchdog had cancelled it, and that
        request to cancel is withdrawn."""
        self._due.pop(task, None)
        if task not in self._expired:
            return False
        self._expired.discard(task)
        if sys.version_info >= (3, 11):  # always, in fact: run() took this path only there
            task.uncancel()
        return True

    def _sweep(self) -> None:
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        for task, due in self._due.items():
            if due > now:
                break
            if task not in self._expired:
                self._expired.add(task)
                task.cancel()  # delivered when the task next runs: the dict is not changed meanwhile
        self._watch = loop.call_later(self._tick, self._sweep) if self._due else None


class _Watch:
    """One task under its client's deadline for the length of a ``with`` block."""

    __slots__ = ("_cancelling", "_deadlines", "_task")

    def __init__(self, deadlines: Deadlines, task: asyncio.Task[Any], cancelling: int) -> None:
        self._deadlines, self._task, self._cancelling = deadlines, task, cancelling

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if kind is not None and issubclass(kind, asyncio.CancelledError):
            if self._deadlines._timed_out(self._task, self._cancelling):
                raise TimeoutError from None
        else:
            self._deadlines._release(self._task)
