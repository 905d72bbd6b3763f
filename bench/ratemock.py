"""A chat-completions endpoint with OpenAI-style rate limits: a request bucket and a token bucket.

    python -m bench.ratemock --rpm 600 --tpm 100000 [--latency-ms 50] [--port 0]   # prints "PORT <n>"

Each bucket holds a minute's limit and refills continuously (limit / 60 a second), as OpenAI and
Anthropic describe theirs. A request is admitted when the request bucket has one left and the
token bucket holds its tokens: the prompt's characters / 4 plus its ``max_tokens`` (16 when
unset), as OpenAI counts a request when it arrives; otherwise it gets a 429 at once, with
OpenAI's error body (``rate_limit_exceeded``) and no Retry-After. Every answer carries
``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests``
(the time until the bucket is full again, ``1.2s`` / ``340ms``) and the same for ``-tokens``.
The reply's ``usage`` reports the prompt tokens counted and 7 completion tokens.

``POST /reset?start=empty|full`` empties or fills both buckets and zeroes the counters (the bench
does it before each client); ``GET /stats`` returns the counts and the times of the first and
last admitted requests.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from aiohttp import web

COMPLETION = 7


class Bucket:
    """A minute's ``limit``, refilled continuously."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.level = limit
        self.stamp = time.monotonic()

    def refill(self, now: float) -> None:
        self.level = min(self.limit, self.level + (now - self.stamp) * self.limit / 60.0)
        self.stamp = now

    def reset_in(self) -> str:
        seconds = (self.limit - self.level) * 60.0 / self.limit
        return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


class Endpoint:
    def __init__(self, rpm: float, tpm: float, latency: float) -> None:
        self.requests, self.tokens, self.latency = Bucket(rpm), Bucket(tpm), latency
        self.stats: dict[str, Any] = {}
        self.reset("full")

    def reset(self, start: str) -> None:
        now = time.monotonic()
        for bucket in (self.requests, self.tokens):
            bucket.level, bucket.stamp = (bucket.limit if start == "full" else 0.0), now
        self.stats = {"answered": 0, "refused": 0, "refused_tokens": 0, "tokens": 0, "times": []}
        self._first: float | None = None

    def headers(self) -> dict[str, str]:
        out = {}
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            out[f"x-ratelimit-limit-{kind}"] = f"{bucket.limit:.0f}"
            out[f"x-ratelimit-remaining-{kind}"] = f"{max(0, int(bucket.level))}"
            out[f"x-ratelimit-reset-{kind}"] = bucket.reset_in()
        return out

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        prompt = sum(len(str(m.get("content", ""))) for m in body.get("messages", [])) // 4 + 1
        cost = prompt + int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
        now = time.monotonic()
        self.requests.refill(now)
        self.tokens.refill(now)
        if self.requests.level < 1 or self.tokens.level < cost:
            kind = "requests" if self.requests.level < 1 else "tokens"
            self.stats["refused"] += 1
            self.stats["refused_tokens"] += kind == "tokens"
            error = {"error": {"message": f"Rate limit reached for {kind}", "type": kind,
                               "param": None, "code": "rate_limit_exceeded"}}
            return web.json_response(error, status=429, headers=self.headers())
        self.requests.level -= 1
        self.tokens.level -= cost
        stats = self.stats
        stats["answered"] += 1
        stats["tokens"] += cost
        self._first = self._first if self._first is not None else now
        stats["times"].append(now - self._first)  # admitted, seconds after the first
        headers = self.headers()
        if self.latency:
            await asyncio.sleep(self.latency)
        reply = {"id": "chatcmpl-rate", "object": "chat.completion", "created": 1700000000,
                 "model": body.get("model", "bench-model"),
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": '{"sentiment": "positive"}'}}],
                 "usage": {"prompt_tokens": prompt, "completion_tokens": COMPLETION,
                           "total_tokens": prompt + COMPLETION}}
        return web.json_response(reply, headers=headers)

    async def models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "bench-model", "object": "model"}]})

    async def reset_handler(self, request: web.Request) -> web.Response:
        self.reset(request.query.get("start", "full"))
        return web.json_response({"ok": True})

    async def stats_handler(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats)


async def serve(host: str, port: int, endpoint: Endpoint) -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", endpoint.chat)
    app.router.add_get("/v1/models", endpoint.models)
    app.router.add_post("/reset", endpoint.reset_handler)
    app.router.add_get("/stats", endpoint.stats_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {bound}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rpm", type=float, default=600)
    parser.add_argument("--tpm", type=float, default=100_000)
    parser.add_argument("--latency-ms", type=float, default=50)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, Endpoint(args.rpm, args.tpm, args.latency_ms / 1000)))


if __name__ == "__main__":
    main()
