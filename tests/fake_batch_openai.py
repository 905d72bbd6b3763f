"""The OpenAI Files + Batch API of the fake batch server, also at ``/openai`` for Azure (tests/fake_batch.py)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from tests.fake_batch_answers import openai_error_body
from tests.fake_batch_lifecycle import Batch, Item, answer_now, page_of
from tests.fake_openai import STATS, openai_error

if TYPE_CHECKING:
    from tests.fake_batch import Store

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
# Route prefix -> how a key is sent: api.openai.com-style (Authorization: Bearer), or Azure's api-key.
PREFIXES = {"/v1": "openai", "/openai": "azure", "/openai/v1": "azure"}
ENDPOINTS = {"openai": ("/v1/chat/completions", "/v1/responses", "/v1/embeddings"),
             "azure": ("/chat/completions", "/v1/chat/completions", "/responses", "/v1/responses")}
UNFINISHED = {"expired": ("batch_expired", "This request could not be executed before the completion window expired."),
              "canceled": ("batch_cancelled", "This request was not executed because the batch was cancelled.")}


def add_routes(app: web.Application, store: Store) -> None:
    """The Files and Batch routes, at /v1 and at Azure's /openai and /openai/v1."""
    for prefix, flavour in PREFIXES.items():
        OpenAIBatches(store, flavour).add(app, prefix)
    app.router.add_post("/v1/responses", OpenAIBatches(store, "openai").response)
    app.router.add_post("/v1/embeddings", OpenAIBatches(store, "openai").embedding)


async def _json(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


class OpenAIBatches:
    def __init__(self, store: Store, flavour: str) -> None:
        self.store, self.flavour = store, flavour

    def add(self, app: web.Application, prefix: str) -> None:
        app.router.add_post(f"{prefix}/files", self.upload)
        app.router.add_get(f"{prefix}/files/{{file_id}}/content", self.content)
        app.router.add_post(f"{prefix}/batches", self.create)
        app.router.add_get(f"{prefix}/batches", self.listing)
        app.router.add_get(f"{prefix}/batches/{{batch_id}}", self.retrieve)
        app.router.add_post(f"{prefix}/batches/{{batch_id}}/cancel", self.cancel)

    def denied(self, request: web.Request) -> web.Response | None:
        key = self.store.api_key
        if key is None:
            return None
        given = request.headers.get("api-key") if self.flavour == "azure" else request.headers.get("Authorization")
        if given != (key if self.flavour == "azure" else f"Bearer {key}"):
            return openai_error(401, "Incorrect API key provided.", "invalid_api_key")
        return None

    async def response(self, request: web.Request) -> web.Response:
        """A normal Responses request (batch mode sends the rows a batch did not answer this way)."""
        if (denied := self.denied(request)) is not None:
            return denied
        return web.json_response(answer_now("responses", await request.json()))

    async def embedding(self, request: web.Request) -> web.Response:
        if (denied := self.denied(request)) is not None:
            return denied
        return web.json_response(answer_now("embeddings", await request.json()))

    async def upload(self, request: web.Request) -> web.Response:
        if (denied := self.denied(request)) is not None:
            return denied
        if not request.content_type.startswith("multipart/form-data"):
            return openai_error(400, "Expected a multipart/form-data body.", "invalid_request")
        fields: dict[str, str] = {}
        data, filename = None, "upload.jsonl"
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "file":
                data, filename = bytes(await part.read()), part.filename or filename
            elif part.name:
                fields[part.name] = await part.text()
        for name, value in (("purpose", fields.get("purpose")), ("file", data)):
            if value is None:
                return openai_error(400, f"Missing required parameter: '{name}'.", "missing_required_parameter")
        if fields["purpose"] not in PURPOSES:
            return openai_error(400, f"Invalid value for 'purpose': {fields['purpose']!r}.", "invalid_value")
        assert data is not None
        file_id = self.store.new_id("file-")
        self.store.files[file_id] = data
        meta = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": filename, "purpose": fields["purpose"], "status": "processed", "expires_at": None,
                "status_details": None}
        self.store.file_meta[file_id] = meta
        STATS["batch_files_uploaded"] += 1
        await self.store.delay("upload")
        return web.json_response(meta)

    async def content(self, request: web.Request) -> web.Response:
        if (denied := self.denied(request)) is not None:
            return denied
        file_id = request.match_info["file_id"]
        if file_id not in self.store.files:
            return openai_error(404, f"No such File object: {file_id}", "not_found")
        STATS["batch_downloads"] += 1
        return web.Response(body=self.store.files[file_id], content_type="application/octet-stream")

    async def create(self, request: web.Request) -> web.Response:
        if (denied := self.denied(request)) is not None:
            return denied
        body = await _json(request)
        if body is None:
            return openai_error(400, "We could not parse the JSON body of your request.", "invalid_json")
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(body.get(name), str):
                return openai_error(400, f"Missing required parameter: '{name}'.", "missing_required_parameter")
        file_id, endpoint, window = body["input_file_id"], body["endpoint"], body["completion_window"]
        if file_id not in self.store.files:
            return openai_error(404, f"No such File object: {file_id}", "not_found")
        if self.store.file_meta[file_id]["purpose"] != "batch":
            return openai_error(400, f"File {file_id} was not uploaded with purpose 'batch'.", "invalid_value")
        if endpoint not in ENDPOINTS[self.flavour]:
            return openai_error(400, f"Invalid value for 'endpoint': {endpoint!r} (this server answers "
                                     f"{', '.join(ENDPOINTS[self.flavour])}).", "invalid_value")
        if window not in self.store.windows:
            return openai_error(400, f"Invalid value for 'completion_window': {window!r}; supported: "
                                     f"{', '.join(self.store.windows)}.", "invalid_value")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict) or len(metadata) > 16 or any(
                not isinstance(v, str) or len(k) > 64 or len(v) > 512 for k, v in metadata.items()):
            return openai_error(400, "Invalid 'metadata': at most 16 string pairs, keys up to 64 and values up "
                                     "to 512 characters.", "invalid_value")
        items, problems = self.read_input(self.store.files[file_id], endpoint)
        batch = self.store.add(Batch(self.store.new_id("batch_"), "openai", items, endpoint=endpoint,
                                     input_file_id=file_id, completion_window=window, metadata=metadata,
                                     validation_errors=problems))
        await self.store.delay("create")
        return web.json_response(self.render(batch))

    def read_input(self, raw: bytes, endpoint: str) -> tuple[list[Item], list[dict[str, Any]]]:
        """The requests of an input file, and what its validation finds wrong (line numbers from 1)."""
        limits = self.store.limits
        items: list[Item] = []
        problems: list[dict[str, Any]] = []
        models: set[str] = set()

        def problem(code: str, message: str, line: int | None = None) -> None:
            problems.append({"code": code, "message": message, "param": None, "line": line})

        if len(raw) > limits.openai_max_bytes:
            problem("file_too_large", f"The input file is {len(raw)} bytes; the limit is {limits.openai_max_bytes}.")
        kind = "responses" if endpoint.endswith("/responses") else \
            "embeddings" if endpoint.endswith("/embeddings") else "chat"
        lines = raw.decode("utf-8", "replace").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if len(lines) > limits.openai_max_requests:
            problem("too_many_requests", f"The input file has {len(lines)} requests; the limit is "
                                         f"{limits.openai_max_requests}.")
        seen: set[str] = set()
        for number, text in enumerate(lines, 1):
            try:
                line = json.loads(text)
            except ValueError:
                line = None
            if not isinstance(line, dict):
                problem("invalid_json_line", "This line is not a JSON object.", number)
                continue
            custom_id, body = line.get("custom_id"), line.get("body")
            if not isinstance(custom_id, str) or not isinstance(body, dict):
                problem("missing_required_parameter", "Each line needs a string custom_id and an object body.", number)
                continue
            if custom_id in seen:
                problem("duplicate_custom_id", f"The custom_id {custom_id!r} is used more than once.", number)
            if line.get("method") != "POST":
                problem("invalid_method", "The method must be POST.", number)
            if line.get("url") != endpoint:
                problem("mismatched_url", f"The url {line.get('url')!r} is not the batch endpoint {endpoint}.", number)
            if not isinstance(body.get("model"), str):
                problem("missing_required_parameter", "The body has no model.", number)
            models.add(str(body.get("model")))
            if len(models) > 1:
                problem("mismatched_model", "All requests in a batch must use the same model.", number)
                models = {str(body.get("model"))}
            seen.add(custom_id)
            items.append(Item(custom_id, kind, body))
        if not lines:
            problem("empty_file", "The input file has no requests.")
        return items, problems

    def publish(self, batch: Batch) -> None:
        """Write the output and error files of a batch that has just ended (once)."""
        if not batch.terminal or batch.stage == "failed" or batch.output_file_id or batch.error_file_id:
            return
        output, errors = [], []
        for item in sorted(batch.items, key=lambda i: -i.seq):  # not in input order, as documented
            line: dict[str, Any] = {"id": f"batch_req_{item.seq:06d}", "custom_id": item.custom_id,
                                    "response": None, "error": None}
            if item.outcome == "succeeded":
                line["response"] = {"status_code": 200, "request_id": f"req_{item.seq:06d}", "body": item.reply}
                output.append(line)
                continue
            if item.outcome == "errored":
                line["response"] = {"status_code": item.status, "request_id": f"req_{item.seq:06d}",
                                    "body": openai_error_body(item.status, f"fake item error {item.status}")}
            else:
                code, message = UNFINISHED[item.outcome]
                line["error"] = {"code": code, "message": message}
            errors.append(line)
        for lines, attr in ((output, "output_file_id"), (errors, "error_file_id")):
            if lines:
                file_id = self.store.new_id("file-")
                self.store.files[file_id] = "".join(json.dumps(x) + "\n" for x in lines).encode()
                self.store.file_meta[file_id] = {"purpose": "batch_output"}
                setattr(batch, attr, file_id)

    def render(self, batch: Batch) -> dict[str, Any]:
        self.publish(batch)
        t = batch.times
        failed = batch.count("errored") + (batch.count("expired", "canceled") if batch.terminal else 0)
        errors = batch.validation_errors or (
            [{"code": "batch_failed", "message": batch.reason or "The batch failed.", "param": None, "line": None}]
            if batch.stage == "failed" else [])
        return {
            "id": batch.id, "object": "batch", "endpoint": batch.endpoint,
            "errors": {"object": "list", "data": errors} if errors else None,
            "input_file_id": batch.input_file_id, "completion_window": batch.completion_window,
            "status": batch.native, "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
            "created_at": t["created"], "in_progress_at": t.get("running"), "expires_at": t["created"] + 86400,
            "finalizing_at": t.get("finalizing"), "completed_at": t.get("completed"), "failed_at": t.get("failed"),
            "expired_at": t.get("expired"), "cancelling_at": t.get("cancelling"), "cancelled_at": t.get("cancelled"),
            "request_counts": {"total": 0 if batch.stage == "queued" else len(batch.items),
                               "completed": batch.count("succeeded"), "failed": failed},
            "metadata": (batch.metadata or None) if self.store.faults.echo_metadata else None,
        }

    def find(self, request: web.Request) -> Batch | None:
        batch = self.store.batches.get(request.match_info["batch_id"])
        return batch if batch is not None and batch.api == "openai" else None

    async def retrieve(self, request: web.Request) -> web.Response:
        if (denied := self.denied(request)) is not None:
            return denied
        batch = self.find(request)
        if batch is None:
            return openai_error(404, f"No such Batch object: {request.match_info['batch_id']}", "not_found")
        return web.json_response(self.render(self.store.polled(batch)))

    async def cancel(self, request: web.Request) -> web.Response:
        if (denied := self.denied(request)) is not None:
            return denied
        batch = self.find(request)
        if batch is None:
            return openai_error(404, f"No such Batch object: {request.match_info['batch_id']}", "not_found")
        if batch.terminal or batch.stage == "cancelling":
            return openai_error(409, f"Cannot cancel a batch with status '{batch.native}'.", "invalid_state")
        batch.cancel()
        return web.json_response(self.render(batch))

    async def listing(self, request: web.Request) -> web.Response:
        if (denied := self.denied(request)) is not None:
            return denied
        mine = [b for b in reversed(self.store.batches.values()) if b.api == "openai"]
        page, more = page_of(mine, request.query.get("after"), int(request.query.get("limit", 20)))
        data = [self.render(b) for b in page]
        return web.json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None,
                                  "has_more": more})
