"""A live progress bar on stderr, for a person running the connector by hand.

Drawn with `rich <https://github.com/Textualize/rich>`_ when it is installed (the
optional extra ``progress``), else with a plain line rewritten in place. It is
only ever written to the stream it is given (stderr): stdout carries the
protocol messages and must never see a byte of it. The CLI turns it on only when
stderr is a terminal.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from connector.answers.records import Tally
from connector.callbacks import Clock
from connector.pipeline.progress import Snapshot, Tracker, format_duration

_NOTHING: tuple[str, ...] = ()


def rich_available() -> bool:
    try:
        import rich.progress  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Layout:
    """What fits on one terminal line: the stream name, a bar of ``bar`` cells (0: none), the rest."""

    head: str
    bar: int
    tail: str


def layout(snap: Snapshot, width: int) -> Layout:
    """The line for ``snap`` in ``width`` columns, dropping detail before the counts.

    ``1,200/~3,400 rows`` marks an estimated total with ``~`` next to the number it
    qualifies. The widest form that fits wins; on a narrow terminal the stream name,
    then tokens and errors, then the rate and the bar go, so the bar never shrinks
    to a few unreadable cells and the line never wraps (a wrapped line breaks the
    in-place redraw).
    """
    if snap.total:
        share = f"{min(snap.rows / snap.total, 1.0):4.0%}"
        count = f"{snap.rows:,}/{'~' if snap.estimated else ''}{snap.total:,} rows"
    else:
        share, count = "", f"{snap.rows:,} rows"
    rate = f"{snap.rate:.1f} rows/s"
    detail = f"tokens {snap.prompt_tokens + snap.completion_tokens:,}  errors {snap.errors}"
    if snap.cost is not None:
        detail += f"  cost {snap.cost:.4f}"
    eta = snap.eta_seconds
    until = f"ETA {format_duration(eta)}" if eta is not None else ""
    forms = [
        (snap.stream, 24, [share, count, rate, detail, until]),
        (snap.stream, 16, [share, count, rate, until]),
        ("", 12, [share, count, until]),
        ("", 0, [share, count]),
    ]
    for head, bar, parts in forms:
        bar = bar if snap.total else 0
        tail = "  ".join(p for p in parts if p)
        used = len(head) + (bar + 3 if bar else 0) + len(tail) + 1
        if used < width:
            return Layout(head, bar, tail)
    return Layout("", 0, tail[: max(width - 1, 0)])


def render_plain(snap: Snapshot, width: int = 200) -> str:
    """The plain bar's text for one snapshot, fitted to ``width`` columns."""
    shape = layout(snap, width)
    bar = ""
    if shape.bar and snap.total:
        filled = int(min(snap.rows / snap.total, 1.0) * shape.bar)
        bar = f"[{'#' * filled}{'.' * (shape.bar - filled)}]"
    return " ".join(p for p in (shape.head, bar, shape.tail) if p)


def _terminal_width() -> int:
    return shutil.get_terminal_size((100, 24)).columns


class PlainBar:
    """``s [#######.........]  35%  1,200/~3,400 rows  41.3 rows/s  ...  ETA 53s`` rewritten with ``\\r``."""

    def __init__(self, out: TextIO, every: float = 0.2, clock: Clock = time.monotonic,
                 width: Callable[[], int] = _terminal_width) -> None:
        self._out = out
        self._every = every
        self._tracker = Tracker(clock)
        self._next = 0.0
        self._width = width

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

    def waiting(self, status: str) -> None:
        self._out.write(f"\r{self._tracker.stream} {status}\x1b[K")
        self._out.flush()

    def _draw(self, snap: Snapshot) -> None:
        self._out.write("\r" + render_plain(snap, self._width()) + "\x1b[K")
        self._out.flush()


class RichBar:
    """rich's progress bar, laid out by :func:`layout` for the console's width at each redraw."""

    def __init__(self, out: TextIO, every: float = 0.1, clock: Clock = time.monotonic,
                 width: int | None = None) -> None:
        from rich.console import Console

        self._console = Console(file=out, stderr=True, width=width)
        self._every = every
        self._tracker = Tracker(clock)
        self._next = 0.0
        self._bar: Any = None
        self._task: Any = None
        self._bar_column: Any = None

    def start(self, stream: str, total: int | None, estimated: bool) -> None:
        from rich.progress import BarColumn, Progress, TextColumn

        self._tracker.start(stream, total, estimated)
        self._bar_column = BarColumn(bar_width=0)
        self._bar = Progress(
            TextColumn("[bold]{task.fields[head]}"), self._bar_column, TextColumn("{task.fields[tail]}"),
            console=self._console, transient=False, refresh_per_second=5,
        )
        self._task = self._bar.add_task(stream, total=total, head="", tail="")
        self._update(self._tracker.snapshot(Tally()))
        self._bar.start()

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

    def waiting(self, status: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, head=f"{self._tracker.stream} {status}", tail="")

    def _update(self, snap: Snapshot) -> None:
        shape = layout(snap, self._console.width)
        self._bar_column.bar_width = shape.bar
        self._bar.update(self._task, completed=snap.rows, total=snap.total, head=shape.head, tail=shape.tail)


def terminal_bar(out: TextIO, plain: bool = False) -> RichBar | PlainBar:
    """rich's bar when the extra is installed (and ``plain`` is not asked for), else the plain one."""
    if not plain and rich_available():
        return RichBar(out)
    return PlainBar(out)
