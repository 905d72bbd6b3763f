"""The callables a stage is given instead of reaching for the world: one home for each type.

Injected, so tests drive time and hear what a run says without patching anything:

- :data:`Notice` ``(level, text)``: a line for the person running it, said at once (a long wait
  the endpoint asked for, a concurrency lowered to fit the open-files limit);
- :data:`Clock`: seconds from a monotonic (or, where said, wall) clock;
- :data:`Sleep`: an awaitable pause of so many seconds;
- :data:`OutputBarrier`: registers a callable that the output runs before any message it holds
  reaches its reader (``read``'s answer cache commits there: an answer is durable before its record).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Notice = Callable[[str, str], None]  # (level, text)
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
OutputBarrier = Callable[[Callable[[], None]], None]


def no_notice(_level: str, _text: str) -> None:
    """A notice nobody hears."""
