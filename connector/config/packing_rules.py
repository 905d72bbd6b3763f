"""``rows_per_request``: which configs can pack several chat rows into one request, and why the others cannot.

A packed request carries each row's last user message under its row number and asks for one JSON object keyed
by them (:mod:`connector.dialects.packed_chat`); what cannot be keyed by row that way is refused here, naming
``rows_per_request`` and the setting in the way. ``"auto"`` is not refused: where rows cannot be packed it means 1
(its size is :mod:`connector.pipeline.pack_size`'s, by the bounds below).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

# The API shapes whose bodies and replies are chat completions (the packed body is built on them).
PACKING_SHAPES = ("openai_chat_completions", "azure_openai")
# Reply paths a packed answer gives each row: its own content and finish reason, its share of the usage.
_ROW_PATHS = ("choices.0.message.content", "choices.0.finish_reason", "usage.", "model")
# rows_per_request "auto": the bounds it sizes a packed request by (connector.pipeline.pack_size).
AUTO_MAX_ROWS = 50  # beyond, a pack saves little more (the shared part goes 1/50 as often) and risks more rows
AUTO_WINDOW = 8192  # the context window assumed when context_window is unset (docs/PROMISES.md says to set it)
# The packed max_tokens (the rows' caps added up) auto stays within: an endpoint refuses a max_tokens above its
# model's output limit (a 400, which turns packing off), and the connector does not know that limit.
AUTO_OUTPUT_LIMIT = 4096
_TEMPLATE_FIELDS = ("n", "logprobs", "top_logprobs", "tools", "functions", "tool_choice", "function_call")


def check_packing(rows: int | Literal["auto"], shape: str, *, tasks: bool, batch: bool, media: bool,
                  request_template: Mapping[str, Any] | None, columns: Mapping[str, str]) -> int | Literal["auto"]:
    """The rows per request the run uses: ``rows``, or 1 for ``"auto"`` where rows cannot be packed. ValueError
    (worded for the config) when a number above 1 cannot work with the rest."""
    if rows == 1:
        return rows
    why = _refusal(shape, tasks=tasks, batch=batch, media=media, request_template=request_template,
                   columns=columns)
    if why is None:
        return rows
    if rows == "auto":
        return 1
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
