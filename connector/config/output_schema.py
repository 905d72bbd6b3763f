"""Structured outputs: a JSON Schema for the answer, its typed columns, and validation.

The schema is checked once (when the config loads); each answer is parsed as a
JSON object (a Markdown code fence around it is tolerated) and validated with
``jsonschema``. A mismatch is described in words a person, or a model asked to
try again, can act on: :attr:`Verdict.problem` is that text (the hook for
validation retries with feedback).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import jsonschema

# The name under which a schema is sent where the API wants one (json_schema.name,
# text.format.name, Anthropic's forced tool).
SCHEMA_NAME = "structured_output"

_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_ANY = ["null", "string", "number", "integer", "boolean", "object", "array"]


def check_schema(schema: Mapping[str, Any]) -> None:
    """ValueError unless ``schema`` is a valid JSON Schema of an object with properties."""
    import jsonschema  # here, not at the top: the dialects import this module, and check runs without it

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise ValueError(f"is not a valid JSON Schema{f' at {where}' if where else ''}: {exc.message}") from None
    kind = schema.get("type")
    if kind != "object" or not isinstance(schema.get("properties"), dict) or not schema["properties"]:
        raise ValueError('must describe an object: {"type": "object", "properties": {...}} '
                         "(each property becomes an output column)")


def nullable(prop: Mapping[str, Any]) -> dict[str, Any]:
    """A property's JSON schema as a column: the same type, null allowed (a failed row has none)."""
    kind = prop.get("type")
    if isinstance(kind, str):
        out: dict[str, Any] = {"type": ["null", kind] if kind != "null" else ["null"]}
    elif isinstance(kind, list):
        out = {"type": ["null", *[k for k in kind if k != "null"]]}
    else:
        out = {"type": list(_ANY)}
    for key in ("description", "items", "properties", "enum", "format"):
        if key in prop:
            out[key] = prop[key]
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def strict_compatible(schema: Any) -> bool:
    """Whether OpenAI's strict mode accepts the schema: every object closed, every property required."""
    if isinstance(schema, list):
        return all(strict_compatible(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False or set(schema.get("required") or ()) != set(props):
            return False
    children = [v for k, v in schema.items() if k in ("properties", "$defs", "definitions")]
    nested = [v for d in children if isinstance(d, dict) for v in d.values()]
    nested += [schema[k] for k in ("items", "anyOf", "allOf", "oneOf") if k in schema]
    return all(strict_compatible(n) for n in nested)


@dataclass(frozen=True)
class Verdict:
    """The columns of one answer, and what is wrong with it (None: valid)."""

    values: dict[str, Any]
    problem: str | None


class OutputSchema:
    """A checked schema: its columns, and ``judge(content)`` for each answer."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        check_schema(schema)
        self.schema = dict(schema)
        import jsonschema

        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        self._validator = cls(schema)
        self.columns: dict[str, dict[str, Any]] = {
            name: nullable(prop if isinstance(prop, dict) else {}) for name, prop in schema["properties"].items()
        }

    def judge(self, content: Any) -> Verdict:
        """Parse and validate one answer. On any problem every column is null: typed columns
        never carry a value of the wrong type."""
        empty = dict.fromkeys(self.columns)
        if not isinstance(content, str) or not content.strip():
            return Verdict(empty, "output_schema: the reply has no text content to parse")
        fenced = _FENCE.match(content)
        try:
            value = orjson.loads(fenced.group(1) if fenced else content)
        except orjson.JSONDecodeError as exc:
            return Verdict(empty, f"output_schema: the answer is not valid JSON ({exc}): {_preview(content)}")
        if not isinstance(value, dict):
            return Verdict(empty, f"output_schema: the answer is JSON but not an object: {_preview(content)}")
        problems = sorted(self._validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
        if problems:
            listed = "; ".join(_describe(e) for e in problems[:3])
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            return Verdict(empty, f"output_schema: the answer does not match the schema: {listed}{more}")
        return Verdict({name: value.get(name) for name in self.columns}, None)


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message


def _preview(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
