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
from connector.cache import AnswerCache, SingleFlight, cache_key
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
    "_attempts": {"type": "integer", "description": "HTTP attempts made for this row (0: from cache)"},
    "_cached": {"type": "boolean", "description": "the answer came from the answer cache (paid for earlier)"},
}


class FatalEndpointError(errors.ConnectorError):
    """An endpoint failure that every following row would hit too."""

    def __init__(self, cause: errors.EndpointError) -> None:
        super().__init__(cause.message)
        self.failure_type = "config_error" if not cause.retryable else "transient_error"
        self.cause = cause


def is_fatal(exc: errors.EndpointError) -> bool:
    """3xx (URL moved), 401/403 (key), 404 (URL or model): retrying other rows cannot help."""
    return isinstance(exc, errors.HTTPStatusError) and (exc.status in (401, 403, 404) or 300 <= exc.status < 400)


@dataclass
class Tally:
    """Counts for the run summary, observed in input order from the records."""

    ok: int = 0
    failed: int = 0
    skipped: int = 0
    cached: int = 0
    retried: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_errors: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.ok + self.failed

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def observe(self, data: Mapping[str, Any]) -> None:
        if data["_status"] == "ok":
            self.ok += 1
        else:
            self.failed += 1
            if len(self.first_errors) < 5:
                self.first_errors.append(f"row {data[ROW_NUMBER]}: {data['_error']}")
        if data["_cached"]:
            self.cached += 1
        elif data["_attempts"] > 1:
            self.retried += 1
        if not data["_cached"]:
            self.prompt_tokens += data["_prompt_tokens"] or 0
            self.completion_tokens += data["_completion_tokens"] or 0

    def summary(self) -> str:
        text = (f"{self.ok} ok, {self.failed} failed, {self.skipped} failed and skipped, "
                f"{self.cached} from cache, {self.retried} retried; "
                f"tokens in {self.prompt_tokens}, out {self.completion_tokens}")
        if self.first_errors:
            text += f"; first errors: {' | '.join(self.first_errors)}"
        return text


class RowEnricher:
    """Callable that turns (position, row) into a record's data.

    Looks the request up in the answer cache first, sends identical requests in
    flight only once, and stores each new answer before returning it.
    """

    def __init__(
        self,
        config: SourceConfig,
        client: EndpointClient,
        redactor: Redactor,
        template: RequestTemplate | None = None,
        cache: AnswerCache | None = None,
    ) -> None:
        self._template = template or RequestTemplate.from_config(config)
        self._builder = RequestBuilder(config)
        self._extractor = ResponseExtractor(config.response)
        self._client = client
        self._redact = redactor
        self._cache = cache if cache is not None and cache.enabled else None
        self._single_flight = SingleFlight()
        self._dialect = "openai_chat_completions"

    @property
    def output_columns(self) -> list[str]:
        return self._extractor.column_names

    def body_for(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return self._builder.build(self._template.render(row))

    async def __call__(self, item: tuple[int, dict[str, Any]]) -> dict[str, Any]:
        position, row = item
        data = dict(row)
        data[ROW_NUMBER] = position + 1
        body = self.body_for(row)
        key = cache_key(self._client.url, self._dialect, body)
        cache = self._cache
        cached = cache.get(key) if cache is not None else None
        if cached is not None:
            return self._fill(data, cached, latency_ms=None, ttft_ms=None, attempts=0, from_cache=True)
        try:
            completion, _shared = await self._single_flight.run(key, lambda: self._client.complete(body))
        except errors.EndpointError as exc:
            if is_fatal(exc):
                raise FatalEndpointError(exc) from exc
            data.update(dict.fromkeys(self._extractor.column_names))
            data.update(_empty_meta(self._redact(exc.message), exc.attempts))
            return data
        if cache is not None:
            cache.put(key, completion.reply)  # stored before the record exists: never paid twice
        return self._fill(data, completion.reply, completion.latency_ms, completion.ttft_ms,
                          completion.attempts, from_cache=False)

    def _fill(self, data: dict[str, Any], reply: Mapping[str, Any], latency_ms: float | None,
              ttft_ms: float | None, attempts: int, from_cache: bool) -> dict[str, Any]:
        columns, row_error = self._extractor.extract(reply)
        data.update(columns)
        usage = reply.get("usage") or {}
        data["_status"] = "ok" if row_error is None else "error"
        data["_error"] = row_error
        data["_model"] = reply.get("model")
        data["_finish_reason"] = dig(reply, ("choices", 0, "finish_reason"))
        data["_prompt_tokens"] = usage.get("prompt_tokens")
        data["_completion_tokens"] = usage.get("completion_tokens")
        data["_latency_ms"] = None if latency_ms is None else round(latency_ms, 1)
        data["_ttft_ms"] = None if ttft_ms is None else round(ttft_ms, 1)
        data["_attempts"] = attempts
        data["_cached"] = from_cache
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
        "_cached": False,
    }
