"""Output columns that come from the config rather than the response template.

- ``output_schema``: each property of the schema is a typed column, filled from
  the validated JSON answer (:mod:`connector.config.output_schema`).
- ``_tool_calls``: when the request template defines ``tools``, the tool calls
  of the normalised reply (the chat-completions form, whichever shape answered).

``catalog`` declares these columns and ``enrich`` fills them, from one object, so
schema and records cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.answers.extract import dig
from connector.config.output_schema import OutputSchema
from connector.config.parts import OutputPart

TOOL_CALLS = "_tool_calls"
TOOL_CALLS_SCHEMA: dict[str, Any] = {
    "type": ["null", "array"],
    "items": {"type": "object"},
    "description": 'tool calls of the answer: [{"id", "type": "function", "function": {"name", "arguments"}}]',
}
_CONTENT = ("choices", 0, "message", "content")
_CALLS = ("choices", 0, "message", "tool_calls")


class ExtraOutputs:
    """The schema-derived and tool-call columns of one config."""

    def __init__(self, schema: OutputSchema | None, tool_calls: bool) -> None:
        self._schema = schema
        self._tool_calls = tool_calls
        self.columns: dict[str, dict[str, Any]] = dict(schema.columns) if schema is not None else {}
        if tool_calls:
            self.columns[TOOL_CALLS] = TOOL_CALLS_SCHEMA

    @classmethod
    def from_config(cls, output: OutputPart) -> ExtraOutputs:
        schema = OutputSchema(output.output_schema) if output.output_schema is not None else None
        return cls(schema, output.tools)

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def extract(self, reply: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The columns of one reply, and a row error (the answer does not match the schema) or None.

        A row error here is the place where a validation retry would start: its text says
        what is wrong in terms the model can be asked to fix.
        """
        out: dict[str, Any] = {}
        problem = None
        if self._schema is not None:
            verdict = self._schema.judge(dig(reply, _CONTENT))
            out.update(verdict.values)
            problem = verdict.problem
        if self._tool_calls:
            calls = dig(reply, _CALLS)
            out[TOOL_CALLS] = calls if isinstance(calls, list) and calls else None
        return out, problem


def extra_output_columns(output: OutputPart) -> dict[str, dict[str, Any]]:
    """Column name -> JSON schema of the config's extra output columns."""
    return ExtraOutputs.from_config(output).columns
