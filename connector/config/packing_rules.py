"""``rows_per_request``: which configs can pack several chat rows into one request, and why the others cannot.

A packed request carries each row's last user message under its row number and asks for one JSON object keyed
by them (:mod:`connector.dialects.packed_chat`); what cannot be keyed by row that way is refused here, naming
``rows_per_request`` and the setting in the way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The API shapes whose bodies and replies are chat completions (the packed body is built on them).
PACKING_SHAPES = ("openai_chat_completions", "azure_openai")
# Reply paths a packed answer gives each row: its own content and finish reason, its share of the usage.
_ROW_PATHS = ("choices.0.message.content", "choices.0.finish_reason", "usage.", "model")
_TEMPLATE_FIELDS = ("n", "logprobs", "top_logprobs", "tools", "functions", "tool_choice", "function_call")


def check_packing(rows: int, shape: str, *, tasks: bool, batch: bool, media: bool,
                  request_template: Mapping[str, Any] | None, columns: Mapping[str, str]) -> None:
    """ValueError (worded for the config) when ``rows_per_request`` above 1 cannot work with the rest."""
    if rows <= 1:
        return
    why = _refusal(shape, tasks=tasks, batch=batch, media=media, request_template=request_template,
                   columns=columns)
    if why is not None:
        raise ValueError(f"rows_per_request: {rows} rows in one request cannot be used with {why}; "
                         "set rows_per_request to 1 or remove that setting")


def _refusal(shape: str, *, tasks: bool, batch: bool, media: bool, request_template: Mapping[str, Any] | None,
             columns: Mapping[str, str]) -> str | None:
    if shape not in PACKING_SHAPES:
        hint = " (embeddings: use embeddings.inputs_per_request)" if "embeddings" in shape else ""
        return f"api_compatibility {shape}: packing is built for {' and '.join(PACKING_SHAPES)}{hint}"
    if tasks:
        return "tasks (each task is a request of its own per row)"
    if batch:
        return "batch.enabled (a provider batch holds one request per row; batch mode already halves the price)"
    if media:
        return "media_columns (images and documents cannot be keyed by row inside one message)"
    given = [f for f in _TEMPLATE_FIELDS if request_template and f in request_template]
    if given:
        return f"request_template's {given[0]} (its answer cannot be shared out by row)"
    for name, path in columns.items():
        if not path.startswith(_ROW_PATHS):
            return (f"response_template column {name} ({path}): a packed answer gives each row only "
                    f"{', '.join(p.rstrip('.') for p in _ROW_PATHS)}")
    return None
