"""Whole numbers read from text (a reply's usage, a header, a config value or path): one rule for all.

``str.isdigit()`` also accepts digits ``int()`` refuses ('²', '¹²'), so a check with it alone let a hostile
reply or header raise ValueError where a number was read. A number is read only from ASCII digits.
"""

from __future__ import annotations


def ascii_int(text: str) -> int | None:
    """The whole number ``text`` spells in ASCII digits only (no sign, no space), else None."""
    return int(text) if text.isascii() and text.isdigit() else None
