"""The ``{{column}}`` syntax: split a template string into text and placeholders, refusing typos.

A malformed placeholder used to be sent literally: every row then sent the same
request, shared one cached answer and came out ``ok``. So the parser is strict
about what opens a placeholder and lenient about everything else:

- ``{{`` opens a placeholder, which must close with ``}}`` before any other
  brace: ``{{text}`` (one closing brace), ``{{ text`` (never closed), ``{{ }}``
  (no name) and ``{{{text}}}`` are errors naming the field and the character
  offset.
- Single braces are ordinary text (prompts quote JSON: ``{"label": ...}``).
  ``{text}`` is remembered as a *suspect*: when ``text`` turns out to be an input
  column, :meth:`RequestTemplate.check_columns` refuses it as a typo of ``{{text}}``.
- ``{{a.b}}`` parses (a column may be named ``a.b``); when no column has that
  name, the column check names the nested field it reaches for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from connector.errors import TemplateError


@dataclass(frozen=True)
class Placeholder:
    """A ``{{name}}`` found in a template: the column it names and where it stands."""

    name: str
    field: str
    offset: int

    @property
    def where(self) -> str:
        """``prompt, character 9``: where a person finds it in their config."""
        return f"{self.field}, character {self.offset}"


# {name} with single braces, not part of {{ or }}: a likely typo of {{name}} when name is a column.
_SINGLE = re.compile(r"(?<!\{)\{\s*([^{}\"'\n:,]+?)\s*\}(?!\})")


def _snippet(text: str, start: int, end: int | None = None) -> str:
    piece = text[start:] if end is None else text[start:end]
    piece = piece.split("\n", 1)[0]
    return piece if len(piece) <= 40 else piece[:37] + "..."


def split(text: str, field: str) -> tuple[list[str], list[Placeholder], list[Placeholder]]:
    """Literal pieces, the placeholders between them, and single-brace suspects.

    ``literals`` has one more item than ``placeholders`` (text before, between and
    after). Raises :class:`TemplateError` naming ``field`` and the offset of a
    malformed placeholder.
    """
    literals: list[str] = []
    found: list[Placeholder] = []
    pos = 0
    while (start := text.find("{{", pos)) >= 0:
        close = text.find("}", start + 2)
        where = f"{field}, character {start}"
        if close < 0:
            raise TemplateError(
                f"{where}: '{_snippet(text, start)}' opens a placeholder that never closes; "
                "write {{column}} with two closing braces"
            )
        inner = text[start + 2:close]
        if text[close:close + 2] != "}}":
            raise TemplateError(
                f"{where}: '{_snippet(text, start, close + 1)}' closes with one brace; "
                f"write {{{{{inner.strip() or 'column'}}}}}"
            )
        if "{" in inner:
            raise TemplateError(
                f"{where}: '{_snippet(text, start, close + 2)}' has a brace inside the placeholder; "
                "write {{column}} with exactly two braces on each side"
            )
        name = inner.strip()
        if not name:
            raise TemplateError(f"{where}: '{text[start:close + 2]}' is an empty placeholder; name a column: "
                                "{{column}}")
        literals.append(text[pos:start])
        found.append(Placeholder(name, field, start))
        pos = close + 2
    literals.append(text[pos:])
    suspects = []
    offset = 0
    for literal, after in zip(literals, [*found, None], strict=True):
        suspects += [Placeholder(m.group(1), field, offset + m.start()) for m in _SINGLE.finditer(literal)]
        if after is not None:
            offset = text.index("}}", after.offset) + 2
    return literals, found, suspects
