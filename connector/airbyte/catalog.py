"""The streams this source offers and their JSON schemas; reading a configured catalog.

``<stream_name>`` (default ``enriched_rows``): the input's columns, the output
columns of the response template, and the metadata columns of :mod:`enrich`.
``models``: what ``GET /models`` lists, offered only when the endpoint has it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from connector.answers.columns import extra_output_columns
from connector.answers.records import META_COLUMNS, ROW_NUMBER
from connector.config.model import MODELS_STREAM as MODELS_STREAM
from connector.config.model import SourceConfig
from connector.config.sections import ResponseTemplate
from connector.errors import CatalogError, ConfigError
from connector.rows.columns import field_schema

SYNC_MODES = ("full_refresh", "incremental")

_PATH_TYPES = {
    "content": {"type": ["null", "string"]},
    "finish_reason": {"type": ["null", "string"]},
    "model": {"type": ["null", "string"]},
    "id": {"type": ["null", "string"]},
    "role": {"type": ["null", "string"]},
    "reasoning_content": {"type": ["null", "string"]},
    "created": {"type": ["null", "integer"]},
}
_ANY = {"type": ["null", "string", "number", "integer", "boolean", "object", "array"]}


def _path_schema(path: str) -> dict[str, Any]:
    last = path.rsplit(".", 1)[-1]
    if last.endswith("tokens"):
        return {"type": ["null", "integer"]}
    return dict(_PATH_TYPES.get(last, _ANY))


def output_columns(template: ResponseTemplate) -> dict[str, dict[str, Any]]:
    """Output column name -> JSON schema."""
    out = {name: _path_schema(path) for name, path in template.columns.items()}
    for name, kind in template.json_columns.items():
        out[name] = {"type": ["null", kind]}
    return out


def enriched_schema(input_schema: pa.Schema, config: SourceConfig) -> dict[str, Any]:
    """The enriched stream's JSON schema; fails when an output column shadows an input one."""
    properties: dict[str, Any] = {f.name: field_schema(f) for f in input_schema}
    outputs = output_columns(config.response_template)
    outputs.update(extra_output_columns(config))  # output_schema properties, _tool_calls
    clash = sorted((set(outputs) | set(META_COLUMNS)) & set(properties))
    if clash:
        raise ConfigError(
            f"response_template: output column(s) {', '.join(clash)} have the name of an input column; "
            "rename them in response_template.columns or json_columns"
        )
    properties.update(outputs)
    properties.update(META_COLUMNS)
    return {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
            "additionalProperties": True, "properties": properties}


def primary_key(config: SourceConfig, input_schema: pa.Schema) -> str:
    key = config.input.primary_key
    if key is None:
        return ROW_NUMBER
    if key not in input_schema.names:
        raise ConfigError(
            f"input.primary_key: column '{key}' is not in the input; columns are: {', '.join(input_schema.names)}"
        )
    return key


def enriched_stream(config: SourceConfig, input_schema: pa.Schema) -> dict[str, Any]:
    return {
        "name": config.stream_name,
        "json_schema": enriched_schema(input_schema, config),
        "supported_sync_modes": list(SYNC_MODES),
        "source_defined_cursor": True,
        "default_cursor_field": [ROW_NUMBER],
        "source_defined_primary_key": [[primary_key(config, input_schema)]],
        "is_resumable": True,
    }


MODEL_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {"id": {"type": "string"}},
}


def models_stream() -> dict[str, Any]:
    return {
        "name": MODELS_STREAM,
        "json_schema": MODEL_SCHEMA,
        "supported_sync_modes": ["full_refresh"],
        "source_defined_primary_key": [["id"]],
    }


@dataclass(frozen=True)
class SelectedStream:
    name: str
    sync_mode: str


def selected_streams(catalog: Any, known: Mapping[str, tuple[str, ...]]) -> list[SelectedStream]:
    """The configured catalog's streams, checked against what this source offers."""
    if not isinstance(catalog, dict) or not isinstance(catalog.get("streams"), list):
        raise CatalogError("catalog: expected a configured catalog, a JSON object with a 'streams' list")
    out = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(catalog["streams"]):
        stream = entry.get("stream") if isinstance(entry, dict) else None
        name = stream.get("name") if isinstance(stream, dict) else None
        if not isinstance(name, str):
            raise CatalogError(f"catalog.streams.{i}: each entry needs stream.name")
        if name not in known:
            raise CatalogError(
                f"catalog.streams.{i}: unknown stream '{name}'; this source offers: {', '.join(known)}"
                " (run discover again if stream_name changed)"
            )
        if name in seen:
            raise CatalogError(
                f"catalog.streams.{i}: stream '{name}' is listed twice (also catalog.streams.{seen[name]}), "
                "so every record would be read twice; list each stream once"
            )
        seen[name] = i
        mode = entry.get("sync_mode", "full_refresh")
        if mode not in known[name]:
            raise CatalogError(
                f"catalog.streams.{i}: stream '{name}' does not support sync_mode '{mode}'; "
                f"use one of: {', '.join(known[name])}"
            )
        out.append(SelectedStream(name, mode))
    return out
