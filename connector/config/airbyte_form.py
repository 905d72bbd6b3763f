"""The published spec: the strict config schema, reshaped for Airbyte's UI and its acceptance tests.

Two schemas come from :class:`~connector.config.model.SourceConfig`:

- the **strict** schema (:func:`connector.config.specification.strict_schema`) is what
  ``load_config`` validates against: unknown fields are refused with "did you mean",
  and fields that take two forms say so with a type list (``["object", "string"]``).
- the **published** one (``spec`` and ``spec/spec.json``, made here) passes the spec
  checks of Airbyte's connector acceptance tests, so the form renders in Airbyte's UI
  and configs saved today keep validating after an upgrade. Platforms (PyAirbyte
  among them) validate a config against it before ``read``, so it must accept every
  config the strict schema accepts:

  - ``additionalProperties`` is ``true`` everywhere (CAT: test_additional_properties_is_true);
    typos are still refused, by ``load_config``, at ``check``.
  - A field of two JSON types (``request_template``: an object or its JSON text;
    ``timeout``: 30 or "30") has no ``type`` (CAT: test_property_type_is_not_array
    allows one type plus null). Airbyte's UI renders it as a text input, or a text
    area (``multiline``) where the text is JSON.
  - A map (``headers``, ``prices``, ``extra_body``, ...) has no ``type`` either
    (CAT: test_object_not_empty refuses an object without properties): a text area
    in the UI, whose JSON text ``load_config`` reads as the object
    (:func:`json_text_fields` lists where).
  - Top-level fields are grouped (``group``, and the ``groups`` that name them) and
    ordered, so the form reads top to bottom: endpoint, request, input, reliability, cost.
"""

from __future__ import annotations

import copy
from typing import Any

Path = tuple[str, ...]

# The form's groups, top to bottom, and each group's fields in the order a person fills them in.
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("endpoint", "Endpoint", ("url", "api_key", "model", "provider", "api_compatibility", "headers", "timeout",
                              "model_mapping", "tls", "azure", "bedrock", "vertex")),
    ("request", "Request and answer", ("prompt", "system_prompt", "request_template", "tasks", "response_template",
                                       "output_schema", "parameters", "stream", "prompt_cache", "extra_body",
                                       "validation_retries", "null_policy", "null_literal", "embeddings",
                                       "media_columns")),
    ("input", "Input and output", ("input", "stream_name")),
    ("reliability", "Reliability and throughput", ("concurrency", "adaptive_concurrency", "min_concurrency",
                                                   "requests_per_minute", "tokens_per_minute",
                                                   "input_tokens_per_minute", "output_tokens_per_minute", "max_retries",
                                                   "max_wait_seconds", "max_reply_bytes", "on_row_error",
                                                   "on_request_change",
                                                   "max_error_rate", "fallback_models", "fallback_on",
                                                   "context_window", "context_windows", "too_long_policy",
                                                   "truncate_column")),
    ("cost", "Cost and cache", ("max_requests", "max_total_tokens", "prices", "batch", "rows_per_request", "cache")),
)
_PLACE = {field: (gid, i) for gid, _, fields in GROUPS for i, field in enumerate(fields)}
DEFAULT_GROUP = "request"  # a field added to the model without a place here still renders, last in this group
_ALWAYS_SHOW = ("url", "api_key", "model", "prompt")
# A list of objects whose items hold fields of two types (tasks: their parameters) is a JSON text area.
_AS_TEXT: tuple[Path, ...] = (("tasks",),)
_JSON_NOTE = " In a form: its JSON text."


def place_of(field: str, order: int) -> tuple[str, int]:
    """The form group a top-level field is shown in, and its order there (``order``: the model's)."""
    return _PLACE.get(field, (DEFAULT_GROUP, 100 + order))


def _is_map(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "object" and not prop.get("properties")


def _is_list_of_maps(prop: dict[str, Any]) -> bool:
    items = prop.get("items")
    return prop.get("type") == "array" and isinstance(items, dict) and _is_map(items)


def _holds_secret(node: Any) -> bool:
    if isinstance(node, dict):
        return node.get("airbyte_secret") is True or any(_holds_secret(v) for v in node.values())
    if isinstance(node, list):
        return any(_holds_secret(v) for v in node)
    return False


def _untyped(prop: dict[str, Any], json_text: bool) -> dict[str, Any]:
    """``prop`` without its type (and the keywords that only describe one of its forms)."""
    out = {k: v for k, v in prop.items() if k not in ("type", "additionalProperties")}
    if not out.get("items", {}).get("properties"):
        out.pop("items", None)
    if _holds_secret(prop):
        out["airbyte_secret"] = True  # the whole value is stored as a secret (its JSON text, from a form)
    if json_text:
        out["multiline"] = True
        if "JSON" not in out.get("description", ""):
            out["description"] = (out.get("description", "") + _JSON_NOTE).strip()
    return out


def _reshape(schema: dict[str, Any], path: Path, text_fields: list[Path]) -> None:
    """In place: the properties of the object ``schema`` (at ``path``) in their published form."""
    if "additionalProperties" in schema:
        schema["additionalProperties"] = True
    for name, prop in schema.get("properties", {}).items():
        here = (*path, name)
        kind = prop.get("type")
        if isinstance(kind, list) and [t for t in kind if t != "null"] != [kind[0]]:
            # JSON text stands for an object (or a list that is not also a plain string's alternative).
            json_text = "object" in kind or ("array" in kind and "string" not in kind)
            if json_text:
                text_fields.append(here)
            schema["properties"][name] = _untyped(prop, json_text)
        elif _is_map(prop) or _is_list_of_maps(prop) or here in _AS_TEXT:
            text_fields.append(here)
            schema["properties"][name] = _untyped(prop, True)
            if here in _AS_TEXT:
                schema["properties"][name].pop("items", None)
        elif kind == "object":
            _reshape(prop, here, text_fields)
        _open_nested(schema["properties"][name])


def _open_nested(node: Any) -> None:
    """``additionalProperties: true`` wherever a schema is left below a reshaped property."""
    if isinstance(node, dict):
        if node.get("additionalProperties") is not None and node.get("additionalProperties") is not True:
            node["additionalProperties"] = True
        for value in node.values():
            _open_nested(value)
    elif isinstance(node, list):
        for value in node:
            _open_nested(value)


def published(strict: dict[str, Any]) -> tuple[dict[str, Any], list[Path]]:
    """The published connection specification, and the fields whose JSON text stands for an object."""
    spec = copy.deepcopy(strict)
    text_fields: list[Path] = []
    _reshape(spec, (), text_fields)
    spec["additionalProperties"] = True
    for name, prop in spec["properties"].items():
        prop["group"], prop["order"] = place_of(name, prop.get("order", 0))
        if name in _ALWAYS_SHOW:
            prop["always_show"] = True
    used = {prop["group"] for prop in spec["properties"].values()}
    spec["groups"] = [{"id": gid, "title": title} for gid, title, _ in GROUPS if gid in used]
    return spec, text_fields
