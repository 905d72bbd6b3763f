"""The streams this source offers and their JSON schemas; reading a configured catalog.

``<stream_name>`` (default ``enriched_rows``): the input's columns, the output
columns of the response template, and the metadata columns (their schema:
:mod:`connector.answers.schema`).
``models``: what ``GET /models`` lists, offered only when the endpoint has it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from connector.answers.records import ROW_NUMBER
from connector.answers.schema import enriched_schema, primary_key
from connector.config.model import MODELS_STREAM as MODELS_STREAM
from connector.config.parts import OutputPart
from connector.errors import CatalogError

SYNC_MODES = ("full_refresh", "incremental")

def enriched_stream(name: str, output: OutputPart, input_schema: pa.Schema) -> dict[str, Any]:
    """The enriched stream ``name`` over an input of ``input_schema``."""
    return {
        "name": name,
        "json_schema": enriched_schema(input_schema, output),
        "supported_sync_modes": list(SYNC_MODES),
        "source_defined_cursor": True,
        "default_cursor_field": [ROW_NUMBER],
        "source_defined_primary_key": [[primary_key(output, input_schema)]],
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
