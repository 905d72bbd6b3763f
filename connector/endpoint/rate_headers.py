"""What an endpoint's rate-limit headers say: the limits themselves, and when a budget is spent.

Two families, read from every reply (a 429's included):

- ``x-ratelimit-limit-{requests,tokens}``, ``x-ratelimit-remaining-*``, ``x-ratelimit-reset-*``
  (OpenAI, Azure OpenAI, Groq, and OpenAI-compatible servers that copy them) and Together's
  unsuffixed ``x-ratelimit-limit`` / ``-remaining`` / ``-reset`` (requests). The reset is a
  duration (``6m0s``, ``1s``, ``20ms``, or plain seconds): the time until the budget is whole
  again. The window is not named: Groq's requests limit is per day, its tokens limit per minute.
  So the window is worked out from the refill: ``limit - remaining`` units come back in ``reset``
  seconds, so the whole limit takes ``reset * limit / (limit - remaining)``, rounded to the
  nearest of a second, a minute, an hour or a day (the reset is rounded by the server).
- ``anthropic-ratelimit-{requests,input-tokens,output-tokens,tokens}-{limit,remaining,reset}``:
  per minute (Anthropic's documented RPM, ITPM and OTPM), the reset an RFC 3339 time. Input and
  output tokens are separate budgets there; the combined ``tokens`` one is used only without them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_WINDOWS = (1.0, 60.0, 3600.0, 86400.0)  # what a limit's window is rounded to


def parse_reset(value: str, now: float | None = None) -> float | None:
    """Seconds from a reset header: ``1s``, ``6m0s``, ``20ms``, ``0.5`` (seconds), or an RFC 3339
    time (``2026-01-01T00:00:05Z``) less ``now`` (epoch seconds; without it, a time is not read)."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds > 0 else 0.0  # NaN too; "1e400" is infinite, and WaitCap refuses it
    if now is not None and "T" in value and "-" in value:
        try:
            return max(0.0, datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() - now)
        except ValueError:
            return None
    parts = _DURATION.findall(value)
    if not parts:
        return None
    return sum(float(n) * _SCALE[u] for n, u in parts)


@dataclass(frozen=True, slots=True)
class _Family:
    kind: str  # requests, tokens, input_tokens, output_tokens
    limit: str
    remaining: str
    reset: str
    per_minute: bool  # the window is documented as a minute; else worked out from the refill


def _x(kind: str, suffix: str) -> _Family:
    return _Family(kind, f"x-ratelimit-limit{suffix}", f"x-ratelimit-remaining{suffix}",
                   f"x-ratelimit-reset{suffix}", per_minute=False)


def _anthropic(kind: str, name: str) -> _Family:
    stem = f"anthropic-ratelimit-{name}"
    return _Family(kind, f"{stem}-limit", f"{stem}-remaining", f"{stem}-reset", per_minute=True)


FAMILIES = (_x("requests", "-requests"), _x("tokens", "-tokens"), _x("requests", ""),
            _anthropic("requests", "requests"), _anthropic("input_tokens", "input-tokens"),
            _anthropic("output_tokens", "output-tokens"), _anthropic("tokens", "tokens"))
KINDS = ("requests", "tokens", "input_tokens", "output_tokens")
_REMAINING = frozenset(family.remaining for family in FAMILIES)


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _window(limit: float, remaining: float, reset: float | None) -> float | None:
    """The limit's window from its refill, rounded to a second, minute, hour or day; None when
    nothing was spent yet (or the reset is unreadable), so the refill says nothing."""
    if reset is None or reset <= 0 or not limit > remaining:
        return None
    implied = reset * limit / (limit - remaining)
    return min(_WINDOWS, key=lambda w: abs(math.log(implied / w)))


@dataclass(frozen=True, slots=True)
class Learnt:
    """A limit an endpoint announced: its kind, per minute, and the header it came from."""

    kind: str
    per_minute: float
    header: str
    window: float  # seconds
    remaining: float = 0.0  # what is left of the allowance now, by the same reply

    @property
    def limit(self) -> float:
        """The allowance of one window, as announced."""
        return self.per_minute * self.window / 60.0

    def describe(self) -> str:
        unit = self.kind.replace("_", " ")
        told = {1.0: "/s", 60.0: "/min", 3600.0: "/h", 86400.0: "/day"}[self.window]
        said = f"{self.per_minute * self.window / 60:,.0f} {unit}{told}"
        return said if self.window == 60.0 else f"{said} ({self.per_minute:,.1f}/min)"


def limits_from_headers(headers: Mapping[str, str]) -> dict[str, Learnt | None]:
    """The limits ``headers`` announce, by kind; None for a kind announced whose window cannot be
    told yet (nothing of it spent)."""
    found: dict[str, Learnt | None] = {}
    for family in FAMILIES:
        limit = _number(headers.get(family.limit))
        if not limit or found.get(family.kind) is not None:
            continue
        if family.kind == "tokens" and {"input_tokens", "output_tokens"} <= found.keys():
            continue  # Anthropic's combined budget: the separate ones are the finer rule
        remaining = _number(headers.get(family.remaining))
        if family.per_minute:
            window: float | None = 60.0
        else:
            reset = parse_reset(headers.get(family.reset, ""))
            window = _window(limit, remaining, reset) if remaining is not None else None
        found[family.kind] = (Learnt(family.kind, limit * 60.0 / window, family.limit, window, remaining or 0.0)
                              if window else None)
    return found


def hints_from_headers(headers: Mapping[str, str], now: float | None = None) -> tuple[float, str] | None:
    """Seconds to pause when the server says a budget is exhausted, and which budget; else None.
    ``now`` (epoch seconds) reads Anthropic's reset times."""
    if type(headers) is dict and _REMAINING.isdisjoint(headers):
        return None  # most replies (every one of a server that announces no limits): one pass in C, no family read
    pause: tuple[float, str] | None = None
    for family in FAMILIES:
        remaining = headers.get(family.remaining)
        reset = headers.get(family.reset)
        if remaining is None or reset is None:
            continue
        try:
            exhausted = float(remaining) <= 0
        except ValueError:
            continue
        seconds = parse_reset(reset, now)
        if exhausted and seconds and (pause is None or seconds > pause[0]):
            pause = (seconds, f"{family.remaining} is {remaining.strip()}, {family.reset} {reset.strip()}")
    return pause
