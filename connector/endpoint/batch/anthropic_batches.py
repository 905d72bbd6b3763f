"""Anthropic Message Batches.

References: docs.anthropic.com/en/docs/build-with-claude/batch-processing and the API pages
creating-message-batches, retrieving-message-batches, retrieving-message-batch-results,
canceling-a-message-batch, listing-message-batches.

``POST {base}/messages/batches`` with ``{requests: [{custom_id, params}]}`` (``params`` a
Messages request; at most 100,000 requests or 256 MB) creates a batch that is ``in_progress``
at once; ``GET {base}/messages/batches/{id}`` polls ``processing_status`` (in_progress,
canceling, ended) and ``request_counts`` (processing, succeeded, errored, canceled, expired).
Once ended, ``results_url`` is a JSONL document of ``{custom_id, result}`` in any order, a
``result`` being ``succeeded`` (``message``), ``errored`` (``error``: an error response),
``canceled`` or ``expired``. A Message Batch cannot fail as a whole: its requests do.

The API keeps no caller metadata on a batch, so a batch whose create answer was lost (or
unclear) is recognised by how many requests it holds and when it was created (:meth:`find`):
of the batches of that size listed above the anchor (the newest batch just before the create
was sent, read by :meth:`prepare` and kept in the STATE; the list is newest first), created
since the create was sent (60 s allowed for clock skew) and not known to hold other rows, the
one created nearest to it. A wrong guess costs no wrong
answer: a row takes only a result whose custom_id names its exact request, and a row without
one is asked again as a normal request.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar

import orjson

from connector import errors
from connector.dialects.anthropic import AnthropicDialect
from connector.endpoint.batch.http import BatchHTTP, jsonl, same_origin, with_query
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

_ENVELOPE = len(b'{"requests":[]}')
LIMITS = BatchLimits(max_requests=100_000, max_bytes=256 * 1024 * 1024, one_model=False, overhead=_ENVELOPE)
_PHASES: Mapping[str, Phase] = {"in_progress": "running", "canceling": "running", "ended": "ended"}
# The HTTP status of each Anthropic error type (docs.anthropic.com/en/api/errors).
STATUS_OF = {"invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
             "permission_error": 403, "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429,
             "api_error": 500, "timeout_error": 504, "overloaded_error": 529}


class AnthropicBatches:
    """The Message Batches API (see the module docstring)."""

    name: ClassVar[str] = "anthropic"

    def __init__(self, dialect: AnthropicDialect, http: BatchHTTP, limits: BatchLimits = LIMITS) -> None:
        self._dialect = dialect
        self._http = http
        self._limits = limits
        self._base = dialect.url("/messages/batches")

    @property
    def limits(self) -> BatchLimits:
        return self._limits

    def _at(self, path: str) -> str:
        """A URL under the batches resource, the configured url's query kept."""
        return self._dialect.url(f"/messages/batches/{path}")

    def request(self, custom_id: str, body: Mapping[str, Any]) -> BatchRequest:
        params = dict(self._dialect.prepare(body).body)
        params.pop("stream", None)
        return BatchRequest(custom_id, str(params.get("model") or ""),
                            orjson.dumps({"custom_id": custom_id, "params": params}))

    async def prepare(self, requests: Sequence[BatchRequest], submission: Submission) -> str | None:
        page = await self._http.json("GET", with_query(self._base, {"limit": 1}))
        newest = [b for b in page.get("data") or () if isinstance(b, dict) and isinstance(b.get("id"), str)]
        return str(newest[0]["id"]) if newest else None  # the list is newest first: a later batch is above it

    async def create(self, requests: Sequence[BatchRequest], submission: Submission) -> str:
        payload = b'{"requests":[' + b",".join(r.entry for r in requests) + b"]}"
        return id_in(await self._http.json("POST", self._base, payload, resend=False), "id", "batch creation")

    async def find(self, submission: Submission, exclude: Collection[str] = ()) -> str | None:
        page = await self._http.json("GET", with_query(self._base, {"limit": 100}))
        sized: list[tuple[float, str]] = []
        for batch in page.get("data") or ():
            batch_id = as_object(batch).get("id")
            if not isinstance(batch_id, str) or batch_id == submission.anchor:
                break  # the newest batch before the create, and those older than it, are not the one
            if sum(as_int(v) for v in as_object(batch.get("request_counts")).values()) == submission.size:
                sized.append((unix_time(batch.get("created_at")), batch_id))
        return nearest(sized, submission, exclude)

    async def poll(self, batch_id: str) -> BatchStatus:
        batch = await self._http.json("GET", self._at(batch_id))
        state = str(batch.get("processing_status"))
        phase = _PHASES.get(state)
        if phase is None:
            raise errors.BadReply(f"batch {batch_id} has a processing_status this connector does not know: {state!r}")
        counts = {k: as_int(v) for k, v in (batch.get("request_counts") or {}).items()}
        errored = counts.get("errored", 0) + counts.get("canceled", 0) + counts.get("expired", 0)
        succeeded, pending = counts.get("succeeded", 0), counts.get("processing", 0)
        url = batch.get("results_url")
        return BatchStatus(batch_id, state, phase, RequestCounts(succeeded + errored + pending, succeeded, errored,
                                                                 pending),
                           (url,) if phase == "ended" and isinstance(url, str) else ())

    async def results(self, status: BatchStatus, custom_ids: Sequence[str] | None = None) -> list[ItemResult]:
        found: dict[str, ItemResult] = {}
        for url in status.results:
            if not same_origin(url, self._base):
                raise errors.BadReply(f"batch {status.batch_id}'s results_url {url} is on another host than "
                                      f"{self._base}; the key is not sent there")
            raw = await self._http.send("GET", url, headers={"Accept": "application/binary"})
            for line in jsonl(raw, f"the results of batch {status.batch_id}"):
                result = self._item(status.batch_id, line)
                if result is not None:
                    found[result.custom_id] = result
        return complete(status.batch_id, found, custom_ids, "its results have no line for it")

    def _item(self, batch_id: str, line: Mapping[str, Any]) -> ItemResult | None:
        custom_id = line.get("custom_id")
        result = line.get("result")
        if not isinstance(custom_id, str) or not isinstance(result, dict):
            return None
        where = f"batch {batch_id}, request {custom_id}"
        kind = result.get("type")
        if kind == "succeeded":
            return answered(custom_id, self._dialect, result.get("message"))
        if kind == "errored":
            error = as_object(result.get("error"))
            inner = as_object(error.get("error")) or error  # {type: error, error: {type, message}}
            status = STATUS_OF.get(str(inner.get("type")), 500)
            return ItemResult(custom_id, error=http_error(where, status, orjson.dumps(error), {},
                                                          self._dialect.error_message))
        why = {"expired": "the batch expired first", "canceled": "the batch was canceled first"}.get(str(kind))
        return ItemResult(custom_id, error=errors.BatchItemUnfinished(
            f"{where} did not run: {why or f'result type {kind!r}'}"))

    async def cancel(self, batch_id: str) -> None:
        await self._http.json("POST", self._at(f"{batch_id}/cancel"))

