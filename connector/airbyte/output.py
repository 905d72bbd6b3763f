"""Airbyte messages out to standard output: serialised, secrets masked, records in batches.

:class:`MessageWriter` is the CLI's one writer of stdout (``read``, ``check``, ``discover``); the answer cache's
commit is a barrier it runs before each batch goes out (``read``'s ``before_output``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, BinaryIO

from connector.errors import OutputFailed

# Messages are flushed at once when the platform needs to see them promptly;
# RECORDs are written in buffered batches.
_FLUSH_TYPES = frozenset({"STATE", "TRACE", "LOG", "CONNECTION_STATUS", "SPEC", "CATALOG"})

# The longest a record waits in the buffer for others to go out with it (seconds), and the most it holds.
RECORD_DELAY = 0.05
RECORD_BATCH_BYTES = 1 << 16


def _buffered(out: BinaryIO) -> BinaryIO:
    """``out`` with a buffer: PYTHONUNBUFFERED (the image sets it) leaves standard output raw, where a
    write may take only part of its bytes. The buffer writes to the same descriptor through its own file
    object, which closes nothing of ``sys.stdout`` when it goes."""
    if not isinstance(out, io.RawIOBase):
        return out
    return io.BufferedWriter(io.FileIO(out.fileno(), "wb", closefd=False), RECORD_BATCH_BYTES)


class MessageWriter:
    """Writes messages to stdout, masking secrets in everything but record data.

    Records are held and go out in batches (one system call each, not one per record): at
    RECORD_BATCH_BYTES, with the next message of a type in _FLUSH_TYPES, or RECORD_DELAY after the first
    was held. Before any batch goes out, the barriers registered with :meth:`before_output` run: ``read``
    registers its answer cache's commit there, so every answer is durable before its record can be read,
    with one commit per batch instead of one per record.
    """

    def __init__(self, out: BinaryIO) -> None:
        from connector.airbyte.protocol import serialize
        from connector.secrets import Redactor

        self._serialize = serialize  # bound once: an import statement in write() ran once per record
        self._out = _buffered(out)
        self.redact = Redactor()
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._barriers: list[Callable[[], None]] = []
        self._in_barrier = False
        self._flush_due = False  # a flush of the held records is scheduled
        self._failed: OSError | None = None  # what that flush met, raised by the next write

    def before_output(self, barrier: Callable[[], None]) -> None:
        """Run ``barrier`` before any held message goes out (see the class doc)."""
        self._barriers.append(barrier)

    def write(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        line = self._serialize(message)
        if kind != "RECORD" and self.redact:
            line = self.redact(line.decode()).encode()
        try:
            if self._failed is not None:
                raise self._failed
            self._held.append(line)
            self._held_bytes += len(line)
            if kind in _FLUSH_TYPES or self._held_bytes >= RECORD_BATCH_BYTES:
                self.flush()
            elif not self._flush_due:
                self._flush_soon()
        except BrokenPipeError:
            raise
        except OSError as exc:  # a full disk, /dev/full
            raise OutputFailed(f"cannot write to standard output: {exc.strerror or exc}") from None

    def _flush_soon(self) -> None:
        """Records out within RECORD_DELAY even when no STATE follows soon (rows piped in one at a time)."""
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # outside the run: run() flushes at its end
        self._flush_due = True
        loop.call_later(RECORD_DELAY, self._flush_records)

    def _flush_records(self) -> None:
        self._flush_due = False
        try:
            self.flush()
        except OSError as exc:  # the reader went away, or the disk is full: the next write says so
            self._failed = exc

    def flush(self) -> None:
        """The barriers, then every held message out."""
        if self._in_barrier:
            return  # a message a barrier wrote (the cache's warning that it failed) goes out with this batch
        self._in_barrier = True
        try:
            for barrier in self._barriers:
                barrier()
        finally:
            self._in_barrier = False
        held, self._held, self._held_bytes = self._held, [], 0
        if held:
            self._out.write(b"".join(held))
        self._out.flush()
