"""The peer clients, one per process, run in ``.venv-bench``:

    python -m bench.peer --client aiohttp|streams|openai|litellm --bodies B.jsonl --base-url URL/v1 \
        --concurrency N [--api-key K]

Each sends every request body of ``B.jsonl`` (the exact bodies the connector builds for the
same rows) with an ``asyncio.Semaphore`` of N, parses every reply, and prints one JSON line:
rows, ok, the failures' first messages, the timed loop's wall and CPU seconds and the CPU
spent before it (imports, set-up). Wall time, peak RSS and total CPU of the process are
measured from outside by the harness, the same way as for the connector.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[dict[str, Any]], Awaitable[str | None]]


async def _aiohttp(base_url: str, api_key: str, concurrency: int) -> tuple[Send, Callable[[], Awaitable[None]]]:
    import aiohttp
    import orjson

    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
    timeout = aiohttp.ClientTimeout(total=None, connect=120, sock_read=120)

    async def send(body: dict[str, Any]) -> str | None:
        async with session.post(url, data=orjson.dumps(body), headers=headers, timeout=timeout) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {raw[:200]!r}")
        return orjson.loads(raw)["choices"][0]["message"]["content"]  # type: ignore[no-any-return]

    return send, session.close


async def _streams(base_url: str, api_key: str, concurrency: int) -> tuple[Send, Callable[[], Awaitable[None]]]:
    """The wire's floor: a keep-alive HTTP/1.1 loop on asyncio streams, no library, just what the mock needs
    (one host, Content-Length bodies, no timeouts, no error handling beyond the status)."""
    from urllib.parse import urlsplit

    import orjson

    url = urlsplit(base_url.rstrip("/") + "/chat/completions")
    host, port = url.hostname or "127.0.0.1", url.port or 80
    head = (f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {api_key}\r\n").encode()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def send(body: dict[str, Any]) -> str | None:
        data = orjson.dumps(body)
        reader, writer = idle.pop() if idle else await asyncio.open_connection(host, port)
        writer.write(head + b"Content-Length: %d\r\n\r\n" % len(data) + data)
        status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:"))
        raw = await reader.readexactly(length)
        idle.append((reader, writer))
        if status_line.split()[1] != b"200":
            raise RuntimeError(f"{status_line!r}: {raw[:200]!r}")
        return orjson.loads(raw)["choices"][0]["message"]["content"]  # type: ignore[no-any-return]

    async def close() -> None:
        for _, writer in idle:
            writer.close()

    return send, close


async def _openai(base_url: str, api_key: str, concurrency: int) -> tuple[Send, Callable[[], Awaitable[None]]]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=120)

    async def send(body: dict[str, Any]) -> str | None:
        reply = await client.chat.completions.create(**body)
        return reply.choices[0].message.content

    return send, client.close


async def _litellm(base_url: str, api_key: str, concurrency: int) -> tuple[Send, Callable[[], Awaitable[None]]]:
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True

    async def send(body: dict[str, Any]) -> str | None:
        args = dict(body)
        model = "openai/" + str(args.pop("model", "bench-model"))
        reply = await litellm.acompletion(model=model, api_base=base_url, api_key=api_key, timeout=120, **args)
        return reply.choices[0].message.content  # type: ignore[no-any-return]

    async def close() -> None:
        return None

    return send, close


CLIENTS = {"aiohttp": _aiohttp, "streams": _streams, "openai": _openai, "litellm": _litellm}


async def _run(args: argparse.Namespace, bodies: list[dict[str, Any]], cpu0: float) -> dict[str, Any]:
    send, close = await CLIENTS[args.client](args.base_url, args.api_key, args.concurrency)
    sem = asyncio.Semaphore(args.concurrency)
    failures: list[str] = []
    ok = 0

    async def one(body: dict[str, Any]) -> None:
        nonlocal ok
        async with sem:
            try:
                content = await send(body)
            except Exception as exc:  # a benchmark counts failures; the harness fails loudly on them
                if len(failures) < 5:
                    failures.append(f"{type(exc).__name__}: {exc}"[:300])
                return
        if content is not None:
            ok += 1
        elif len(failures) < 5:
            failures.append("reply without content")

    setup_cpu = time.process_time() - cpu0
    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(b) for b in bodies))
    loop_s, loop_cpu = time.perf_counter() - t0, time.process_time() - c0
    await close()
    return {
        "client": args.client,
        "rows": len(bodies),
        "ok": ok,
        "failures": failures,
        "loop_s": loop_s,
        "loop_cpu_s": loop_cpu,
        "setup_cpu_s": setup_cpu,
    }


def main() -> None:
    cpu0 = 0.0  # process_time counts from process start: imports are part of set-up
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--client", choices=sorted(CLIENTS), required=True)
    parser.add_argument("--bodies", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", default="sk-bench")
    parser.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args()
    # litellm fetches its model price map from the internet at import unless told not to.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import orjson

    with open(args.bodies, "rb") as f:
        bodies = [orjson.loads(line) for line in f if line.strip()]
    result = asyncio.run(_run(args, bodies, cpu0))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
