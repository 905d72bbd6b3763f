"""Hostile and unusual endpoints: the fake server's per-row modes for issue 12's behaviours.

A row picks a mode with ``[[fake:<mode>]]`` in its prompt (or a request with the
``x-fake`` header); :mod:`tests.fake_openai` hands the request here. Each mode is
one way a real gateway, proxy or self-hosted server deviates from the OpenAI API:

Hangs
- ``trickle-json``: a complete JSON answer sent one byte every half second
- ``keepalive-stream``: one token, then ``: keep-alive`` every half second, forever
- ``ratelimited-<header>-<value>``: a 429 with that wait header, e.g.
  ``ratelimited-retry-after-3600``, ``ratelimited-retry-after-1e400``,
  ``ratelimited-retry-after-ms-1e12``
- ``budget-exhausted-<reset>``: a good answer carrying ``x-ratelimit-remaining-requests: 0``
  and ``x-ratelimit-reset-requests: <reset>`` (``1h``, ``2s``)

Replies that once crashed the connector or were accepted with a wrong type
- ``usage-na``, ``usage-list``, ``usage-string-tokens``: ``usage`` is ``"n/a"``, a list,
  or has ``"prompt_tokens": "5"``
- ``bad-utf8``, ``lone-surrogate``: invalid UTF-8 bytes, or a ``\\ud800`` escape, in the answer
- ``message-string``, ``content-parts``, ``content-number``: ``message`` is a string,
  ``content`` a list of text parts (Mistral), ``content`` the number 42
- ``json-to-stream``: a ``stream: true`` request answered with one ``application/json`` body

Streams and replies that end in an error or hold no answer (issue 20)
- ``sse-error-event``: part of the answer, then ``event: error``, then the rest and ``[DONE]``
- ``after-done``: a whole stream, then more text after ``data: [DONE]``
- ``content-null``: ``content: null`` with ``finish_reason: stop`` (streamed: no content deltas)
- ``model-object``, ``model-number``: ``model`` is an object (``{"id": ..., "provider": ...}``) or a number

Attempts cut after the endpoint began answering, billed all the same (issue 20)
- ``stall-after-<n>``: a stream of ``n`` content deltas of 40 characters each (no usage), then
  ``: keep-alive`` every half second: cut by the client's deadline
- ``stall-after-usage``: two deltas of 40 characters, a chunk with the usage so far (as vLLM's
  ``continuous_usage_stats`` sends), a third delta, then keep-alive comments until the deadline
- ``stall-before-done``: the whole stream, its usage chunk included, but no ``[DONE]``: keep-alive
  comments instead, until the deadline (the answer is complete: it must not be bought again)
- ``done-then-hang``: the whole stream and ``[DONE]``, then the connection kept open with keep-alive
  comments
- ``reset-after-<n>``: ``n`` content deltas of 40 characters, then the connection is reset
- ``cut-json``: a 200 JSON answer whose ``Content-Length`` promises more than is sent, then the
  connection is closed mid-body
- ``json-then-reset``, ``json-then-hang``: a whole JSON answer in chunked encoding, but not its last
  (empty) chunk: the connection is reset, or kept open and silent (the answer is complete: it must not
  be bought again)

Replies too large to hold (issue 20)
- ``gzip-bomb``: a 1 MB gzip body (``Content-Encoding: gzip``) that decompresses to a 1 GiB answer
- ``stream-flood``: a stream of 64 KiB content deltas, 128 MiB in all, then ``[DONE]``

Wire forms that already worked (kept working)
- ``gzip``, ``deflate``: a compressed body; ``chunked``: a JSON body in chunked pieces;
  ``http10``: an HTTP/1.0 answer ended by closing the connection
- ``crlf-sse``, ``cr-sse``: SSE lines ended by CRLF or a lone CR; ``sse-comments``: comment
  lines between events; ``sse-event-lines``: ``event:`` and ``id:`` fields;
  ``multiline-data``: each event's JSON split over several ``data:`` lines;
  ``usage-only-final``: usage in a final chunk with no choices; ``no-done``: finish_reason
  but no ``data: [DONE]``
- ``redirect-302``: a redirect to another host (must not be followed: the key would go along)

Every complete answer is counted (``count``) only once all of it was handed to the
connection, so ``/_answers`` shows whether the connector bought one twice.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import zlib
from collections.abc import Callable
from typing import Any

from aiohttp import web

WIRE_MODES = ("gzip", "deflate", "chunked", "http10")
STREAM_MODES = ("crlf-sse", "cr-sse", "sse-comments", "sse-event-lines", "multiline-data", "usage-only-final",
                "no-done", "keepalive-stream", "json-to-stream", "sse-error-event", "after-done", "stream-flood")
REPLY_MODES = ("usage-na", "usage-list", "usage-string-tokens", "bad-utf8", "lone-surrogate", "message-string",
               "content-parts", "content-number", "content-null", "model-object", "model-number")
MODES = ("trickle-json", "redirect-302", "gzip-bomb", "stall-before-done", "stall-after-usage", "done-then-hang",
         "cut-json", "json-then-reset", "json-then-hang", *WIRE_MODES, *STREAM_MODES, *REPLY_MODES)
USAGE_SO_FAR = {"prompt_tokens": 21, "completion_tokens": 17, "total_tokens": 38}  # stall-after-usage's
PREFIXES = ("ratelimited-", "budget-exhausted-", "stall-after-", "reset-after-")
FILLER = "0123456789 abcdefghij 0123456789 abcdefg"  # one 40-character delta of a cut stream
TRICKLE_EVERY = 0.5  # seconds between bytes or keep-alive comments
TRICKLE_FOR = 120.0  # a trickle stops after this long even if the client is still listening


def mode_of(behaviours: set[str]) -> str | None:
    """The hostile mode among a request's behaviours, if any."""
    return next((b for b in behaviours if b in MODES or b.startswith(PREFIXES)), None)


def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt = len(json.dumps(body.get("messages"))) // 4
    return {"prompt_tokens": prompt, "completion_tokens": len(text) // 4, "total_tokens": prompt + len(text) // 4}


def _model(mode: str, body: dict[str, Any]) -> Any:
    return {"model-object": {"id": "m-obj", "provider": "p"}, "model-number": 7}.get(mode) or body.get("model") or "m"


def _completion(body: dict[str, Any], message: Any, usage: Any, mode: str = "") -> dict[str, Any]:
    return {"id": "chatcmpl-hostile", "object": "chat.completion", "created": int(time.time()),
            "model": _model(mode, body),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": usage}


def _reply_body(mode: str, body: dict[str, Any], text: str) -> bytes:
    """The JSON bytes of a non-streamed answer in one of the reply modes (or a normal one)."""
    usage: Any = _usage(body, text)
    message: Any = {"role": "assistant", "content": text}
    if mode == "usage-na":
        usage = "n/a"
    elif mode == "usage-list":
        usage = [usage["prompt_tokens"], usage["completion_tokens"]]
    elif mode == "usage-string-tokens":
        usage = {**usage, "prompt_tokens": str(usage["prompt_tokens"])}
    elif mode == "message-string":
        message = text
    elif mode == "content-parts":
        message = {"role": "assistant", "content": [{"type": "text", "text": text[:5]},
                                                    {"type": "text", "text": text[5:]}]}
    elif mode == "content-number":
        message = {"role": "assistant", "content": 42}
    elif mode == "content-null":
        message = {"role": "assistant", "content": None}
    raw = json.dumps(_completion(body, message, usage, mode)).encode()
    if mode == "bad-utf8":
        raw = raw.replace(b"echo:", b"echo\xff\xfe:", 1)
    elif mode == "lone-surrogate":
        raw = raw.replace(b"echo:", b"echo\\ud800:", 1)
    return raw


async def answer(mode: str, request: web.Request, body: dict[str, Any], text: str,
                 count: Callable[[], None]) -> web.StreamResponse:
    """Answer ``request`` in ``mode``; ``count()`` once a complete answer was sent."""
    stream = bool(body.get("stream"))
    if mode.startswith("ratelimited-"):
        header, _, value = mode.removeprefix("ratelimited-").rpartition("-")
        return web.json_response({"error": {"message": "Rate limit reached (hostile).", "code": "rate_limit"}},
                                 status=429, headers={header: value})
    if mode == "redirect-302":
        port = request.url.port or 80
        return web.Response(status=302, headers={"Location": f"http://127.0.0.2:{port}{request.path}"})
    if mode == "trickle-json":
        return await _trickle(request, _reply_body(mode, body, text))
    if mode == "gzip-bomb":
        return web.Response(body=_gzip_bomb(), content_type="application/json", headers={"Content-Encoding": "gzip"})
    if stream and mode == "stream-flood":
        return await _flood(request, body)
    if mode == "cut-json":
        return await _cut_json(request, _reply_body(mode, body, text))
    if mode in ("json-then-reset", "json-then-hang"):
        return await _unended_json(request, mode, _reply_body(mode, body, text), count)
    if stream and mode.startswith(("stall-after-", "reset-after-")):  # stall-after-usage too
        return await _cut_stream(request, mode, body)
    if stream and mode != "json-to-stream" and mode not in WIRE_MODES:
        return await _sse(request, mode, body, text, count)
    headers: dict[str, str] = {}
    if mode.startswith("budget-exhausted-"):
        headers = {"x-ratelimit-remaining-requests": "0",
                   "x-ratelimit-reset-requests": mode.removeprefix("budget-exhausted-")}
    raw = _reply_body(mode, body, text)
    try:
        if mode == "http10":
            return await _http10(request, raw, count)
        if mode == "chunked":
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for i in range(0, len(raw), 16):
                await resp.write(raw[i:i + 16])
            await resp.write_eof()
            count()
            return resp
        if mode in ("gzip", "deflate"):
            headers["Content-Encoding"] = mode
            raw = gzip.compress(raw) if mode == "gzip" else zlib.compress(raw)
        resp = web.Response(body=raw, content_type="application/json", headers=headers)
        await resp.prepare(request)
        await resp.write_eof()
    except ConnectionError:
        return web.Response()
    count()
    return resp


_BOMB: list[bytes] = []


def _gzip_bomb(blocks: int = 1024) -> bytes:
    """A valid gzip body of a chat completion whose content is ``blocks`` MiB of spaces, about 1 KB
    per MiB: each MiB is deflated once after a full flush (so every copy is the same bytes), and
    the gzip header and trailer (CRC-32, size) are written by hand."""
    if not _BOMB:
        prefix = b'{"choices":[{"index":0,"message":{"role":"assistant","content":"'
        suffix = b'"},"finish_reason":"stop"}]}'
        block = b" " * (1 << 20)
        deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
        head = deflate.compress(prefix) + deflate.flush(zlib.Z_FULL_FLUSH)
        middle = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
        tail = deflate.compress(suffix) + deflate.flush()
        crc = zlib.crc32(prefix)
        for _ in range(blocks):
            crc = zlib.crc32(block, crc)
        size = (len(prefix) + blocks * len(block) + len(suffix)) & 0xFFFFFFFF
        trailer = crc.to_bytes(4, "little") + size.to_bytes(4, "little")
        _BOMB.append(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + head + middle * blocks + tail + trailer)
    return _BOMB[0]


async def _flood(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """128 MiB of 64 KiB content deltas, then a normal end: only a size limit stops the client early."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    event = json.dumps({"model": body.get("model") or "m",
                        "choices": [{"index": 0, "delta": {"content": "x" * 65536}}]}).encode()
    try:
        for _ in range(2048):
            await resp.write(b"data: " + event + b"\n\n")
        await resp.write(b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n')
        await resp.write_eof()
    except ConnectionError:
        pass  # the client stopped reading: what it has is no answer
    return resp


async def _keep_alive(resp: web.StreamResponse) -> None:
    """``: keep-alive`` comments every half second, until the client hangs up (or TRICKLE_FOR passed)."""
    started = time.monotonic()
    while time.monotonic() - started < TRICKLE_FOR:
        await asyncio.sleep(TRICKLE_EVERY)
        await resp.write(b": keep-alive\n\n")


async def _cut_stream(request: web.Request, mode: str, body: dict[str, Any]) -> web.StreamResponse:
    """``n`` deltas of FILLER, then a stall (``stall-after-n``) or a reset connection (``reset-after-n``)."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    base = {"id": "chatcmpl-cut", "object": "chat.completion.chunk", "model": body.get("model") or "m"}
    delta = {**base, "choices": [{"index": 0, "delta": {"content": FILLER}}]}
    events = [delta] * int(mode.rpartition("-")[2]) if mode != "stall-after-usage" else \
        [delta, delta, {**base, "choices": [], "usage": USAGE_SO_FAR}, delta]
    try:
        for event in events:
            await resp.write(f"data: {json.dumps(event)}\n\n".encode())
        if mode.startswith("stall-after-"):
            await _keep_alive(resp)
        elif request.transport is not None:
            await asyncio.sleep(0.2)  # the deltas reach the client before the reset
            request.transport.abort()
    except ConnectionError:
        pass  # the client gave up at its deadline: no complete answer was sent
    return resp


async def _cut_json(request: web.Request, raw: bytes) -> web.StreamResponse:
    """Half of a JSON answer under a Content-Length for all of it, then the connection closed."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.content_length = len(raw)
    await resp.prepare(request)
    await resp.write(raw[:len(raw) // 2])
    await asyncio.sleep(0.2)
    if request.transport is not None:
        request.transport.abort()
    return resp


async def _unended_json(request: web.Request, mode: str, raw: bytes, count: Callable[[], None]) -> web.StreamResponse:
    """All of a JSON answer in chunks, without the last chunk: then a reset, or silence until the client leaves."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(raw)
    count()  # the whole answer was sent
    await asyncio.sleep(0.2)
    if mode == "json-then-hang":
        started = time.monotonic()
        while time.monotonic() - started < TRICKLE_FOR and request.transport is not None \
                and not request.transport.is_closing():
            await asyncio.sleep(TRICKLE_EVERY)
    if request.transport is not None:
        request.transport.abort()
    return resp


async def _trickle(request: web.Request, raw: bytes) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.content_length = len(raw)
    await resp.prepare(request)
    started = time.monotonic()
    try:
        for i in range(len(raw)):
            await resp.write(raw[i:i + 1])
            await asyncio.sleep(TRICKLE_EVERY)
            if time.monotonic() - started > TRICKLE_FOR:
                break
    except ConnectionError:
        pass  # the client gave up: what it was sent was never a complete answer
    if request.transport is not None:
        request.transport.close()
    return resp


async def _http10(request: web.Request, raw: bytes, count: Callable[[], None]) -> web.StreamResponse:
    """An HTTP/1.0 answer with no length, ended by closing the connection."""
    assert request.transport is not None
    request.transport.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" + raw)
    request.transport.close()
    count()
    return web.Response()


def _events(mode: str, body: dict[str, Any], text: str) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-hostile", "object": "chat.completion.chunk", "model": _model(mode, body)}
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    if mode != "content-null":
        events += [{**base, "choices": [{"index": 0, "delta": {"content": text[i:i + 4]}}]}
                   for i in range(0, len(text), 4)]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({**base, "choices": [], "usage": _usage(body, text)})  # the usage-only final chunk
    return events


def _sse_payload(mode: str, body: dict[str, Any], text: str) -> bytes:
    end = {"crlf-sse": "\r\n", "cr-sse": "\r"}.get(mode, "\n")
    lines: list[str] = []
    for n, event in enumerate(_events(mode, body, text)):
        if mode == "sse-error-event" and n == 2:
            lines += ["event: error", 'data: {"message": "upstream model crashed (hostile)"}', ""]
        data = json.dumps(event, ensure_ascii=False)
        if mode == "sse-comments":
            lines.append(": keep-alive")
        if mode == "sse-event-lines":
            lines += ["event: completion.chunk", f"id: {n}", "retry: 1000"]
        if mode == "multiline-data":
            parts = data.split(", ")  # rejoined with \n by the client: still the same JSON
            lines += [f"data: {part}," for part in parts[:-1]] + [f"data: {parts[-1]}"]
        else:
            lines.append(f"data: {data}")
        lines.append("")
    if mode != "no-done":
        lines += ["data: [DONE]", ""]
    if mode == "after-done":
        extra = {"choices": [{"index": 0, "delta": {"content": " AFTER-DONE"}}]}
        lines += [f"data: {json.dumps(extra)}", ""]
    payload = end.join(lines) + end
    if mode in ("bad-utf8", "lone-surrogate"):
        return _corrupt(mode, payload.encode())
    return payload.encode()


def _corrupt(mode: str, raw: bytes) -> bytes:
    return raw.replace(b"echo", b"ech\xff" if mode == "bad-utf8" else b"ech\\ud800", 1)


async def _sse(request: web.Request, mode: str, body: dict[str, Any], text: str,
               count: Callable[[], None]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    try:
        if mode == "keepalive-stream":
            first = _events(mode, body, text)[1]
            await resp.write(f"data: {json.dumps(first)}\n\n".encode())
            await _keep_alive(resp)
            return resp
        payload = _sse_payload(mode, body, text)
        if mode in ("stall-before-done", "done-then-hang"):  # no end: the end marker, or the connection's
            await resp.write(payload.removesuffix(b"data: [DONE]\n\n") if mode == "stall-before-done" else payload)
            count()  # the whole answer was sent
            await _keep_alive(resp)
            return resp
        for i in range(0, len(payload), 37):  # events split across reads, CRLF pairs too
            await resp.write(payload[i:i + 37])
        await resp.write_eof()
    except ConnectionError:
        return resp
    count()
    return resp


class PlainHttpStallingTls:
    """A plain HTTP server on 127.0.0.1 (a free port) that answers HTTP requests and, like some servers
    behind a raw TCP port, says nothing to anything else: a TLS ClientHello waits forever (until the
    client gives up). The ``check`` of an ``https://`` URL at it stalls in the handshake. A thread of
    this process; ``close()`` stops it."""

    def __init__(self) -> None:
        import socket
        import threading

        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self._open: list[Any] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return  # closed
            self._open.append(conn)
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: Any) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
                if not data[:8].split(b" ")[0].isalpha():
                    conn.recv(65536)  # a TLS hello: no answer, until the client hangs up
                    return
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += conn.recv(65536)
            reply = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                             "finish_reason": "length"}], "model": "m"}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: " + str(len(reply)).encode() + b"\r\n\r\n" + reply)

    def close(self) -> None:
        self._socket.close()
        for conn in self._open:
            conn.close()
