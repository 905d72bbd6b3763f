"""Which ``response_template`` paths select nothing in a reply, and which never could.

A path that matches nothing gives every row a null column and ``_status: ok``, so
``check`` holds its probe's reply against each path before any money is spent:

- **error**: the path cannot exist in the (normalised chat-completion) shape: it
  steps into text or a number (``choices.0.message.content.text``), names a list
  without an index (``choices.message``), misspells a key the reply has
  (``choices.0.mesage``), or names a key a choice or its message never carries
  (``choices.0.delta.content``: streams are assembled into ``message``).
- **warning**: the key is simply absent from this reply; a full answer may have it
  (the probe asks for one token, so ``tool_calls`` or ``reasoning_content`` may be
  missing from it only).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connector.answers.extract import compile_path

# Keys a normalised choice and its message may carry, across the servers and shapes we know.
# Under these two levels a key outside the list cannot appear; elsewhere (top level, usage,
# server extras such as llama.cpp's timings) any key might.
_CHOICE_KEYS = frozenset({"index", "message", "finish_reason", "logprobs", "stop_reason", "native_finish_reason",
                          "matched_stop"})
_MESSAGE_KEYS = frozenset({"role", "content", "tool_calls", "function_call", "refusal", "reasoning_content",
                           "reasoning", "reasoning_details", "annotations", "audio", "thinking", "name"})


@dataclass(frozen=True)
class PathFinding:
    """One output column whose path selects nothing in the reply."""

    column: str
    path: str
    reason: str
    impossible: bool  # True: an error (the path can never match); False: a warning

    def __str__(self) -> str:
        return f"response_template.columns.{self.column} ('{self.path}') {self.reason}"


def _closed_keys(walked: Sequence[str | int]) -> frozenset[str] | None:
    """The closed vocabulary at this depth of the chat-completion shape, or None (open)."""
    if len(walked) == 2 and walked[0] == "choices" and isinstance(walked[1], int):
        return _CHOICE_KEYS
    if len(walked) == 3 and walked[0] == "choices" and walked[2] == "message":
        return _MESSAGE_KEYS
    return None


def _judge(reply: Mapping[str, Any], path: Sequence[str | int]) -> tuple[str, bool] | None:
    """Why ``path`` selects nothing in ``reply`` (and whether it never could), or None when it selects."""
    value: Any = reply
    walked: list[str | int] = []
    for step in path:
        here = ".".join(map(str, walked)) or "the reply"
        if isinstance(value, list):
            if not isinstance(step, int):
                return f"steps into the list {here} with '{step}'; a list takes an index such as {here}.0", True
            if not -len(value) <= step < len(value):
                return f"selects nothing: {here} has {len(value)} item(s) in the probe's reply", False
            value = value[step]
        elif isinstance(value, dict):
            key = str(step)
            if value.get(key) is None:
                if key in value:
                    return f"selects nothing: {here}.{key} is null in the probe's reply", False
                close = difflib.get_close_matches(key, [str(k) for k in value], n=1, cutoff=0.8)
                if close:
                    return f"names '{key}', which {here} does not have (did you mean '{close[0]}'?)", True
                closed = _closed_keys(walked)
                if closed is not None and key not in closed:
                    shape = "a choice" if len(walked) == 2 else "a message"
                    note = " (streamed replies are assembled into choices.N.message)" if key == "delta" else ""
                    return (f"names '{key}', which {shape} never has{note}; "
                            f"it has: {', '.join(sorted(closed))}"), True
                return f"selects nothing: {here} has no '{key}' in the probe's reply", False
            value = value[key]
        else:
            kind = "text" if isinstance(value, str) else type(value).__name__
            return f"steps into {here}, which is {kind}, not an object or a list", True
        walked.append(step)
    return None


def unmatched(columns: Mapping[str, str], reply: Mapping[str, Any]) -> list[PathFinding]:
    """A finding for each output column (name -> dotted path) whose path selects nothing in ``reply``."""
    out = []
    for column, path in columns.items():
        verdict = _judge(reply, compile_path(path))
        if verdict is not None:
            out.append(PathFinding(column, path, *verdict))
    return out
