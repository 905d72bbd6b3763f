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
from connector.answers.schema import enriched_schema, record_key
from connector.config.model import MODELS_STREAM as MODELS_STREAM
from connector.config.parts import OutputPart
from connector.errors import CatalogError
from connector.rows.file_columns import FILE_MODIFIED

SYNC_MODES = ("full_refresh", "incremental")


def enriched_stream(name: str, output: OutputPart, input_schema: pa.Schema,
                    cursor: str | None = None) -> dict[str, Any]:
    """The enriched stream ``name`` over an input of ``input_schema``.

    With ``input.cursor`` set the source defines the cursor (that column), with input.incremental files
    the file's modification time; otherwise the row number is the default and a configured catalog may
    pick an input column as ``cursor_field`` instead."""
    by_files = FILE_MODIFIED in input_schema.names  # input.incremental files: the file's time is the cursor
    return {
        "name": name,
        "json_schema": enriched_schema(input_schema, output),
        "supported_sync_modes": list(SYNC_MODES),
        "source_defined_cursor": cursor is not None or by_files,
        "default_cursor_field": [cursor or (FILE_MODIFIED if by_files else ROW_NUMBER)],
        "source_defined_primary_key": record_key(output, input_schema),
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
    cursor_field: tuple[str, ...] = ()  # the configured catalog's, when it gives one


def cursor_of(stream: SelectedStream, configured: str | None) -> str | None:
    """The cursor column a sync of ``stream`` uses: none in full refresh; else the catalog's
    ``cursor_field`` when it names an input column, or ``input.cursor`` (``configured``)."""
    chosen = stream.cursor_field
    if stream.sync_mode == "full_refresh" or chosen in ((), (ROW_NUMBER,), (FILE_MODIFIED,)):
        return configured if stream.sync_mode != "full_refresh" else None
    if len(chosen) != 1:
        raise CatalogError(f"catalog: stream '{stream.name}' has cursor_field {list(chosen)}; a cursor is one "
                           "top-level input column")
    if configured is not None and chosen[0] != configured:
        raise CatalogError(f"catalog: stream '{stream.name}' has cursor_field ['{chosen[0]}'] but input.cursor is "
                           f"'{configured}'; run discover again and keep its cursor, or change input.cursor")
    return chosen[0]


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
        cursor = entry.get("cursor_field") or []
        if not isinstance(cursor, list) or not all(isinstance(part, str) for part in cursor):
            raise CatalogError(f"catalog.streams.{i}: cursor_field must be a list of column names")
        out.append(SelectedStream(name, mode, tuple(cursor)))
    return out
