"""OpenAI-format batches: the Files + Batch API of OpenAI, Azure OpenAI (global batch) and
the OpenAI-compatible providers that offer it (Groq, Together, Cerebras, Novita, ...).

References: platform.openai.com/docs/guides/batch, /docs/api-reference/batch and
/docs/api-reference/files; learn.microsoft.com azure/ai-foundry/openai/how-to/batch.

Input: a JSONL file, one ``{custom_id, method: POST, url, body}`` line per request, uploaded
with ``POST {base}/files`` (``purpose=batch``): at most 50,000 requests and 200 MB, one model
per file. ``POST {base}/batches`` (``input_file_id``, ``endpoint``, ``completion_window``,
``metadata``) creates the batch; ``GET {base}/batches/{id}`` polls it. Once it is over,
``GET {base}/files/{id}/content`` of ``output_file_id`` and ``error_file_id`` gives JSONL
lines ``{custom_id, response: {status_code, body}, error}``: a 2xx body is the reply, another
status the request's error, and ``error`` (``batch_expired``, ``batch_cancelled``) a request
the batch ended without running. The chunk's fingerprint goes in ``metadata`` so that a batch
whose create answer was lost (or unclear: a 5xx, a cut connection) can be found again in
``GET {base}/batches``; a provider that does not echo ``metadata`` is matched by the batch's
``input_file_id``, the file uploaded for that chunk alone (its id is in the STATE before the
create is sent).

Azure: the same API under ``{endpoint}/openai/`` with ``api-version`` (or ``/openai/v1/``),
the ``api-key`` header, ``url`` ``/chat/completions`` and the deployment as ``model``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar

import orjson

from connector import errors
from connector.dialects.azure import AzureDialect
from connector.dialects.embeddings import EmbeddingsDialect
from connector.dialects.openai_chat import ChatDialect
from connector.dialects.openai_responses import ResponsesDialect
from connector.endpoint.batch.http import BatchHTTP, jsonl, with_query
from connector.endpoint.batch.protocol_base import (
    BatchLimits,
    BatchRequest,
    BatchStatus,
    ItemResult,
    Phase,
    RequestCounts,
    Submission,
    answered,
    as_int,
    as_object,
    complete,
    id_in,
)
from connector.endpoint.retry_policy import http_error

LIMITS = BatchLimits(max_requests=50_000, max_bytes=200 * 1024 * 1024, one_model=True)
METADATA_KEY = "source_openai_compatible"  # the chunk's fingerprint, to find a batch again
_PHASES: Mapping[str, Phase] = {"validating": "pending", "in_progress": "running", "finalizing": "running",
                                "cancelling": "running", "completed": "ended", "expired": "ended",
                                "cancelled": "ended", "failed": "failed"}
_UNFINISHED = {"batch_expired": "the batch expired first", "batch_cancelled": "the batch was cancelled first"}
_FIND_PAGES = 10  # how far back (x100 batches) a lost batch is looked for


class OpenAIBatches:
    """The Batch API of OpenAI-format providers (see the module docstring)."""

    name: ClassVar[str] = "openai"

    def __init__(self, dialect: ChatDialect, http: BatchHTTP, completion_window: str = "24h",
                 limits: BatchLimits = LIMITS) -> None:
        self._dialect = dialect
        self._http = http
        self._window = completion_window
        self._limits = limits
        self.endpoint = endpoint_for(dialect)

    @property
    def limits(self) -> BatchLimits:
        return self._limits

    def _url(self, resource: str) -> str:
        if isinstance(self._dialect, AzureDialect):
            return self._dialect.resource_url(resource)
        return self._dialect.url(f"/{resource}")  # the configured url's query rides along

    def request(self, custom_id: str, body: Mapping[str, Any]) -> BatchRequest:
        return input_line(self._dialect, custom_id, body)

    async def prepare(self, requests: Sequence[BatchRequest], submission: Submission) -> str:
        content = b"".join(r.entry + b"\n" for r in requests)
        uploaded = await self._http.upload(self._url("files"), {"purpose": "batch"},
                                           f"{submission.fingerprint}.jsonl", content)
        file_id = uploaded.get("id")
        if not isinstance(file_id, str):
            raise errors.BadReply(f"the file upload to {self._url('files')} answered without an id")
        return file_id

    async def create(self, requests: Sequence[BatchRequest], submission: Submission) -> str:
        if submission.anchor is None:
            raise ValueError("an OpenAI-format batch is created from an uploaded input file: prepare first")
        created = await self._http.json("POST", self._url("batches"), orjson.dumps({
            "input_file_id": submission.anchor, "endpoint": self.endpoint, "completion_window": self._window,
            "metadata": {METADATA_KEY: submission.fingerprint}}), resend=False)
        return id_in(created, "id", "batch creation")

    async def find(self, submission: Submission, exclude: Collection[str] = ()) -> str | None:
        after: str | None = None
        for _ in range(_FIND_PAGES):
            query: dict[str, str | int] = {"limit": 100, **({"after": after} if after else {})}
            page = await self._http.json("GET", with_query(self._url("batches"), query))
            batches = [b for b in page.get("data") or () if isinstance(b, dict)]
            for batch in batches:
                if _made_for(batch, submission) and batch.get("id") not in exclude:
                    return id_in(batch, "id", "the batch list")
                if as_int(batch.get("created_at")) and as_int(batch.get("created_at")) < submission.since - 60:
                    return None  # older than the submission: it is not further down either
            if not page.get("has_more") or not batches:
                return None
            after = id_in(batches[-1], "id", "the batch list")
        return None

    async def poll(self, batch_id: str) -> BatchStatus:
        batch = await self._http.json("GET", self._url(f"batches/{batch_id}"))
        state = str(batch.get("status"))
        phase = _PHASES.get(state)
        if phase is None:
            raise errors.BadReply(f"batch {batch_id} has a status this connector does not know: {state!r}")
        counts = batch.get("request_counts") or {}
        total, done, failed = (as_int(counts.get(k)) for k in ("total", "completed", "failed"))
        files = tuple(f for f in (batch.get("output_file_id"), batch.get("error_file_id")) if isinstance(f, str))
        failure, retryable = _failure(batch) if phase == "failed" else (None, True)
        return BatchStatus(batch_id, state, phase, RequestCounts(total, done, failed, max(0, total - done - failed)),
                           files if phase == "ended" else (), failure, retryable)

    async def results(self, status: BatchStatus, custom_ids: Sequence[str] | None = None) -> list[ItemResult]:
        found: dict[str, ItemResult] = {}
        for file_id in status.results:
            raw = await self._http.send("GET", self._url(f"files/{file_id}/content"),
                                        headers={"Accept": "application/binary"})
            for line in jsonl(raw, f"file {file_id} of batch {status.batch_id}"):
                result = output_line(self._dialect, line, f"batch {status.batch_id}")
                if result is not None:
                    found[result.custom_id] = result
        return complete(status.batch_id, found, custom_ids, f"the batch is {status.state} and has no line for it")

    async def cancel(self, batch_id: str) -> None:
        await self._http.json("POST", self._url(f"batches/{batch_id}/cancel"))


def _made_for(batch: Mapping[str, Any], submission: Submission) -> bool:
    """The batch was created for this submission: its metadata names the fingerprint or, for a provider that
    does not echo metadata, it was created from the submission's input file (uploaded for it alone)."""
    if as_object(batch.get("metadata")).get(METADATA_KEY) == submission.fingerprint:
        return True
    return submission.anchor is not None and batch.get("input_file_id") == submission.anchor


def endpoint_for(dialect: ChatDialect) -> str:
    """The ``url`` of the batch input lines (and the batch's ``endpoint``) for this dialect."""
    if isinstance(dialect, EmbeddingsDialect):
        return "/v1/embeddings"
    responses = isinstance(dialect, ResponsesDialect)
    if isinstance(dialect, AzureDialect):
        return "/responses" if responses else "/chat/completions"
    return "/v1/responses" if responses else "/v1/chat/completions"


def input_line(dialect: ChatDialect, custom_id: str, body: Mapping[str, Any]) -> BatchRequest:
    """A built request body as a line of the batch input file (what ``vllm run-batch`` reads too)."""
    wire = dict(dialect.prepare(body).body)
    wire.pop("stream", None)  # a batch answers whole replies
    wire.pop("stream_options", None)
    if isinstance(dialect, AzureDialect):
        wire["model"] = dialect.deployment_for(body)
    line = {"custom_id": custom_id, "method": "POST", "url": endpoint_for(dialect), "body": wire}
    return BatchRequest(custom_id, str(wire.get("model") or ""), orjson.dumps(line))


def output_line(dialect: ChatDialect, line: Mapping[str, Any], source: str) -> ItemResult | None:
    """What one line of an output or error file says of its request (None: a line without a custom_id);
    ``source`` names where it came from (a batch, a file) in error messages."""
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str):
        return None
    where = f"{source}, request {custom_id}"
    response = line.get("response")
    if isinstance(response, dict):
        status = as_int(response.get("status_code"))
        if 200 <= status < 300:
            return answered(custom_id, dialect, response.get("body"))
        body = orjson.dumps(response.get("body"))
        return ItemResult(custom_id, error=http_error(where, status, body, {}, dialect.error_message))
    error = as_object(line.get("error"))
    code, message = str(error.get("code")), str(error.get("message") or "")
    why = _UNFINISHED.get(code, f"{code}: {message}")
    return ItemResult(custom_id, error=errors.BatchItemUnfinished(f"{where} did not run: {why}"))


def _failure(batch: Mapping[str, Any]) -> tuple[str, bool]:
    """The provider's reason a batch failed, and whether resubmitting could help (not when lines are to blame)."""
    data = [e for e in ((batch.get("errors") or {}).get("data") or ()) if isinstance(e, dict)]
    if not data:
        return "the provider gave no reason", True
    parts = [(f"line {e['line']}: " if e.get("line") is not None else "") + f"{e.get('code')}: {e.get('message')}"
             for e in data[:5]]
    more = f" (and {len(data) - 5} more)" if len(data) > 5 else ""
    return "; ".join(parts) + more, not any(e.get("line") is not None for e in data)
