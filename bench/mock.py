"""A cheap local chat-completions endpoint: raw asyncio protocol, canned reply, fixed latency.

Run in ``.venv-bench`` (uvloop when installed) as its own process, pinned to its own core:

    python -m bench.mock [--port 0]      # prints "PORT <n>" once listening

The latency is taken from the path, so one process serves every latency:
``POST /lat50/v1/chat/completions`` answers after 50 ms, ``/lat0/...`` at once.
``GET /stats`` returns the number of chat completions answered so far. HTTP/1.1 keep-alive,
Content-Length or chunked request bodies; nothing is parsed beyond what framing needs,
so the mock costs a few microseconds per request and is never the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

_REPLY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": '{"sentiment": "positive"}'},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 48, "completion_tokens": 7, "total_tokens": 55},
    },
    separators=(",", ":"),
).encode()


def _response(body: bytes, status: bytes = b"200 OK") -> bytes:
    head = (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode() + b"\r\nConnection: keep-alive\r\n\r\n"
    )
    return head + body


CHAT = _response(_REPLY)
MODELS = _response(b'{"object":"list","data":[{"id":"bench-model","object":"model"}]}')
NOT_FOUND = _response(b'{"error":{"message":"not found","type":"not_found"}}', b"404 Not Found")
_answered = 0


class _Http(asyncio.Protocol):
    __slots__ = ("_buf", "_loop", "_transport")

    def __init__(self) -> None:
        self._buf = b""
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_event_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            body_start = end + 4
            lower = head.lower()
            i = lower.find(b"content-length:")
            if i >= 0:
                j = lower.find(b"\r\n", i)
                size = int(lower[i + 15 : j if j > 0 else None])
                if len(buf) < body_start + size:
                    break
                rest = buf[body_start + size :]
            elif b"transfer-encoding: chunked" in lower:
                consumed = _chunked_end(buf, body_start)
                if consumed < 0:
                    break
                rest = buf[consumed:]
            else:
                rest = buf[body_start:]
            self._answer(head[: head.find(b"\r\n")])
            buf = rest
        self._buf = buf

    def _answer(self, request_line: bytes) -> None:
        global _answered
        parts = request_line.split(b" ")
        path = parts[1] if len(parts) > 1 else b"/"
        if path.endswith(b"/chat/completions"):
            reply = CHAT
            _answered += 1
        elif path.endswith(b"/models"):
            reply = MODELS
        elif path == b"/stats":
            reply = _response(json.dumps({"answered": _answered}).encode())
        else:
            reply = NOT_FOUND
        latency = 0.0
        if path.startswith(b"/lat"):
            latency = int(path[4 : path.index(b"/", 1)]) / 1000
        if latency:
            self._loop.call_later(latency, self._send, reply)
        else:
            self._send(reply)

    def _send(self, reply: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(reply)


def _chunked_end(buf: bytes, pos: int) -> int:
    """Index just past a complete chunked body starting at ``pos``, or -1 when incomplete."""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return -1
        size = int(buf[pos:eol].split(b";")[0], 16)
        pos = eol + 2 + size + 2
        if len(buf) < pos:
            return -1
        if size == 0:
            return pos


async def _serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, host, port, backlog=4096, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound} LOOP {type(loop).__module__}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    try:
        run(_serve(args.host, args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
