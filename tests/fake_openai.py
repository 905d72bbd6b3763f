"""A small OpenAI-compatible test server (aiohttp), run as its own process on 127.0.0.1.

    python -m tests.fake_openai --port 0 [--api-key K] [--latency-ms 50] [--models a,b]

prints ``PORT <n>`` once it listens. The answer to a chat completion is
deterministic: ``echo: <last user message>``, or a JSON object when the request
asks for ``response_format`` json. Behaviour is chosen per request with the
``x-fake`` header (a comma list), or per row with ``[[fake:<behaviour>]]`` inside a
message, so one server serves every test:

- ``status-<code>``: answer with that status and an OpenAI-shaped error body
- ``flaky-<code>-<n>``: that status for the first n requests carrying the same
  ``x-fake-key``, then a normal answer (exercises retries)
- ``retry-after-<s>``: add ``Retry-After: s`` to error answers
- ``bad-json``: a 200 whose body is not JSON
- ``cut-stream``: an SSE stream cut before ``finish_reason`` and ``[DONE]``
- ``chunk-<n>``: write the SSE stream in n-byte pieces (events split across reads)
- ``hang``: never answer (timeouts)
- ``json-answer``: answer with a JSON object of fields sentiment/score

``GET /_stats`` returns request counts; the tests assert on them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from typing import Any

from aiohttp import web

STATS: Counter[str] = Counter()
FLAKY: Counter[str] = Counter()


def _error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _answer_text(body: dict[str, Any], behaviours: set[str]) -> str:
    messages = body.get("messages") or []
    user = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    if "json-answer" in behaviours or (body.get("response_format") or {}).get("type", "").startswith("json"):
        score = len(str(user)) % 10 / 10
        return json.dumps({"sentiment": "positive" if score >= 0.5 else "negative", "score": score})
    return f"echo: {user}"


def make_app(api_key: str | None, latency_ms: float, models: list[str]) -> web.Application:
    async def authorised(request: web.Request) -> web.Response | None:
        if api_key and request.headers.get("Authorization") != f"Bearer {api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        return None

    async def list_models(request: web.Request) -> web.Response:
        STATS["models"] += 1
        denied = await authorised(request)
        if denied:
            return denied
        return web.json_response({"object": "list", "data": [{"id": m, "object": "model"} for m in models]})

    async def chat(request: web.Request) -> web.StreamResponse:
        STATS["chat"] += 1
        behaviours = set(filter(None, request.headers.get("x-fake", "").split(",")))
        denied = await authorised(request)
        if denied:
            return denied
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "We could not parse the JSON body of your request.", "invalid_json")
        # A row can pick its own behaviour: "[[fake:status-500]]" in a message.
        for message in body.get("messages") or []:
            content = str(message.get("content", ""))
            if "[[fake:" in content:
                behaviours.add(content.split("[[fake:", 1)[1].split("]]", 1)[0])
        extra: dict[str, str] = {}
        for b in behaviours:
            if b.startswith("retry-after-"):
                extra["Retry-After"] = b.removeprefix("retry-after-")
        for b in behaviours:
            if b.startswith("status-"):
                code = int(b.removeprefix("status-"))
                return _error(code, f"fake status {code}", f"fake_{code}", extra)
            if b.startswith("flaky-"):
                _, code, times = b.split("-")
                key = request.headers.get("x-fake-key", "") + json.dumps(body.get("messages"))
                FLAKY[key] += 1
                if FLAKY[key] <= int(times):
                    return _error(int(code), f"fake flaky {code}", f"fake_{code}", extra)
        if "hang" in behaviours:
            await asyncio.sleep(3600)
        if models and body.get("model") not in models:
            return _error(404, f"The model `{body.get('model')}` does not exist.", "model_not_found")
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)
        if "bad-json" in behaviours:
            return web.Response(text="<html>upstream error</html>", content_type="text/html")
        text = _answer_text(body, behaviours)
        model = body.get("model") or "fake-model"
        usage = {"prompt_tokens": len(json.dumps(body.get("messages"))) // 4, "completion_tokens": len(text) // 4}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not body.get("stream"):
            return web.json_response({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage,
            })
        return await _stream(request, model, text, usage, behaviours)

    async def _stream(request: web.Request, model: str, text: str, usage: dict[str, int],
                      behaviours: set[str]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model}
        events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
        events += [{**base, "choices": [{"index": 0, "delta": {"content": text[i:i + 3]}}]}
                   for i in range(0, len(text), 3)]
        cut = "cut-stream" in behaviours
        if not cut:
            events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            events.append({**base, "choices": [], "usage": usage})
        payload = "".join(f"data: {json.dumps(e, ensure_ascii=False)}\n\n" for e in events)
        if not cut:
            payload += "data: [DONE]\n\n"
        raw = payload.encode()
        size = next((int(b.removeprefix("chunk-")) for b in behaviours if b.startswith("chunk-")), len(raw))
        for i in range(0, len(raw), size):
            await resp.write(raw[i:i + size])
        await resp.write_eof()
        return resp

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(dict(STATS))

    app = web.Application()
    app.add_routes([
        web.get("/v1/models", list_models),
        web.post("/v1/chat/completions", chat),
        web.get("/_stats", stats),
    ])
    return app


async def _serve(args: argparse.Namespace) -> None:
    models = [m for m in args.models.split(",") if m]
    runner = web.AppRunner(make_app(args.api_key, args.latency_ms, models), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=4096)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {port}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--models", default="")
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
