"""A chat-completions mock that answers packed requests (``rows_per_request``) as well as single rows.

    .venv/bin/python -m bench.packmock [--port 0] [--base-ms 100] [--ms-per-token 5]   # prints "PORT <n>"

Each answer takes ``base-ms`` plus ``ms-per-token`` for every completion token (a model decodes its answer
token by token: a packed answer of 50 rows takes longer than one row's), so wall times are not flattered by a
fixed latency. Tokens are counted as the connector's offline estimate does, characters / 4: the prompt is
the messages' JSON, the completion the answer's text. A packed request (``response_format`` json_schema
``answers_by_id``) is answered with ``{"<id>": "positive" | "negative", ...}`` for every id asked, a single row
with the word alone. ``GET /stats`` gives requests, packed requests, prompt and completion tokens so far;
``POST /reset`` zeroes them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
from collections import Counter
from typing import Any

from aiohttp import web

STATS: Counter[str] = Counter()


def _word(text: str) -> str:
    return "positive" if sum(map(ord, text)) % 2 else "negative"


def answer(body: dict[str, Any]) -> str:
    """The answer text to a chat body: each id's word for a packed one, the row's word otherwise."""
    user = str(body["messages"][-1]["content"])
    form = body.get("response_format") or {}
    if (form.get("json_schema") or {}).get("name") == "answers_by_id":
        STATS["packed"] += 1
        rows = json.loads(user[user.index("\n\n{") + 2:])
        return json.dumps({i: _word(t) for i, t in rows.items()})
    return _word(user)


def make_app(base_ms: float, ms_per_token: float) -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        text = answer(body)
        prompt, completion = len(json.dumps(body["messages"])) // 4, max(len(text) // 4, 1)
        STATS["requests"] += 1
        STATS["prompt_tokens"] += prompt
        STATS["completion_tokens"] += completion
        await asyncio.sleep((base_ms + ms_per_token * completion) / 1000)
        return web.json_response({
            "id": "chatcmpl-pack", "object": "chat.completion", "created": 1700000000, "model": "bench-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}})

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(dict(STATS))

    async def reset(_: web.Request) -> web.Response:
        STATS.clear()
        return web.json_response({})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    return app


async def _serve(port: int, base_ms: float, ms_per_token: float) -> None:
    runner = web.AppRunner(make_app(base_ms, ms_per_token))
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    await web.SockSite(runner, sock).start()
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--base-ms", type=float, default=100)
    parser.add_argument("--ms-per-token", type=float, default=5)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.base_ms, args.ms_per_token))


if __name__ == "__main__":
    main()
