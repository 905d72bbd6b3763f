"""The Gemini Batch Mode API (inline requests) of the fake batch server (tests/fake_batch.py)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fake_batch_answers import grpc_status
from tests.fake_batch_lifecycle import Batch, Item, answer_now, iso, page_of

if TYPE_CHECKING:
    from tests.fake_batch import Store

GEMINI_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta."


def add_routes(app: web.Application, store: Store) -> None:
    """batchGenerateContent and the batch operations under /v1beta."""
    GeminiBatches(store).add(app)


class GeminiBatches:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{target}", self.create)
        app.router.add_get("/v1beta/batches", self.listing)
        app.router.add_get("/v1beta/batches/{target}", self.retrieve)
        app.router.add_post("/v1beta/batches/{target}", self.cancel)

    @staticmethod
    def error(status: int, message: str, state: str = "INVALID_ARGUMENT") -> web.Response:
        return web.json_response({"error": {"code": status, "message": message, "status": state}}, status=status)

    def denied(self, request: web.Request) -> web.Response | None:
        key = self.store.api_key
        if key is not None and key not in (request.headers.get("x-goog-api-key"), request.query.get("key")):
            return self.error(400, "API key not valid. Please pass a valid API key.")
        return None

    async def create(self, request: web.Request) -> web.Response:
        if (denied := self.denied(request)) is not None:
            return denied
        model, _, method = request.match_info["target"].partition(":")
        if method == "generateContent":  # a normal request, beside the batches
            return web.json_response(answer_now("gemini", await request.json()))
        if method != "batchGenerateContent":
            return self.error(404, f"Method not found: {method}", "NOT_FOUND")
        raw = await request.read()
        limit = self.store.limits.gemini_max_bytes
        if len(raw) > limit:
            return self.error(400, f"Request payload size exceeds the limit: {limit} bytes.")
        try:
            body = json.loads(raw)
        except ValueError:
            return self.error(400, "Invalid JSON payload received.")
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, dict) or not isinstance(batch.get("displayName"), str):
            return self.error(400, "batch.displayName is required.")
        config = batch.get("inputConfig") or {}
        if "fileName" in config:
            return self.error(400, "This fake server implements inline requests only.", "UNIMPLEMENTED")
        entries = (config.get("requests") or {}).get("requests")
        if not isinstance(entries, list) or not entries:
            return self.error(400, "batch.inputConfig.requests.requests must list at least one request.")
        items: list[Item] = []
        for index, entry in enumerate(entries):
            request_body = entry.get("request") if isinstance(entry, dict) else None
            if not isinstance(request_body, dict) or not request_body.get("contents"):
                return self.error(400, f"batch.inputConfig.requests.requests[{index}].request.contents is required.")
            metadata = entry.get("metadata")
            key = metadata.get("key") if isinstance(metadata, dict) else None
            items.append(Item(str(key if key is not None else index), "gemini", request_body, metadata=metadata))
        created = Batch(self.store.new_id("batches/"), "gemini", items, endpoint=model.removeprefix("models/"),
                        metadata={"displayName": batch["displayName"]})
        self.store.add(created)
        await self.store.delay("create")
        return web.json_response(self.render(created))

    def render(self, batch: Batch) -> dict[str, Any]:
        counts = {"requestCount": len(batch.items), "successfulRequestCount": batch.count("succeeded"),
                  "failedRequestCount": batch.count("errored"), "pendingRequestCount": batch.count("pending")}
        meta: dict[str, Any] = {
            "@type": GEMINI_TYPE + "GenerateContentBatch", "model": f"models/{batch.endpoint}",
            "displayName": batch.metadata.get("displayName") if self.store.faults.echo_metadata else None,
            "name": batch.id,
            "createTime": iso(batch.times["created"]), "updateTime": iso(int(time.time())),
            "batchStats": {k: str(v) for k, v in counts.items() if v},  # proto3 JSON: int64 as text, zeros left out
            "state": batch.native,
        }
        operation: dict[str, Any] = {"name": batch.id, "metadata": meta}
        if not batch.terminal:
            return operation
        meta["endTime"] = iso(batch.times.get(batch.stage))
        operation["done"] = True
        if batch.stage == "failed":
            operation["error"] = {"code": 13, "message": batch.reason or "The batch failed."}
        elif batch.stage != "expired":  # an expired batch has no results
            responses = []
            for item in batch.items:
                entry: dict[str, Any] = {"metadata": item.metadata} if item.metadata is not None else {}
                if item.outcome == "succeeded":
                    responses.append({"response": item.reply, **entry})
                elif item.outcome == "errored":
                    responses.append({"error": grpc_status(item.status, f"fake item error {item.status}"), **entry})
            output = {"inlinedResponses": {"inlinedResponses": responses}}
            meta["output"] = output
            operation["response"] = {"@type": GEMINI_TYPE + "GenerateContentBatchOutput", **output}
        return operation

    def find(self, name: str) -> Batch | None:
        batch = self.store.batches.get(f"batches/{name}")
        return batch if batch is not None and batch.api == "gemini" else None

    async def retrieve(self, request: web.Request) -> web.Response:
        if (denied := self.denied(request)) is not None:
            return denied
        batch = self.find(request.match_info["target"])
        if batch is None:
            return self.error(404, f"Batch batches/{request.match_info['target']} not found.", "NOT_FOUND")
        return web.json_response(self.render(self.store.polled(batch)))

    async def cancel(self, request: web.Request) -> web.Response:
        if (denied := self.denied(request)) is not None:
            return denied
        name, _, method = request.match_info["target"].partition(":")
        batch = self.find(name) if method == "cancel" else None
        if batch is None:
            return self.error(404, f"Batch batches/{name} not found.", "NOT_FOUND")
        if batch.terminal:
            return self.error(409, f"Batch {batch.id} is {batch.native}.", "FAILED_PRECONDITION")
        batch.cancel()
        return web.json_response({})

    async def listing(self, request: web.Request) -> web.Response:
        if (denied := self.denied(request)) is not None:
            return denied
        mine = [b for b in reversed(self.store.batches.values()) if b.api == "gemini"]
        page, more = page_of(mine, request.query.get("pageToken"), int(request.query.get("pageSize", 20)))
        out: dict[str, Any] = {"operations": [self.render(b) for b in page]}
        if more:
            out["nextPageToken"] = page[-1].id
        return web.json_response(out)
