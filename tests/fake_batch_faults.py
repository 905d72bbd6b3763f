"""Faults and quirks of the fake batch server (tests/fake_batch.py): what a real provider does on a bad day.

``POST /_fault {route, status?, when?, cut?, hang?, retry_after?, times?, api?}`` plans a fault for
the next ``times`` (1) calls of a route of the batch APIs:

- ``route``: ``upload`` (OpenAI ``POST /files``), ``create`` (``POST /batches``, ``POST
  /messages/batches``, ``:batchGenerateContent``), ``list``, ``poll`` (``GET`` one batch; for Gemini
  also where its results are read), ``download`` (an OpenAI file's content, Anthropic's results)
  or ``cancel``; ``api`` (``openai``, ``anthropic``, ``gemini``) narrows it to one API.
- ``when``: ``before`` (default) answers ``status`` without doing the work (a 429: nothing was
  created); ``after`` does the work (the file is stored, the batch created) and then answers
  ``status`` instead of the real answer: the 5xx that does not prove nothing was created.
- ``cut``: no answer at all, the connection closed (``before`` or ``after`` the work);
  ``hang``: seconds to wait before answering (after the work, so a client timeout meets a batch
  that exists); ``retry_after``: the ``Retry-After`` header sent with ``status``.

``POST /_fault {}`` clears the plan. Each fault that fired counts in ``/_stats`` as ``batch_faults``.

``POST /_quirks {echo_metadata: false}``: a provider that accepts the caller's batch ``metadata``
(OpenAI) and ``displayName`` (Gemini) but does not echo them when a batch is read or listed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fake_batch_answers import anthropic_error, openai_error_body
from tests.fake_openai import STATS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_OPENAI = r"(?:/v1|/openai|/openai/v1)"
ROUTES: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("upload", "POST", re.compile(rf"^{_OPENAI}/files$")),
    ("download", "GET", re.compile(rf"^{_OPENAI}/files/[^/]+/content$|^/v1/messages/batches/[^/]+/results$")),
    ("create", "POST", re.compile(rf"^{_OPENAI}/batches$|^/v1/messages/batches$|^/v1beta/models/[^/]+:batchGenerate")),
    ("cancel", "POST", re.compile(r"/cancel$|:cancel$")),
    ("list", "GET", re.compile(rf"^{_OPENAI}/batches$|^/v1/messages/batches$|^/v1beta/batches$")),
    ("poll", "GET", re.compile(rf"^{_OPENAI}/batches/[^/]+$|^/v1/messages/batches/[^/]+$|^/v1beta/batches/[^/]+$")),
)


def route_of(method: str, path: str) -> tuple[str, str] | None:
    """The batch route a request is for, and its API; None for any other request."""
    api = "anthropic" if path.startswith("/v1/messages") else "gemini" if path.startswith("/v1beta") else "openai"
    for name, verb, pattern in ROUTES:
        if method == verb and pattern.search(path):
            return name, api
    return None


@dataclass
class Fault:
    """One planned fault (see the module docstring)."""

    route: str
    status: int = 500
    when: str = "before"
    cut: bool = False
    hang: float = 0.0
    retry_after: str | None = None
    times: int = 1
    api: str | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Fault:
        fault = cls(**{k: v for k, v in body.items() if k in cls.__dataclass_fields__})
        if fault.route not in {name for name, _, _ in ROUTES} or fault.when not in ("before", "after"):
            raise ValueError(f"route must be one of {[n for n, _, _ in ROUTES]} and when before or after")
        return fault


def error_response(api: str, status: int, retry_after: str | None) -> web.Response:
    """The provider's own error body for ``status``."""
    message = f"fake fault {status}"
    body: dict[str, Any] = (anthropic_error(status, message) if api == "anthropic"
                            else {"error": {"code": status, "message": message, "status": "INTERNAL"}}
                            if api == "gemini" else openai_error_body(status, message))
    return web.json_response(body, status=status, headers={"Retry-After": retry_after} if retry_after else None)


@dataclass
class Faults:
    """The planned faults, and the middleware that applies them."""

    planned: list[Fault] = field(default_factory=list)
    echo_metadata: bool = True

    def take(self, route: str, api: str) -> Fault | None:
        for fault in self.planned:
            if fault.route == route and fault.api in (None, api):
                fault.times -= 1
                if fault.times <= 0:
                    self.planned.remove(fault)
                STATS["batch_faults"] += 1
                return fault
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        found = route_of(request.method, request.path)
        fault = self.take(*found) if found is not None else None
        if fault is None:
            return await handler(request)
        if fault.when == "after":
            answer = await handler(request)  # the work is done: a file stored, a batch created
            if fault.hang:
                await asyncio.sleep(fault.hang)
                return answer
        if fault.cut:
            if request.transport is not None:
                request.transport.close()  # no byte of an answer
            return web.Response()
        return error_response(found[1] if found else "openai", fault.status, fault.retry_after)

    async def plan(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        if not body:
            self.planned.clear()
            return web.json_response({"planned": 0})
        try:
            self.planned.append(Fault.from_json(body))
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"planned": len(self.planned)})

    async def quirks(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.echo_metadata = bool(body.get("echo_metadata", True))
        return web.json_response({"echo_metadata": self.echo_metadata})

    def add(self, app: web.Application) -> None:
        app.router.add_post("/_fault", self.plan)
        app.router.add_post("/_quirks", self.quirks)
        app.middlewares.append(self.middleware)
