"""Configs saved by AI Squared's "OpenAI Compatible Endpoint" source, read as this connector's.

AI Squared (Multiwoven, ``generic_open_ai``) stores::

    {"url": "...", "api_key": "...", "is_stream": false, "config": {"timeout": "30"},
     "request_format": "<JSON text of a request body>",
     "response_format": "<JSON text of a sample reply>"}

Its names are mapped to ours before validation: ``is_stream`` -> ``stream``,
``config.timeout`` -> ``timeout`` (a numeric string, as stored), ``request_format``
-> ``request_template`` (JSON text, as stored). ``response_format`` is a sample of
what the endpoint answers, not a choice of columns: it is set aside with a note,
and the output columns come from ``response_template`` (default: ``answer`` =
``choices.0.message.content``). A ``response_format`` that is already in our
``response_template`` form (``columns`` / ``json_columns``) is used as one.
Everything AI Squared cannot have stored (an ``input``, a ``prompt``) is ours.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from connector.errors import ConfigError

# AI Squared's name -> ours.
RENAMED = {"is_stream": "stream", "request_format": "request_template"}
_CONFIG_KEYS = ("timeout",)
_TEMPLATE_KEYS = frozenset({"columns", "json_columns"})


def _move(raw: dict[str, Any], theirs: str, ours: str, value: Any) -> None:
    if ours in raw and raw[ours] != value:
        raise ConfigError(f"Invalid config: {theirs} (AI Squared's name) and {ours} are both set; keep {ours}")
    raw[ours] = value


def _as_response_template(value: Any) -> dict[str, Any] | None:
    """``value`` when it is (the JSON text of) our response_template form, else None."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, dict) and value and set(value) <= _TEMPLATE_KEYS:
        return value
    return None


def translate(raw: dict[str, Any], note: Callable[[str], None]) -> dict[str, Any]:
    """``raw`` with AI Squared's fields renamed to ours; ``note`` hears what was set aside."""
    if not any(key in raw for key in (*RENAMED, "config", "response_format")):
        return raw
    out = dict(raw)
    for theirs, ours in RENAMED.items():
        if theirs in out:
            _move(out, theirs, ours, out.pop(theirs))
    if "config" in out:
        settings = out.pop("config")
        if not isinstance(settings, dict):
            raise ConfigError("Invalid config: config: must be a JSON object such as {\"timeout\": \"30\"} "
                              "(AI Squared's HTTP settings)")
        unknown = sorted(set(settings) - set(_CONFIG_KEYS))
        if unknown:
            raise ConfigError(f"Invalid config: config: unknown field {', '.join(map(repr, unknown))}; AI Squared's "
                              "config object carries only timeout")
        if "timeout" in settings:
            _move(out, "config.timeout", "timeout", settings["timeout"])
    if "response_format" in out:
        sample = out.pop("response_format")
        template = _as_response_template(sample)
        if template is not None:
            _move(out, "response_format", "response_template", template)
        else:
            note("response_format (AI Squared's sample reply) is not used: output columns come from "
                 "response_template" + ("" if "response_template" in out else
                                        " (not set: the answer column takes choices.0.message.content)"))
    return out
