"""A test server for the providers' batch APIs (aiohttp), run as its own process on 127.0.0.1.

    python -m tests.fake_batch --port 0 [--api-key K] [--advance-every N] [--windows 24h]
        [--openai-max-requests 50000] [--openai-max-bytes 209715200]
        [--anthropic-max-requests 100000] [--anthropic-max-bytes 268435456] [--gemini-max-bytes 20971520]

prints ``PORT <n>`` once it listens. It is tests/fake_openai.py's app (chat completions,
``/_stats``) plus the batch APIs, built from their published references:

- OpenAI Files + Batch (platform.openai.com/docs/api-reference/files, .../batch and the Batch
  guide; the same API at ``/openai/...`` for Azure OpenAI global batch, learn.microsoft.com
  azure/ai-foundry/openai/how-to/batch): ``POST /v1/files`` (multipart, ``purpose=batch``),
  ``POST /v1/batches`` (``input_file_id``, ``endpoint``, ``completion_window``, ``metadata``),
  ``GET /v1/batches[/{id}]``, ``POST /v1/batches/{id}/cancel``, ``GET /v1/files/{id}/content``.
  Input lines ``{custom_id, method, url, body}``; at most 50,000 requests and 200 MB per file,
  one model per file, unique custom_ids. Statuses validating, in_progress, finalizing,
  completed, failed (``errors.data[{code, message, param, line}]``), expired, cancelling,
  cancelled; ``request_counts {total, completed, failed}``. Output and error files are JSONL
  lines ``{id, custom_id, response: {status_code, request_id, body}, error}``; requests left
  unfinished by expiry or a cancel are error lines with ``error.code`` ``batch_expired`` /
  ``batch_cancelled``; lines are not in input order.
- Anthropic Message Batches (docs.anthropic.com/en/api/creating-message-batches,
  .../retrieving-message-batches, .../retrieving-message-batch-results and the batch-processing
  guide): ``POST /v1/messages/batches`` (``requests: [{custom_id, params}]``, custom_id
  ``^[a-zA-Z0-9_-]{1,64}$``, at most 100,000 requests or 256 MB), ``GET`` and ``cancel``;
  ``processing_status`` in_progress, canceling, ended; ``request_counts {processing, succeeded,
  errored, canceled, expired}``; ``results_url`` (JSONL ``{custom_id, result: {type: succeeded |
  errored | canceled | expired, ...}}``, in any order) once ended.
- Gemini Batch Mode (ai.google.dev/api/batch-mode and the gemini-api/docs/batch-mode guide):
  ``POST /v1beta/models/{model}:batchGenerateContent`` with ``batch.inputConfig.requests.requests
  [{request, metadata}]`` (inline, under 20 MB); the answer and ``GET /v1beta/batches/{id}`` are
  a long-running Operation whose ``metadata`` is the GenerateContentBatch (``state``
  BATCH_STATE_PENDING / RUNNING / SUCCEEDED / FAILED / CANCELLED / EXPIRED, ``batchStats`` with
  int64 counts as strings, zeros omitted) and, once ``done``, ``response`` (and
  ``metadata.output``) ``inlinedResponses.inlinedResponses[{response | error, metadata}]`` in
  request order; an expired batch has no results; ``POST /v1beta/batches/{id}:cancel``.

Beside the batches it answers normal requests too, as batch mode sends the rows a batch did not
answer: chat completions (fake_openai's), ``POST /v1/responses``, ``POST /v1/messages`` and
``POST /v1beta/models/{model}:generateContent``.

Details the references leave open are this server's own choices: the codes of OpenAI
validation errors, the status of a cancel on a finished batch (409), what the results URL
answers before a batch ended (400), and that a cancelled Gemini batch returns the answers it has.

Control (tests/fake_batch_lifecycle.py has the lifecycle; :class:`Control` is a client for it):
``POST /_plan {outcome: complete | expire | fail, reason?, id?}`` sets how batches created from now on
(or batch ``id``) end; ``POST /_delay {upload?, create?}`` holds the answers to uploads and creates
(done at once) that many seconds, so a client can be killed while waiting for them;
``POST /_fault {route, status?, when?, cut?, hang?, retry_after?, times?}`` plans a 5xx, a 429 or a cut
connection on a route, before or after the work, and ``POST /_quirks {echo_metadata: false}`` makes
a provider that does not echo batch metadata (tests/fake_batch_faults.py);
``POST /_advance {id?, steps?}`` moves batches along; ``--advance-every N`` also advances a
batch on every Nth poll of it (0: only ``/_advance``). ``GET /_batches`` lists every batch
with its items' outcomes, ``GET /_bodies`` every item's request body by custom_id. ``GET /_stats``
(fake_openai's) adds ``batch_files_uploaded``,
``batch_created[_<api>]``, ``batch_requests``, ``batch_custom_ids_twice``,
``batch_requests_per_custom_id_max``, ``batch_polls``, ``batch_downloads``, ``batch_cancels``,
``batch_items_<outcome>``, ``batch_faults``; a successful item counts in ``answers`` / ``bodies_answered_twice``
like a synchronous answer, so "nothing bought twice" holds across batch and normal requests.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests import fake_batch_anthropic, fake_batch_gemini, fake_batch_openai
from tests.fake_batch_faults import Faults
from tests.fake_batch_lifecycle import COUNTERS, OUTCOMES, Batch
from tests.fake_openai import STATS, make_app, serve


@dataclass
class Limits:
    """Per-API limits, the documented ones by default; tests lower them to exercise chunking."""

    openai_max_requests: int = 50_000
    openai_max_bytes: int = 200 * 1024 * 1024
    anthropic_max_requests: int = 100_000
    anthropic_max_bytes: int = 256 * 1024 * 1024
    gemini_max_bytes: int = 20 * 1024 * 1024


@dataclass
class Store:
    """Everything the server holds: files, batches, the plan for new batches."""

    api_key: str | None
    advance_every: int
    windows: tuple[str, ...]
    limits: Limits
    files: dict[str, bytes] = field(default_factory=dict)
    file_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches: dict[str, Batch] = field(default_factory=dict)
    plan: str = "complete"
    reason: str = ""
    delays: dict[str, float] = field(default_factory=dict)  # seconds before answering an upload, a create
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    faults: Faults = field(default_factory=Faults)  # planned 5xx, 429, cut connections; quirks

    async def delay(self, what: str) -> None:
        """Hold the answer to an upload or a create (already done) so a test can kill the client meanwhile."""
        await asyncio.sleep(self.delays.get(what, 0.0))

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self.ids):06d}"

    def add(self, batch: Batch) -> Batch:
        if not batch.validation_errors and self.plan != "complete":
            batch.replan(self.plan, self.reason)
        self.batches[batch.id] = batch
        return batch

    def polled(self, batch: Batch) -> Batch:
        """A poll: counted, and every ``advance_every``-th one moves the batch on."""
        STATS["batch_polls"] += 1
        batch.polls += 1
        if self.advance_every and batch.polls % self.advance_every == 0:
            batch.advance()
        return batch


def make_batch_app(store: Store) -> web.Application:
    """fake_openai's app with the batch APIs and the control endpoints added."""
    STATS.update({name: 0 for name in COUNTERS})  # every counter in /_stats, 0 until it counts

    async def plan(request: web.Request) -> web.Response:
        body = await request.json()
        outcome = body.get("outcome", "complete")
        if outcome not in OUTCOMES:
            return web.json_response({"error": f"outcome must be one of {OUTCOMES}"}, status=400)
        if body.get("id"):
            batch = store.batches.get(str(body["id"]))
            if batch is None or batch.terminal or batch.stage == "cancelling":
                return web.json_response({"error": "no such batch in flight"}, status=404)
            batch.replan(outcome, str(body.get("reason", "")))
        else:
            store.plan, store.reason = outcome, str(body.get("reason", ""))
        return web.json_response({"plan": outcome})

    async def advance(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        chosen = [store.batches[body["id"]]] if body.get("id") in store.batches else list(store.batches.values())
        for _ in range(int(body.get("steps", 1))):
            for batch in chosen:
                batch.advance()
        return web.json_response({"batches": [{"id": b.id, "stage": b.stage, "status": b.native} for b in chosen]})

    async def listing(_: web.Request) -> web.Response:
        return web.json_response({"batches": [
            {"id": b.id, "api": b.api, "stage": b.stage, "status": b.native, "plan": b.plan,
             "items": {i.custom_id: i.outcome for i in b.items}} for b in store.batches.values()]})

    async def bodies(_: web.Request) -> web.Response:
        """Each item's request as the provider holds it (an OpenAI line's body, Anthropic params, Gemini request)."""
        return web.json_response({i.custom_id: i.body for b in store.batches.values() for i in b.items})

    async def delay(request: web.Request) -> web.Response:
        body = await request.json()
        store.delays.update({k: float(v) for k, v in body.items() if k in ("upload", "create")})
        return web.json_response({"delays": store.delays})

    def routes(app: web.Application) -> None:
        for api in (fake_batch_openai, fake_batch_anthropic, fake_batch_gemini):
            api.add_routes(app, store)
        app.router.add_post("/_plan", plan)
        app.router.add_post("/_delay", delay)
        app.router.add_post("/_advance", advance)
        app.router.add_get("/_batches", listing)
        app.router.add_get("/_bodies", bodies)
        store.faults.add(app)

    return make_app(store.api_key, 0, [], more_routes=routes)


@dataclass
class Control:
    """A test's handle on a running fake batch server: its control endpoints and counters."""

    origin: str  # http://127.0.0.1:<port>

    def call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.origin + path, data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(request, timeout=10) as reply:
            return dict(json.load(reply))

    def stats(self) -> dict[str, int]:
        return self.call("/_stats")

    def batches(self) -> list[dict[str, Any]]:
        return list(self.call("/_batches")["batches"])

    def bodies(self) -> dict[str, dict[str, Any]]:
        """Every batch item's request body by custom_id."""
        return self.call("/_bodies")

    def advance(self, batch_id: str | None = None, steps: int = 1) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"steps": steps, **({"id": batch_id} if batch_id else {})}
        return list(self.call("/_advance", body)["batches"])

    def plan(self, outcome: str, batch_id: str | None = None, reason: str = "") -> None:
        self.call("/_plan", {"outcome": outcome, "reason": reason, **({"id": batch_id} if batch_id else {})})

    def delay(self, **seconds: float) -> None:
        self.call("/_delay", {"upload": 0, "create": 0, **seconds})

    def fault(self, route: str, **how: Any) -> None:
        """Plan a fault (tests/fake_batch_faults.py): ``fault("create", status=502, when="after")``."""
        self.call("/_fault", {"route": route, **how})

    def clear_faults(self) -> None:
        self.call("/_fault", {})

    def quirks(self, echo_metadata: bool = True) -> None:
        self.call("/_quirks", {"echo_metadata": echo_metadata})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--advance-every", type=int, default=1, help="advance a batch every N polls (0: never)")
    parser.add_argument("--windows", default="24h", help="accepted completion_window values, comma separated")
    defaults = Limits()
    for name in vars(defaults):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    args = parser.parse_args()
    limits = Limits(**{name: getattr(args, name) for name in vars(defaults)})
    store = Store(args.api_key, args.advance_every, tuple(w for w in args.windows.split(",") if w), limits)
    asyncio.run(serve(make_batch_app(store), args.port))


if __name__ == "__main__":
    main()
