"""Gemini Batch Mode, with inline requests.

References: ai.google.dev/gemini-api/docs/batch-mode and ai.google.dev/api/batch-mode.

``POST {base}/models/{model}:batchGenerateContent`` with ``{batch: {displayName, inputConfig:
{requests: {requests: [{request, metadata}]}}}}`` (GenerateContentRequests, the whole body
under 20 MB; one model per batch) answers a long-running Operation named ``batches/{id}``;
``GET {base}/batches/{id}`` polls it: ``metadata.state`` (BATCH_STATE_PENDING, RUNNING,
SUCCEEDED, FAILED, CANCELLED, EXPIRED; the SDKs' JOB_STATE_ names are read as well),
``metadata.batchStats`` (int64 counts as text, absent when 0) and, once ``done``,
``response.inlinedResponses.inlinedResponses`` (also at ``metadata.output``): a
``GenerateContentResponse`` or an ``error`` (google.rpc.Status) per request, with the
request's ``metadata``. The row's custom_id travels as ``metadata.key``; the chunk's
fingerprint is the batch's ``displayName``, so a batch whose create answer was lost is found
in ``GET {base}/batches``. An expired batch has no results.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar

import orjson

from connector import errors
from connector.dialects.gemini import GeminiDialect
from connector.endpoint.batch.http import BatchHTTP
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
    nearest,
    unix_time,
)
from connector.endpoint.retry_policy import http_error

# The envelope around the requests, a 64-character displayName and the model in the URL included.
_ENVELOPE = len(b'{"batch":{"displayName":"","inputConfig":{"requests":{"requests":[]}}}}') + 64
LIMITS = BatchLimits(max_requests=None, max_bytes=20 * 1024 * 1024, one_model=True, overhead=_ENVELOPE)
_PHASES: Mapping[str, Phase] = {"UNSPECIFIED": "pending", "QUEUED": "pending", "PENDING": "pending",
                                "RUNNING": "running", "CANCELLING": "running", "SUCCEEDED": "ended",
                                "CANCELLED": "ended", "EXPIRED": "ended", "FAILED": "failed"}
# HTTP statuses of google.rpc.Code values (google/rpc/code.proto).
STATUS_OF = {1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409, 11: 400,
             12: 501, 13: 500, 14: 503, 15: 500, 16: 401}
_FIND_PAGES = 10


class GeminiBatches:
    """Gemini Batch Mode (see the module docstring)."""

    name: ClassVar[str] = "gemini"

    def __init__(self, dialect: GeminiDialect, http: BatchHTTP, limits: BatchLimits = LIMITS) -> None:
        self._dialect = dialect
        self._http = http
        self._limits = limits

    @property
    def limits(self) -> BatchLimits:
        return self._limits

    def request(self, custom_id: str, body: Mapping[str, Any]) -> BatchRequest:
        model = str(body.get("model") or self._dialect.model or "").removeprefix("models/")
        wire = dict(self._dialect.prepare(body).body)  # the model moves to the URL, stream is dropped
        return BatchRequest(custom_id, model, orjson.dumps({"request": wire, "metadata": {"key": custom_id}}))

    async def prepare(self, requests: Sequence[BatchRequest], submission: Submission) -> None:
        return None  # the create request carries the requests; the displayName finds the batch

    async def create(self, requests: Sequence[BatchRequest], submission: Submission) -> str:
        models = {r.model for r in requests}
        if len(models) != 1:
            raise ValueError(f"a Gemini batch holds one model, not {sorted(models)}")
        payload = (b'{"batch":{"displayName":' + orjson.dumps(submission.fingerprint)
                   + b',"inputConfig":{"requests":{"requests":[' + b",".join(r.entry for r in requests) + b"]}}}}")
        url = self._dialect.url(f"/models/{models.pop()}:batchGenerateContent")
        operation = await self._http.json("POST", url, payload, resend=False)
        return id_in(operation, "name", "batch creation")

    async def find(self, submission: Submission, exclude: Collection[str] = ()) -> str | None:
        token: str | None = None
        unnamed: list[tuple[float, str]] = []  # batches without a displayName: a provider that does not echo it
        for _ in range(_FIND_PAGES):
            query: dict[str, str | int] = {"pageSize": 100, **({"pageToken": token} if token else {})}
            page = await self._http.json("GET", self._dialect.url("/batches", {k: str(v) for k, v in query.items()}))
            for operation in page.get("operations") or ():
                meta = as_object(as_object(operation).get("metadata"))
                name = as_object(operation).get("name")
                if not isinstance(name, str) or name in exclude:
                    continue
                if meta.get("displayName") == submission.fingerprint:
                    return name
                if not meta.get("displayName") and _sized(meta, submission):
                    unnamed.append((unix_time(meta.get("createTime")), name))
            token = page.get("nextPageToken") if isinstance(page.get("nextPageToken"), str) else None
            if not token:
                break
        return nearest(unnamed, submission, exclude)

    async def poll(self, batch_id: str) -> BatchStatus:
        operation = await self._http.json("GET", self._dialect.url(f"/{batch_id}"))
        meta = operation.get("metadata") or {}
        state = str(meta.get("state") or ("BATCH_STATE_SUCCEEDED" if operation.get("done") else "BATCH_STATE_PENDING"))
        phase = _PHASES.get(state.removeprefix("BATCH_STATE_").removeprefix("JOB_STATE_"))
        if phase is None:
            raise errors.BadReply(f"batch {batch_id} has a state this connector does not know: {state!r}")
        error = operation.get("error")
        if isinstance(error, dict) and phase != "running":
            phase = "failed"
        stats = meta.get("batchStats") or {}
        total, succeeded, failed, pending = (as_int(stats.get(k)) for k in (
            "requestCount", "successfulRequestCount", "failedRequestCount", "pendingRequestCount"))
        failure = None
        if phase == "failed":
            failure = str(error.get("message") or error) if isinstance(error, dict) else "the provider gave no reason"
        return BatchStatus(batch_id, state, phase, RequestCounts(total, succeeded, failed, pending),
                           (batch_id,) if phase == "ended" else (), failure)

    async def results(self, status: BatchStatus, custom_ids: Sequence[str] | None = None) -> list[ItemResult]:
        found: dict[str, ItemResult] = {}
        if status.results:
            operation = await self._http.json("GET", self._dialect.url(f"/{status.batch_id}"))
            output = operation.get("response") or (operation.get("metadata") or {}).get("output") or {}
            entries = (output.get("inlinedResponses") or {}).get("inlinedResponses") or []
            for position, entry in enumerate(entries):
                result = self._item(status.batch_id, entry, custom_ids, position)
                if result is not None:
                    found[result.custom_id] = result
        why = "an expired batch returns no results" if status.state.endswith("EXPIRED") else "no response for it"
        return complete(status.batch_id, found, custom_ids, why)

    def _item(self, batch_id: str, entry: Any, custom_ids: Sequence[str] | None, position: int) -> ItemResult | None:
        if not isinstance(entry, dict):
            return None
        key = (entry.get("metadata") or {}).get("key") if isinstance(entry.get("metadata"), dict) else None
        if key is None and custom_ids is not None and position < len(custom_ids):
            key = custom_ids[position]  # responses come in request order
        if not isinstance(key, str):
            return None
        if isinstance(entry.get("response"), dict):
            return answered(key, self._dialect, entry["response"])
        error = as_object(entry.get("error"))
        status = STATUS_OF.get(as_int(error.get("code")), 500)
        return ItemResult(key, error=http_error(f"batch {batch_id}, request {key}", status,
                                                orjson.dumps({"error": error}), {}, self._dialect.error_message))

    async def cancel(self, batch_id: str) -> None:
        await self._http.json("POST", self._dialect.url(f"/{batch_id}:cancel"))


def _sized(meta: Mapping[str, Any], submission: Submission) -> bool:
    """A batch of the submission's size and model (what is left to compare without a displayName)."""
    model = str(meta.get("model") or "").removeprefix("models/")
    return (as_int(as_object(meta.get("batchStats")).get("requestCount")) == submission.size
            and (not submission.model or model == submission.model))
