"""A small OpenAI-compatible test server (aiohttp), run as its own process on 127.0.0.1.

    python -m tests.fake_openai --port 0 [--api-key K] [--latency-ms 50] [--models a,b]
        [--faults 429:0.05,500:0.05,503:0.05,reset:0.03,hang:0.01,badjson:0.03,cut:0.03]
        [--seed 7] [--max-body-bytes N] [--hang-seconds S] [--tls-cert C --tls-key K]

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
- ``model-ignored``: answer whatever model is asked for, as a single-model server does
- ``model-400``: refuse an unknown model with 400 in LiteLLM's words, as gateways do
- ``echo-answer``: a 200 whose answer is what ``echo-request`` says (chat completions and
  generateContent): an echoed secret in the answer itself
- ``echo-request``: a 400 whose error message echoes the request line (URL and query) and
  every header, as JSON and again percent-encoded, as some gateways do; also on any path the
  server does not know, chosen there by the header or by the marker anywhere in the body

Any ``POST .../models/<m>:generateContent`` (Gemini, Vertex) answers ``echo: <last user text>``.

``POST /token`` is an OAuth token endpoint (service-account JWT grant) answering
``--oauth-token`` followed by ``-<n>``, a new token each time, for Vertex credentials whose
``token_uri`` points here.

``--faults`` injects failures at random into chat completions, at the given rate
each, drawn per request from an RNG seeded with ``--seed``, the request body and
how many times that body was seen (so a run is reproducible whatever the arrival
order): ``429`` (with ``Retry-After: 0`` or ``retry-after-ms: 10``), ``500``,
``503``, ``reset`` (the connection is closed without an answer), ``hang`` (no
answer for ``--hang-seconds``, then the connection is closed), ``badjson`` (a 200
whose body is not JSON, or a stream event that is not), ``cut`` (an SSE stream cut
before ``finish_reason`` and ``[DONE]``, or a JSON body cut short by a closed
connection). ``--max-body-bytes`` answers 413 to larger request bodies.

``GET /_stats`` returns request counts; the tests assert on them. Besides ``chat``
and ``models`` (requests received) it counts complete successful answers:
``answers`` in all, ``bodies_answered`` (distinct request bodies answered),
``answers_per_body_max`` and ``bodies_answered_twice`` (which must stay 0 when
the client caches), ``requests_per_body_max``, and ``fault_<kind>`` per injected
fault. ``GET /_answers`` maps each canonical request body (JSON text) to the
number of successful answers it got, ``GET /_requests`` to the number of requests.

Misbehaving endpoints (trickled bodies, endless keep-alive streams, huge waits,
malformed replies, unusual wire forms) are modes of :mod:`tests.hostile_modes`,
picked the same way: ``[[fake:trickle-json]]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

from tests import hostile_modes

STATS: Counter[str] = Counter()
FLAKY: Counter[str] = Counter()
REQUESTS: Counter[str] = Counter()  # canonical body -> requests received
ANSWERS: Counter[str] = Counter()  # canonical body -> complete successful answers sent

FAULT_KINDS = ("429", "500", "503", "reset", "hang", "badjson", "cut")


def parse_faults(text: str) -> list[tuple[str, float]]:
    """``"429:0.05,reset:0.03"`` -> [("429", 0.05), ("reset", 0.03)]."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, rate = part.partition(":")
        if kind not in FAULT_KINDS or not rate:
            raise SystemExit(f"--faults: '{part}' is not <kind>:<rate> with kind in {', '.join(FAULT_KINDS)}")
        out.append((kind, float(rate)))
    if sum(rate for _, rate in out) > 1:
        raise SystemExit("--faults: the rates add up to more than 1")
    return out


def draw_fault(faults: list[tuple[str, float]], seed: int, body_key: str, nth: int) -> tuple[str | None, float]:
    """The fault for the nth request carrying this body (or None), and a second draw for variants."""
    rng = random.Random(f"{seed}:{nth}:{body_key}")
    roll, variant = rng.random(), rng.random()
    for kind, rate in faults:
        if roll < rate:
            return kind, variant
        roll -= rate
    return None, variant


def canonical(body: object) -> str:
    """The key a request body is counted under: its JSON text with sorted keys."""
    return json.dumps(body, sort_keys=True, ensure_ascii=False)


def count_answer(body_key: str) -> None:
    """One complete successful answer to this canonical body (what the provider bills)."""
    ANSWERS[body_key] += 1
    STATS["answers"] += 1


def _stats() -> dict[str, int]:
    out = dict(STATS)
    out["bodies_answered"] = len(ANSWERS)
    out["answers_per_body_max"] = max(ANSWERS.values(), default=0)
    out["bodies_answered_twice"] = sum(1 for n in ANSWERS.values() if n > 1)
    out["requests_per_body_max"] = max(REQUESTS.values(), default=0)
    return out


@contextlib.contextmanager
def spawn(*options: str, module: str = "tests.fake_openai") -> Iterator[tuple[str, int]]:
    """Run this server (or another test server ``module`` printing ``PORT <n>``) as a process with
    these options; yields (base URL ending in /v1, pid)."""
    proc = subprocess.Popen([sys.executable, "-m", module, "--port", "0", *options],
                            cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        assert line.startswith("PORT "), f"fake server did not start: {line!r}"
        scheme = "https" if "--tls-cert" in options else "http"
        yield f"{scheme}://127.0.0.1:{int(line.split()[1])}/v1", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def _error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return web.json_response(body, status=status, headers=headers)


openai_error = _error  # the public name, for tests/fake_batch*.py


def _seen(request: web.Request) -> str:
    """The request line and headers, raw (JSON) and percent-encoded: what an echoing gateway repeats."""
    from urllib.parse import quote

    STATS["echoed"] += 1
    headers = json.dumps(dict(request.headers))
    seen = f"{request.method} {request.url} headers: {headers}"
    return f"echo: {seen} | encoded: {quote(seen, safe='')}"


def _echo(request: web.Request) -> web.Response:
    """400 with the request line and headers in the message."""
    return _error(400, _seen(request), "echo")


def answer_for(user: object, json_wanted: bool) -> str:
    """The deterministic answer to a last user message: an echo, or a JSON object when asked for."""
    if json_wanted:
        score = len(str(user)) % 10 / 10
        return json.dumps({"sentiment": "positive" if score >= 0.5 else "negative", "score": score})
    return f"echo: {user}"


def _answer_text(body: dict[str, Any], behaviours: set[str]) -> str:
    messages = body.get("messages") or []
    user = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    form = body.get("response_format") or {}
    if (form.get("json_schema") or {}).get("name") == "answers_by_id":
        return packed_answer(str(user), form["json_schema"]["schema"])
    json_wanted = (body.get("response_format") or {}).get("type", "").startswith("json")
    return answer_for(user, "json-answer" in behaviours or json_wanted)


def packed_answer(user: str, schema: dict[str, Any]) -> str:
    """The answer to a packed request (``rows_per_request``): each id's row answered as alone, as JSON text
    written pair by pair so a row's marker can break it: ``[[pack:drop]]`` leaves its id out,
    ``[[pack:dup]]`` gives it twice, ``[[pack:swap]]`` swaps its answer with the next row's,
    ``[[pack:extra]]`` adds an id not asked for, ``[[pack:bad]]`` answers a number."""
    STATS["packed"] += 1
    rows: dict[str, str] = json.loads(user[user.index("\n\n{") + 2:])
    ids = list(rows)
    wants_json = [schema["properties"][i].get("type") == "object" for i in ids]
    values = [json.loads(answer_for(t, w)) if w else answer_for(t, False)
              for t, w in zip(rows.values(), wants_json, strict=True)]
    for k, text in enumerate(rows.values()):
        if "[[pack:swap]]" in text and k + 1 < len(ids):
            values[k], values[k + 1] = values[k + 1], values[k]
    pairs: list[tuple[str, Any]] = []
    for i, text, value in zip(ids, rows.values(), values, strict=True):
        if "[[pack:drop]]" in text:
            continue
        pairs.append((i, 7 if "[[pack:bad]]" in text else value))
        if "[[pack:dup]]" in text:
            pairs.append((i, value))
        if "[[pack:extra]]" in text:
            pairs.append(("999999", value))
    return "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"


def chat_completion(body: dict[str, Any], text: str) -> dict[str, Any]:
    """The non-streamed chat completion answering ``body`` with ``text`` (usage estimated from sizes)."""
    usage = {"prompt_tokens": len(json.dumps(body.get("messages"))) // 4, "completion_tokens": len(text) // 4}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model") or "fake-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage,
    }


def make_app(api_key: str | None, latency_ms: float, models: list[str],
             faults: list[tuple[str, float]] | None = None, seed: int = 0,
             max_body_bytes: int | None = None, hang_seconds: float = 3600,
             oauth_token: str = "ya29.fake-oauth-token",
             more_routes: Callable[[web.Application], None] | None = None) -> web.Application:
    """The app; ``more_routes`` adds a test server's own routes (tests/fake_batch.py) before the catch-all."""
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
        raw = await request.read()
        if max_body_bytes is not None and len(raw) > max_body_bytes:
            STATS["too_large"] += 1
            return _error(413, f"Request body of {len(raw)} bytes exceeds this server's limit of "
                               f"{max_body_bytes} bytes.", "request_too_large")
        try:
            body = json.loads(raw)
        except ValueError:  # not JSON, or not even text
            return _error(400, "We could not parse the JSON body of your request.", "invalid_json")
        body_key = canonical(body)
        REQUESTS[body_key] += 1
        # A row can pick its own behaviour: "[[fake:status-500]]" in a message.
        for message in body.get("messages") or []:
            content = str(message.get("content", ""))
            if "[[fake:" in content:
                behaviours.add(content.split("[[fake:", 1)[1].split("]]", 1)[0])
        extra: dict[str, str] = {}
        for b in behaviours:
            if b.startswith("retry-after-"):
                extra["Retry-After"] = b.removeprefix("retry-after-")
        if "echo-request" in behaviours:
            return _echo(request)
        if "echo-answer" in behaviours:  # a 200 whose answer repeats the request, secrets and all
            return web.json_response(chat_completion(body, _seen(request)))
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
        if (mode := hostile_modes.mode_of(behaviours)) is not None:  # issue 12's misbehaving endpoints
            return await hostile_modes.answer(mode, request, body, _answer_text(body, behaviours),
                                              lambda: count_answer(body_key))
        fault, variant = draw_fault(faults, seed, body_key, REQUESTS[body_key]) if faults else (None, 0.0)
        if fault:
            STATS[f"fault_{fault}"] += 1
        if fault == "429":
            wait = {"Retry-After": "0"} if variant < 0.5 else {"retry-after-ms": "10"}
            return _error(429, "Rate limit reached (fake).", "rate_limit_exceeded", wait)
        if fault in ("500", "503"):
            return _error(int(fault), f"fake fault {fault}", f"fake_{fault}")
        if fault == "reset":
            assert request.transport is not None
            request.transport.close()  # the request was read; no byte of an answer is sent
            return web.Response()
        if "hang" in behaviours or fault == "hang":
            await asyncio.sleep(hang_seconds)
            if request.transport is not None:
                request.transport.close()  # the client gave up long ago: never a late answer
            return web.Response()
        if models and body.get("model") not in models and "model-ignored" not in behaviours:
            if "model-400" in behaviours:  # LiteLLM's proxy, word for word
                return _error(400, f"litellm.BadRequestError: Invalid model name passed in model={body.get('model')}. "
                                   "Call `/v1/models` to view available models for your key.", "400")
            return _error(404, f"The model `{body.get('model')}` does not exist.", "model_not_found")
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)
        if "bad-json" in behaviours or (fault == "badjson" and not body.get("stream")):
            return web.Response(text="<html>upstream error</html>", content_type="text/html")
        text = _answer_text(body, behaviours)
        completion = chat_completion(body, text)
        model, usage = completion["model"], completion["usage"]
        if not body.get("stream"):
            answer = json.dumps(completion).encode()
            if fault == "cut":  # the whole length announced, half of it sent, then the connection drops
                resp = web.StreamResponse(headers={"Content-Type": "application/json"})
                resp.content_length = len(answer)
                await resp.prepare(request)
                await resp.write(answer[: len(answer) // 2])
                assert request.transport is not None
                request.transport.close()
                return resp
            resp = web.Response(body=answer, content_type="application/json")
            try:
                await resp.prepare(request)
                await resp.write_eof()
            except ConnectionError:  # the client is gone (killed, timed out): nothing was delivered
                return resp
            count_answer(body_key)  # only once every byte was handed to the connection
            return resp
        if fault == "cut":
            behaviours.add("cut-stream")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        try:
            await _stream(request, resp, model, text, usage, behaviours, bad_event=fault == "badjson")
        except ConnectionError:
            return resp
        if "cut-stream" not in behaviours and fault != "badjson":
            count_answer(body_key)
        return resp

    async def _stream(request: web.Request, resp: web.StreamResponse, model: str, text: str,
                      usage: dict[str, int], behaviours: set[str], bad_event: bool = False) -> None:
        await resp.prepare(request)
        if bad_event:
            await resp.write(b'data: {"id": "chatcmpl-fake", "choices": [{"delta": {"content": "ha\n\n')
            await resp.write_eof()
            return
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

    async def elsewhere(request: web.Request) -> web.Response:
        raw = await request.read()
        if "echo-request" in request.headers.get("x-fake", "") or b"[[fake:echo-request]]" in raw:
            return _echo(request)
        if request.method == "POST" and request.path.endswith(":generateContent"):  # Gemini, Vertex
            contents = json.loads(raw).get("contents") or [{}]
            text = "echo: " + "".join(p.get("text", "") for p in contents[-1].get("parts", []))
            if b"[[fake:echo-answer]]" in raw:
                text = _seen(request)
            return web.json_response({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                                      "finishReason": "STOP"}],
                                      "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}})
        return web.Response(status=404, text="404: Not Found")

    async def token(_: web.Request) -> web.Response:
        STATS["tokens"] += 1  # a new token each time: one learned by an earlier client masks nothing here
        token = f"{oauth_token}-{STATS['tokens']}"
        return web.json_response({"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(_stats())

    async def answers(_: web.Request) -> web.Response:
        return web.json_response(dict(ANSWERS))

    async def requests_seen(_: web.Request) -> web.Response:
        return web.json_response(dict(REQUESTS))

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.add_routes([
        web.get("/v1/models", list_models),
        web.get("/_requests", requests_seen),
        web.post("/v1/chat/completions", chat),
        web.get("/_stats", stats),
        web.get("/_answers", answers),
        web.post("/token", token),
    ])
    if more_routes is not None:
        more_routes(app)
    app.router.add_route("*", "/{tail:.*}", elsewhere)
    return app


async def _serve(args: argparse.Namespace) -> None:
    models = [m for m in args.models.split(",") if m]
    app = make_app(args.api_key, args.latency_ms, models, parse_faults(args.faults), args.seed,
                   args.max_body_bytes, args.hang_seconds, args.oauth_token)
    tls = None
    if args.tls_cert:
        import ssl

        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    await serve(app, args.port, tls)


async def serve(app: web.Application, port: int, tls: Any = None) -> None:
    """Listen on 127.0.0.1:port (0: a free one), print ``PORT <n>``, serve until killed."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096, ssl_context=tls)
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
    parser.add_argument("--faults", default="", help="kind:rate,...; kinds: " + ", ".join(FAULT_KINDS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-body-bytes", type=int, default=None)
    parser.add_argument("--hang-seconds", type=float, default=3600)
    parser.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (and --tls-key)")
    parser.add_argument("--tls-key")
    parser.add_argument("--oauth-token", default="ya29.fake-oauth-token", help="what POST /token hands out")
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
