"""Turn a raw config dict into a :class:`SourceConfig`, or a ConfigError that reads well.

Every message names the field by its dotted path and says what to do, e.g.
``timeout: must be > 0``. Values of secret fields are never echoed.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from connector.config import aisquared
from connector.config.model import SourceConfig
from connector.config.schema_precheck import certainly_valid
from connector.config.specification import json_text_fields, validation_schema
from connector.errors import ConfigError
from connector.secrets import is_secret_field

if TYPE_CHECKING:
    import jsonschema


def _path(parts: Any) -> str:
    return ".".join(str(p) for p in parts) or "config"


def _show(path: str, value: Any) -> str:
    if is_secret_field(path):
        return "a secret value"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_JSON_TYPES = {
    "number": "a number",
    "integer": "a whole number",
    "string": "text",
    "boolean": "true or false",
    "object": "a JSON object",
    "array": "a list",
}


def _schema_message(error: jsonschema.ValidationError) -> tuple[str, str]:
    path = _path(error.absolute_path)
    kind, expected = error.validator, error.validator_value
    if kind == "exclusiveMinimum":
        return path, f"must be > {expected} (got {_show(path, error.instance)})"
    if kind == "minimum":
        return path, f"must be >= {expected} (got {_show(path, error.instance)})"
    if kind == "maximum":
        return path, f"must be <= {expected} (got {_show(path, error.instance)})"
    if kind == "type":
        wanted = " or ".join(_JSON_TYPES.get(t, t) for t in ([expected] if isinstance(expected, str) else expected))
        return path, f"must be {wanted} (got {_show(path, error.instance)})"
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else str(error.message)
        return _path([*error.absolute_path, missing]), "is required"
    if kind == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        extras = sorted(set(error.instance) - set(allowed))
        notes = []
        for extra in extras:
            close = difflib.get_close_matches(extra, allowed, n=1)
            notes.append(f"'{extra}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        return path, f"unknown field {', '.join(notes)}; allowed: {', '.join(allowed)}"
    if kind == "enum":
        return path, f"must be one of {', '.join(map(str, expected))} (got {_show(path, error.instance)})"
    if kind == "pattern":
        if path == "timeout":
            return path, f"must be a number of seconds such as 30 (got {_show(path, error.instance)})"
        return path, f"must match {expected} (got {_show(path, error.instance)})"
    return path, error.message if not is_secret_field(path) else f"is invalid ({kind})"


def _pydantic_messages(exc: ValidationError, prefix: tuple[str, ...] = ()) -> list[str]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        path = _path([*prefix, *err["loc"]])
        msg = err["msg"]
        for noise in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(noise)
        if err["type"] == "greater_than":
            msg = f"must be > {err['ctx']['gt']:g}"
        # Model-level rules name their own fields in the message.
        out.append(f"{path}: {msg}" if err["loc"] or prefix else msg)
    return out


# Settings objects whose null members mean "not set" (forms often send nulls for
# empty optional fields). Inside templates, rows and extra_body a null is data.
_SETTINGS_OBJECTS = ("input", "parameters", "cache", "tls", "azure", "bedrock", "vertex")


def _drop_unset(raw: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in raw.items() if v is not None}
    for key in _SETTINGS_OBJECTS:
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if v is not None}
    return out


def _types_at(path: tuple[str, ...]) -> set[str]:
    node: Any = validation_schema()
    for step in path:
        node = node.get("properties", {}).get(step, {})
    kind = node.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def _read_json_text(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with the JSON text a form gives for an object (or list) field read as that object.

    Airbyte's UI has no input for a map, so the published spec shows those fields as text
    areas (:mod:`connector.config.airbyte_form`); configs written by hand keep the object form.
    """
    out = dict(raw)
    for path in json_text_fields():
        *outer, name = path
        node = out
        for step in outer:  # copied on the way down: the caller's config stays as it was
            if not isinstance(node.get(step), dict):
                break
            node[step] = dict(node[step])
            node = node[step]
        else:
            if isinstance(node.get(name), str):
                node[name] = _parsed(node[name], path)
    return out


def _parsed(text: str, path: tuple[str, ...]) -> Any:
    """The object or list ``text`` spells; ``text`` itself where plain text is a valid value."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if "string" in _types_at(path):
            return text  # tool_choice "auto", a template's text: the model judges it
        raise ConfigError(f"Invalid config: {'.'.join(path)}: is not valid JSON ({exc.msg} at line {exc.lineno} "
                          f"column {exc.colno}); give a JSON object or its JSON text") from None
    return value if isinstance(value, (dict, list)) else text


def _check_schema(raw: dict[str, Any]) -> None:
    """ConfigError naming every field that breaks the strict schema. jsonschema (~33 ms of CPU to import)
    is asked only when the precheck cannot vouch for the config; its errors make the messages."""
    schema = validation_schema()
    if certainly_valid(schema, raw):
        return
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    problems = sorted({"{}: {}".format(*_schema_message(e)) for e in validator.iter_errors(raw)})
    if problems:
        raise ConfigError("Invalid config: " + "; ".join(problems))


def load_config(raw: Any, note: Callable[[str], None] | None = None) -> SourceConfig:
    """Validate ``raw`` against the spec's JSON schema, then parse it into the model.

    A config saved by AI Squared is read in its own names first (:mod:`connector.config.aisquared`);
    ``note`` hears what was set aside or changed doing so (commands show it as a LOG line): that,
    and a trailing newline removed from ``api_key``.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"config: must be a JSON object (got {type(raw).__name__})")
    raw = aisquared.translate(_drop_unset(raw), note or (lambda _: None))
    raw = _read_json_text(raw)
    _check_schema(raw)
    try:
        config = SourceConfig.model_validate(raw, context={"note": note or (lambda _: None)})
    except ValidationError as exc:
        raise ConfigError("Invalid config: " + "; ".join(_pydantic_messages(exc))) from None
    return config
