"""Lines of a byte stream (standard input), read by a daemon thread and awaited on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator
from typing import BinaryIO

from connector.errors import InputError

# The longest line read from standard input (the largest CSV row is as large): a stream without line
# breaks (/dev/zero) stops the read here instead of filling memory.
MAX_LINE = 1 << 28


def _too_long(number: int) -> InputError:
    return InputError(f"input.path '-': stdin line {number:,} is longer than {MAX_LINE >> 20} MB without a line "
                      "break; standard input must carry one JSON object (or Airbyte message) per line")


def _lines_of(stream: BinaryIO) -> Iterator[bytes]:
    """The stream's lines. A real file descriptor is read with ``os.read``, not through Python's
    buffered reader: a daemon thread blocked inside that reader holds its lock, and the
    interpreter aborts when it needs the lock at exit (a pipe closed downstream, a spend guard)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    if fd < 0:  # a stream with no descriptor (tests pass io.BytesIO): whole lines, then measured
        for number, line in enumerate(stream, 1):
            if len(line) > MAX_LINE:
                raise _too_long(number)
            yield line
        return
    pending = bytearray()  # the start of a line whose break has not come yet
    number = 0
    while chunk := os.read(fd, 1 << 16):
        end = chunk.rfind(b"\n") + 1
        if not end:
            pending += chunk
            if len(pending) > MAX_LINE:
                raise _too_long(number + 1)
            continue
        lines = (bytes(pending) + chunk[: end - 1]).split(b"\n")
        if any(len(line) > MAX_LINE for line in lines):
            raise _too_long(number + 1 + next(i for i, line in enumerate(lines) if len(line) > MAX_LINE))
        number += len(lines)
        for line in lines:
            yield line + b"\n"
        pending = bytearray(chunk[end:])
    if pending:
        yield bytes(pending)


class Lines:
    """Lines of a binary stream, read by a daemon thread, awaited on the event loop.

    At most ``buffered`` lines wait in memory; the thread blocks until the loop takes some.
    """

    def __init__(self, stream: BinaryIO, buffered: int) -> None:
        self._stream = stream
        self._room = threading.Semaphore(buffered)
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._done = False
        threading.Thread(target=self._pump, name="stdin-reader", daemon=True).start()

    def _put(self, item: bytes | BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening any more
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _pump(self) -> None:
        try:
            for line in _lines_of(self._stream):
                self._room.acquire()
                if self._closed:
                    return
                self._put(line)
        except Exception as exc:  # whatever stops the reader must reach the loop, or it waits forever
            self._put(exc)
            return
        self._put(None)

    async def take(self, most: int) -> list[bytes] | None:
        """The next lines (at least one, at most ``most``, whatever is there); None at the end."""
        if self._done:
            return None
        out: list[bytes] = []
        item = await self._queue.get()
        while True:
            if item is None:
                self._done = True
                break
            if isinstance(item, BaseException):
                raise InputError(f"input: reading standard input failed: {item}")
            out.append(item)
            self._room.release()
            if len(out) >= most or self._queue.empty():
                break
            item = self._queue.get_nowait()
        return out or None

    async def take_for(self, most: int, seconds: float) -> list[bytes] | None:
        """Like :meth:`take`, but keep collecting for up to ``seconds`` (to infer columns from more rows)."""
        first = await self.take(most)
        if first is None:
            return None
        deadline = self._loop.time() + seconds
        while len(first) < most and not self._done:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                break
            try:
                more = await asyncio.wait_for(self.take(most - len(first)), remaining)
            except asyncio.TimeoutError:
                break
            if more is None:
                break
            first.extend(more)
        return first

    def close(self) -> None:
        self._closed = True
        self._room.release()
