"""Progress people can see: an object injected into ``read``, with a do-nothing default.

``read`` calls :meth:`Progress.start` once it knows how many rows to expect (exact
for Parquet and inline rows, estimated from file sizes for CSV and JSONL, unknown
on stdin), :meth:`Progress.advance` after every record, and :meth:`Progress.finish`
at the end. ``advance`` returns lines to tell (the run loop passes them on as notes,
which ``read`` emits as LOG messages), so progress travels with everything else; a terminal bar
(:mod:`connector.pipeline.progress_bar`) draws on stderr instead and returns none.

The per-record call must stay cheap: implementations look at a clock and return
an empty tuple almost every time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from connector.answers.records import Tally
from connector.callbacks import Clock

_NOTHING: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    """Where a read stands."""

    stream: str
    rows: int  # rows done in this run
    total: int | None  # rows this run is expected to do
    estimated: bool  # total is an estimate (file sizes), not a count
    elapsed: float
    prompt_tokens: int
    completion_tokens: int
    errors: int
    cost: float | None

    @property
    def rate(self) -> float:
        return self.rows / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        if self.total is None or self.rate <= 0:
            return None
        return max(self.total - self.rows, 0) / self.rate

    def line(self) -> str:
        """One human line: ``enriched_rows: 1,200 of ~5,000 rows (24%), 41.3 rows/s, ...``."""
        done = f"{self.rows:,}"
        if self.total is not None:
            share = f" ({min(self.rows / self.total, 1):.0%})" if self.total else ""
            done += f" of {'~' if self.estimated else ''}{self.total:,} rows{share}"
        else:
            done += " rows"
        parts = [f"{self.stream}: {done}", f"{self.rate:.1f} rows/s",
                 f"tokens in {self.prompt_tokens:,} out {self.completion_tokens:,}",
                 f"{self.errors} error{'s' if self.errors != 1 else ''}"]
        if self.cost is not None:
            parts.append(f"cost {self.cost:.4f}")
        eta = self.eta_seconds
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        return ", ".join(parts)


def format_duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``2h01m``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress(Protocol):
    """What ``read`` tells about its progress."""

    def start(self, stream: str, total: int | None, estimated: bool) -> None:
        """The read of ``stream`` begins; ``total`` rows are expected (None: unknown)."""

    def advance(self, tally: Tally) -> Iterable[str]:
        """One more record; lines to tell now (usually none)."""

    def finish(self, tally: Tally) -> Iterable[str]:
        """The read ended (completely or not)."""

    def waiting(self, status: str) -> None:
        """No row moves while provider batches run (batch mode): ``status`` says where they are."""


class NoProgress:
    """The default: says nothing."""

    def start(self, stream: str, total: int | None, estimated: bool) -> None:
        pass

    def waiting(self, status: str) -> None:
        pass

    def advance(self, tally: Tally) -> Iterable[str]:
        return _NOTHING

    def finish(self, tally: Tally) -> Iterable[str]:
        return _NOTHING


NO_PROGRESS = NoProgress()


class Tracker:
    """Shared bookkeeping: the stream, the expected total, the clock; makes snapshots."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.stream = ""
        self.total: int | None = None
        self.estimated = False
        self.started = clock()

    def start(self, stream: str, total: int | None, estimated: bool) -> None:
        self.stream, self.total, self.estimated = stream, total, estimated
        self.started = self.clock()

    def snapshot(self, tally: Tally) -> Snapshot:
        rows = tally.rows
        total = self.total
        if total is not None and self.estimated and rows > total:
            total = rows  # an estimate that ran out: never show "1,200 of ~1,000"
        return Snapshot(self.stream, rows, total, self.estimated, self.clock() - self.started,
                        tally.prompt_tokens, tally.completion_tokens, tally.failed,
                        tally.cost if tally.priced else None)


class LogProgress:
    """A LOG line every ``every`` seconds: rows done, rows/s, tokens, errors, cost, ETA."""

    def __init__(self, every: float = 30.0, clock: Clock = time.monotonic) -> None:
        self.every = every
        self._tracker = Tracker(clock)
        self._next = 0.0

    def start(self, stream: str, total: int | None, estimated: bool) -> None:
        self._tracker.start(stream, total, estimated)
        self._next = self._tracker.started + self.every

    def advance(self, tally: Tally) -> Iterable[str]:
        now = self._tracker.clock()
        if now < self._next:
            return _NOTHING
        self._next = now + self.every
        return (self._tracker.snapshot(tally).line(),)

    def finish(self, tally: Tally) -> Iterable[str]:
        return _NOTHING  # the read's own summary line says it all

    def waiting(self, status: str) -> None:
        pass  # each poll of the batches is a LOG line of its own


class Several:
    """Many progress reporters as one (e.g. LOG lines and a terminal bar)."""

    def __init__(self, parts: Sequence[Progress]) -> None:
        self._parts = list(parts)

    def start(self, stream: str, total: int | None, estimated: bool) -> None:
        for part in self._parts:
            part.start(stream, total, estimated)

    def advance(self, tally: Tally) -> Iterable[str]:
        out: list[str] = []
        for part in self._parts:
            out.extend(part.advance(tally))
        return out

    def finish(self, tally: Tally) -> Iterable[str]:
        out: list[str] = []
        for part in self._parts:
            out.extend(part.finish(tally))
        return out

    def waiting(self, status: str) -> None:
        for part in self._parts:
            part.waiting(status)
