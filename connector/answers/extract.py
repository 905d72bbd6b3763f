"""Reply -> output columns: dotted paths into the normalised reply, and JSON answers parsed and typed.

Every dialect normalises its replies to the chat-completion shape first, so the
paths here (``choices.0.message.content``) hold whatever API shape answered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import orjson

from connector.config.sections import ResponseTemplate
from connector.digits import ascii_int


class Extras(Protocol):
    """Columns that come from the config rather than the response template (:mod:`connector.answers.extra_columns`)."""

    @property
    def names(self) -> list[str]:
        """Their names, in order."""

    def extract(self, reply: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        """Their values for one reply, and a row error or None."""


def compile_path(path: str) -> tuple[str | int, ...]:
    """A dotted path (``choices.0.message.content``) as steps; digits are list indexes."""
    return tuple(int(p) if ascii_int(p.removeprefix("-")) is not None else p for p in path.split("."))


def dig(value: Any, path: Sequence[str | int]) -> Any:
    """Follow a compiled dotted path; None where the reply has no such field."""
    for step in path:
        if isinstance(step, int) and isinstance(value, list):
            if -len(value) <= step < len(value):
                value = value[step]
                continue
            return None
        if isinstance(value, dict):
            value = value.get(str(step))
            if value is None:
                return None
            continue
        return None
    return value


_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def parse_json_object(text: str) -> dict[str, Any]:
    """Parse a model's JSON answer, tolerating a Markdown code fence around it."""
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the answer is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"the answer is JSON but not an object (a {type(value).__name__})")
    return value


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


CONTENT_PATH = compile_path("choices.0.message.content")


class ResponseExtractor:
    """Takes the configured output columns out of a (normalised) chat-completion reply.

    ``extras`` (:class:`connector.answers.extra_columns.ExtraOutputs`) adds the columns of
    ``output_schema`` and ``_tool_calls``; its row error counts like the template's.
    """

    def __init__(self, template: ResponseTemplate, extras: Extras | None = None) -> None:
        self.template = template
        self._paths = [(name, compile_path(path)) for name, path in template.columns.items()]
        self._json_columns = list(template.json_columns.items())
        self._extras = extras

    @property
    def column_names(self) -> list[str]:
        extra = list(self._extras.names) if self._extras is not None else []
        return [name for name, _ in self._paths] + [name for name, _ in self._json_columns] + extra

    def extract(self, reply: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        """Output columns for one reply, and a row error (or None)."""
        out, error = self._extract(reply)
        if self._extras is not None:
            extra, problem = self._extras.extract(reply)
            out.update(extra)
            error = error or problem
        return out, error

    def _extract(self, reply: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        out = {name: dig(reply, path) for name, path in self._paths}
        if not self._json_columns:
            return out, None
        for name, _ in self._json_columns:
            out[name] = None
        content = dig(reply, CONTENT_PATH)
        if not isinstance(content, str):
            return out, "json_columns: the reply has no text content to parse"
        try:
            parsed = parse_json_object(content)
        except ValueError as exc:
            return out, f"json_columns: {exc}"
        problems = []
        for name, kind in self._json_columns:
            value = parsed.get(name)
            if value is None:
                problems.append(f"'{name}' missing")
            elif kind == "number" and isinstance(value, int) and not isinstance(value, bool):
                out[name] = float(value)
            elif _TYPE_CHECKS[kind](value):
                out[name] = value
            else:
                problems.append(f"'{name}' is {type(value).__name__}, expected {kind}")
        error = f"json_columns: {', '.join(problems)}" if problems else None
        return out, error
