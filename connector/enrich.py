"""One row in, one enriched record out: render, call, extract, annotate.

A row's own failure (after retries) never stops the sync: the record is still
emitted, with ``_status`` = ``error`` and the reason in ``_error``. Only failures
that no later row could escape (the key rejected, the URL or model wrong) are
raised, as :class:`FatalEndpointError`, to end the sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connector import errors
from connector.client import EndpointClient
from connector.config import SourceConfig
from connector.dialects.openai_chat import RequestBuilder
from connector.redact import Redactor
from connector.templates import RequestTemplate, ResponseExtractor, dig

ROW_NUMBER = "_row_number"

# Metadata columns every record carries, with their JSON schema. Names are stable:
# downstream SQL depends on them.
META_COLUMNS: dict[str, dict[str, Any]] = {
    ROW_NUMBER: {"type": "integer", "description": "1-based position of the row in the input"},
    "_status": {"type": "string", "description": "ok or error"},
    "_error": {"type": ["null", "string"], "description": "why the row failed, after retries"},
    "_model": {"type": ["null", "string"], "description": "model that answered, as reported"},
    "_finish_reason": {"type": ["null", "string"]},
    "_prompt_tokens": {"type": ["null", "integer"]},
    "_completion_tokens": {"type": ["null", "integer"]},
    "_latency_ms": {"type": ["null", "number"], "description": "request to full answer, last attempt"},
    "_ttft_ms": {"type": ["null", "number"], "description": "time to first token (streaming only)"},
    "_attempts": {"type": "integer", "description": "HTTP attempts made for this row"},
}


class FatalEndpointError(errors.ConnectorError):
    """An endpoint failure that every following row would hit too."""

    def __init__(self, cause: errors.EndpointError) -> None:
        super().__init__(cause.message)
        self.failure_type = "config_error" if not cause.retryable else "transient_error"
        self.cause = cause


def is_fatal(exc: errors.EndpointError) -> bool:
    """401/403 (key), 404 (URL or model): retrying other rows cannot help."""
    return isinstance(exc, errors.HTTPStatusError) and exc.status in (401, 403, 404)


@dataclass
class Tally:
    """Counts for the run summary."""

    ok: int = 0
    failed: int = 0
    retried: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_errors: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.ok + self.failed


class RowEnricher:
    """Callable that turns (position, row) into a record's data."""

    def __init__(
        self,
        config: SourceConfig,
        client: EndpointClient,
        redactor: Redactor,
        template: RequestTemplate | None = None,
    ) -> None:
        self._template = template or RequestTemplate.from_config(config)
        self._builder = RequestBuilder(config)
        self._extractor = ResponseExtractor(config.response)
        self._client = client
        self._redact = redactor
        self.tally = Tally()

    @property
    def output_columns(self) -> list[str]:
        return self._extractor.column_names

    def body_for(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return self._builder.build(self._template.render(row))

    async def __call__(self, item: tuple[int, dict[str, Any]]) -> dict[str, Any]:
        position, row = item
        data = dict(row)
        data[ROW_NUMBER] = position + 1
        tally = self.tally
        try:
            completion = await self._client.complete(self.body_for(row))
        except errors.EndpointError as exc:
            if is_fatal(exc):
                raise FatalEndpointError(exc) from exc
            message = self._redact(exc.message)
            data.update(dict.fromkeys(self._extractor.column_names))
            data.update(_empty_meta(message, exc.attempts))
            tally.failed += 1
            if len(tally.first_errors) < 5:
                tally.first_errors.append(f"row {position + 1}: {message}")
            return data
        reply = completion.reply
        columns, row_error = self._extractor.extract(reply)
        data.update(columns)
        usage = reply.get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        data["_status"] = "ok" if row_error is None else "error"
        data["_error"] = row_error
        data["_model"] = reply.get("model")
        data["_finish_reason"] = dig(reply, ("choices", 0, "finish_reason"))
        data["_prompt_tokens"] = prompt_tokens
        data["_completion_tokens"] = completion_tokens
        data["_latency_ms"] = round(completion.latency_ms, 1)
        data["_ttft_ms"] = None if completion.ttft_ms is None else round(completion.ttft_ms, 1)
        data["_attempts"] = completion.attempts
        if row_error is None:
            tally.ok += 1
        else:
            tally.failed += 1
            if len(tally.first_errors) < 5:
                tally.first_errors.append(f"row {position + 1}: {row_error}")
        if completion.attempts > 1:
            tally.retried += 1
        tally.prompt_tokens += prompt_tokens or 0
        tally.completion_tokens += completion_tokens or 0
        return data


def _empty_meta(message: str, attempts: int) -> dict[str, Any]:
    return {
        "_status": "error",
        "_error": message,
        "_model": None,
        "_finish_reason": None,
        "_prompt_tokens": None,
        "_completion_tokens": None,
        "_latency_ms": None,
        "_ttft_ms": None,
        "_attempts": attempts,
    }
