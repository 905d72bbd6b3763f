"""A live progress bar on stderr, for a person running the connector by hand.

Drawn with `rich <https://github.com/Textualize/rich>`_ when it is installed (the
optional extra ``progress``), else with a plain line rewritten in place. It is
only ever written to the stream it is given (stderr): stdout carries the
protocol messages and must never see a byte of it. The CLI turns it on only when
stderr is a terminal.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, TextIO

from connector.answers.records import Tally
from connector.pipeline.progress import Clock, Snapshot, Tracker, format_duration

_NOTHING: tuple[str, ...] = ()


def rich_available() -> bool:
    try:
        import rich.progress  # noqa: F401
    except ImportError:
        return False
    return True


class PlainBar:
    """``[#######.............]  35% 1,200/~3,400 rows  41.3 rows/s  ETA 53s  ...`` rewritten with ``\\r``."""

    WIDTH = 24

    def __init__(self, out: TextIO, every: float = 0.2, clock: Clock = time.monotonic) -> None:
        self._out = out
        self._every = every
        self._tracker = Tracker(clock)
        self._next = 0.0

    def start(self, stream: str, total: int | None, estimated: bool) -> None:
        self._tracker.start(stream, total, estimated)

    def advance(self, tally: Tally) -> Iterable[str]:
        now = self._tracker.clock()
        if now >= self._next:
            self._next = now + self._every
            self._draw(self._tracker.snapshot(tally))
        return _NOTHING

    def finish(self, tally: Tally) -> Iterable[str]:
        self._draw(self._tracker.snapshot(tally))
        self._out.write("\n")
        self._out.flush()
        return _NOTHING

    def _draw(self, snap: Snapshot) -> None:
        self._out.write("\r" + render_plain(snap, self.WIDTH) + "\x1b[K")
        self._out.flush()


def render_plain(snap: Snapshot, width: int = 24) -> str:
    """The plain bar's text for one snapshot."""
    if snap.total:
        share = min(snap.rows / snap.total, 1.0)
        filled = int(share * width)
        bar = f"[{'#' * filled}{'.' * (width - filled)}] {share:4.0%} "
        count = f"{snap.rows:,}/{'~' if snap.estimated else ''}{snap.total:,} rows"
    else:
        bar, count = "", f"{snap.rows:,} rows"
    text = f"{snap.stream} {bar}{count}  {snap.rate:.1f} rows/s  tokens {snap.prompt_tokens + snap.completion_tokens:,}"
    text += f"  errors {snap.errors}"
    if snap.cost is not None:
        text += f"  cost {snap.cost:.4f}"
    eta = snap.eta_seconds
    if eta is not None:
        text += f"  ETA {format_duration(eta)}"
    return text


class RichBar:
    """rich's progress bar: rows, percentage, rows/s, tokens, errors, elapsed and ETA."""

    def __init__(self, out: TextIO, every: float = 0.1, clock: Clock = time.monotonic) -> None:
        from rich.console import Console

        self._console = Console(file=out, stderr=True)
        self._every = every
        self._tracker = Tracker(clock)
        self._next = 0.0
        self._bar: Any = None
        self._task: Any = None

    def start(self, stream: str, total: int | None, estimated: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self._tracker.start(stream, total, estimated)
        self._bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=20), TaskProgressColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} rows/s, {task.fields[tokens]} tokens, {task.fields[errors]} errors"
                       "{task.fields[cost]}"),
            TextColumn("ETA"), TimeRemainingColumn(),
            console=self._console, transient=False, refresh_per_second=5,
        )
        self._bar.start()
        label = f"{stream} (~total)" if estimated and total is not None else stream
        self._task = self._bar.add_task(label, total=total, rate="0.0", tokens=0, errors=0, cost="")

    def advance(self, tally: Tally) -> Iterable[str]:
        now = self._tracker.clock()
        if self._bar is not None and now >= self._next:
            self._next = now + self._every
            self._update(self._tracker.snapshot(tally))
        return _NOTHING

    def finish(self, tally: Tally) -> Iterable[str]:
        if self._bar is not None:
            self._update(self._tracker.snapshot(tally))
            self._bar.stop()
            self._bar = None
        return _NOTHING

    def _update(self, snap: Snapshot) -> None:
        self._bar.update(self._task, completed=snap.rows, total=snap.total, rate=f"{snap.rate:.1f}",
                         tokens=f"{snap.prompt_tokens + snap.completion_tokens:,}", errors=snap.errors,
                         cost="" if snap.cost is None else f", cost {snap.cost:.4f}")


def terminal_bar(out: TextIO, plain: bool = False) -> RichBar | PlainBar:
    """rich's bar when the extra is installed (and ``plain`` is not asked for), else the plain one."""
    if not plain and rich_available():
        return RichBar(out)
    return PlainBar(out)
