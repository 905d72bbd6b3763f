"""The Anthropic Message Batches API of the fake batch server (tests/fake_batch.py)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fake_batch_answers import anthropic_error
from tests.fake_batch_lifecycle import Batch, Item, answer_now, iso, page_of
from tests.fake_openai import STATS

if TYPE_CHECKING:
    from tests.fake_batch import Store

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def add_routes(app: web.Application, store: Store) -> None:
    """The Message Batches routes under /v1/messages/batches."""
    AnthropicBatches(store).add(app)


class AnthropicBatches:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.message)
        app.router.add_post("/v1/messages/batches", self.create)
        app.router.add_get("/v1/messages/batches", self.listing)
        app.router.add_get("/v1/messages/batches/{batch_id}", self.retrieve)
        app.router.add_post("/v1/messages/batches/{batch_id}/cancel", self.cancel)
        app.router.add_get("/v1/messages/batches/{batch_id}/results", self.results)

    @staticmethod
    def error(status: int, message: str) -> web.Response:
        body = anthropic_error(status, message)
        if status == 409:
            body["error"]["type"] = "invalid_request_error"
        return web.json_response(body, status=status)

    def denied(self, request: web.Request) -> web.Response | None:
        if self.store.api_key is not None and request.headers.get("x-api-key") != self.store.api_key:
            return self.error(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return self.error(400, "anthropic-version: header is required")
        return None

    async def message(self, request: web.Request) -> web.Response:
        """A normal Messages request (batch mode sends the rows a batch did not answer this way)."""
        if (denied := self.denied(request)) is not None:
            return denied
        return web.json_response(answer_now("anthropic", await request.json()))

    async def create(self, request: web.Request) -> web.Response:
        if (denied := self.denied(request)) is not None:
            return denied
        limits = self.store.limits
        raw = await request.read()
        if len(raw) > limits.anthropic_max_bytes:
            return self.error(413, f"Request exceeds the maximum size of {limits.anthropic_max_bytes} bytes.")
        try:
            body = json.loads(raw)
        except ValueError:
            return self.error(400, "The request body is not valid JSON.")
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            return self.error(400, "requests: Field required (a list of at least one request)")
        if len(requests) > limits.anthropic_max_requests:
            return self.error(400, f"requests: at most {limits.anthropic_max_requests} requests per batch "
                                   f"(got {len(requests)})")
        items: list[Item] = []
        seen: set[str] = set()
        for index, entry in enumerate(requests):
            custom_id = entry.get("custom_id") if isinstance(entry, dict) else None
            params = entry.get("params") if isinstance(entry, dict) else None
            if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
                return self.error(400, f"requests.{index}.custom_id: String should match pattern "
                                       f"'{CUSTOM_ID.pattern}'")
            if custom_id in seen:
                return self.error(400, f"requests.{index}.custom_id: duplicate custom_id {custom_id!r}")
            if not isinstance(params, dict):
                return self.error(400, f"requests.{index}.params: Field required")
            for name in ("model", "max_tokens", "messages"):
                if name not in params:
                    return self.error(400, f"requests.{index}.params.{name}: Field required")
            seen.add(custom_id)
            items.append(Item(custom_id, "anthropic", params))
        batch = self.store.add(Batch(self.store.new_id("msgbatch_"), "anthropic", items))
        await self.store.delay("create")
        return web.json_response(self.render(batch, request))

    def render(self, batch: Batch, request: web.Request) -> dict[str, Any]:
        t = batch.times
        ended = batch.terminal
        return {
            "id": batch.id, "type": "message_batch", "processing_status": batch.native,
            "request_counts": {"processing": batch.count("pending"), "succeeded": batch.count("succeeded"),
                               "errored": batch.count("errored"), "canceled": batch.count("canceled"),
                               "expired": batch.count("expired")},
            "ended_at": iso(t.get(batch.stage)) if ended else None, "created_at": iso(t["created"]),
            "expires_at": iso(t["created"] + 86400), "archived_at": None,
            "cancel_initiated_at": iso(t.get("cancelling")),
            "results_url": f"{request.scheme}://{request.host}/v1/messages/batches/{batch.id}/results"
            if ended else None,
        }

    def find(self, request: web.Request) -> Batch | None:
        batch = self.store.batches.get(request.match_info["batch_id"])
        return batch if batch is not None and batch.api == "anthropic" else None

    async def retrieve(self, request: web.Request) -> web.Response:
        if (denied := self.denied(request)) is not None:
            return denied
        batch = self.find(request)
        if batch is None:
            return self.error(404, f"No message batch {request.match_info['batch_id']}")
        return web.json_response(self.render(self.store.polled(batch), request))

    async def cancel(self, request: web.Request) -> web.Response:
        if (denied := self.denied(request)) is not None:
            return denied
        batch = self.find(request)
        if batch is None:
            return self.error(404, f"No message batch {request.match_info['batch_id']}")
        if batch.terminal or batch.stage == "cancelling":
            return self.error(409, f"Message batch {batch.id} is {batch.native}; it cannot be canceled.")
        batch.cancel()
        return web.json_response(self.render(batch, request))

    async def results(self, request: web.Request) -> web.Response:
        if (denied := self.denied(request)) is not None:
            return denied
        batch = self.find(request)
        if batch is None:
            return self.error(404, f"No message batch {request.match_info['batch_id']}")
        if not batch.terminal:
            return self.error(400, f"Message batch {batch.id} has not ended; its results are not available yet.")
        lines = []
        for item in sorted(batch.items, key=lambda i: -i.seq):  # "in any order", as documented
            result: dict[str, Any] = {"type": item.outcome}
            if item.outcome == "succeeded":
                result["message"] = item.reply
            elif item.outcome == "errored":
                result["error"] = anthropic_error(item.status, batch.reason or f"fake item error {item.status}")
            lines.append(json.dumps({"custom_id": item.custom_id, "result": result}) + "\n")
        STATS["batch_downloads"] += 1
        return web.Response(body="".join(lines).encode(), content_type="application/x-jsonl")

    async def listing(self, request: web.Request) -> web.Response:
        if (denied := self.denied(request)) is not None:
            return denied
        mine = [b for b in reversed(self.store.batches.values()) if b.api == "anthropic"]
        page, more = page_of(mine, request.query.get("after_id"), int(request.query.get("limit", 20)))
        return web.json_response({"data": [self.render(b, request) for b in page],
                                  "has_more": more,
                                  "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None})
