"""The one-shot transport (check, discover): HTTP/1.1 framing, no redirect followed, TLS verified,
failures as the connector's transport errors. Each test serves canned bytes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from connector import errors
from connector.endpoint.oneshot import OneShotTransport
from tests.test_check import _self_signed

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.close()


def canned(answer: bytes, seen: list[bytes] | None = None) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.append(head)
        writer.write(answer)
        await writer.drain()
        writer.close()
    return handler


async def fetch(url: str, transport: OneShotTransport | None = None, body: bytes | None = None,
                timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    transport = transport or OneShotTransport()
    async with transport.request("POST" if body else "GET", url, {"Authorization": "Bearer k"}, body,
                                 timeout) as resp:
        return resp.status, dict(resp.headers), await resp.read()


@pytest.mark.parametrize("answer, body", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello", b"hello"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n", b"hello"),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nhello until close", b"hello until close"),
    (b"HTTP/1.0 204 No Content\r\n\r\n", b""),
])
async def test_bodies_by_length_chunks_or_close(answer: bytes, body: bytes) -> None:
    seen: list[bytes] = []
    async with serving(canned(answer, seen)) as base:
        status, _, got = await fetch(f"{base}/v1/models?api-version=2", body=b'{"a":1}')
    assert (status, got) == (int(answer.rsplit(b"HTTP/1.", 1)[1][2:5]), body)
    head = seen[0].decode()
    assert head.startswith("POST /v1/models?api-version=2 HTTP/1.1\r\n")
    assert "Content-Length: 7\r\n" in head and "Authorization: Bearer k\r\n" in head
    assert "Accept-Encoding: identity\r\n" in head  # nothing compressed comes back


async def test_headers_are_lower_case_and_repeated_ones_joined() -> None:
    async with serving(canned(b"HTTP/1.1 200 OK\r\nX-Rate: 1\r\nx-rate: 2\r\nContent-Length: 0\r\n\r\n")) as base:
        _, headers, _ = await fetch(base)
    assert headers["x-rate"] == "1, 2"


async def test_a_redirect_is_returned_not_followed() -> None:
    seen: list[bytes] = []
    answer = b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://elsewhere.invalid/\r\nContent-Length: 0\r\n\r\n"
    async with serving(canned(answer, seen)) as base:
        status, headers, _ = await fetch(base)
    assert (status, headers["location"], len(seen)) == (307, "http://elsewhere.invalid/", 1)


async def test_a_body_cut_short_is_a_broken_stream() -> None:
    async with serving(canned(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel")) as base:
        with pytest.raises(errors.StreamBroken, match="IncompleteReadError"):
            await fetch(base)


async def test_a_server_that_does_not_speak_http_is_a_broken_stream() -> None:
    async with serving(canned(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")) as base:
        with pytest.raises(errors.StreamBroken, match=r"not an HTTP/1\.x answer"):
            await fetch(base)


async def test_silence_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with serving(silent) as base:
        with pytest.raises(errors.ReadTimeout, match=r"did not answer within 0\.2 s"):
            await fetch(base, timeout=0.2)


async def test_a_closed_port_is_a_connect_failure() -> None:
    async with serving(canned(b"")) as base:
        pass  # the server is closed: its port refuses
    with pytest.raises(errors.ConnectFailed, match=r"cannot connect to http://127\.0\.0\.1"):
        await fetch(base)


async def test_tls_is_verified_against_the_configured_trust(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, key)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with serving(canned(answer), served) as base:
        with pytest.raises(errors.TLSFailed, match="certificate verify failed"):
            await fetch(base)  # the system's CAs do not know the self-signed certificate
        trusted = ssl.create_default_context(cafile=str(cert))
        assert (await fetch(base, OneShotTransport(trusted)))[::2] == (200, b"ok")
        assert (await fetch(base, OneShotTransport(False)))[::2] == (200, b"ok")  # tls.verify: false


async def test_a_trickled_body_ends_at_the_attempts_deadline() -> None:
    """The client's deadline cancels the attempt while bytes keep arriving (a cancellation that
    lands as a read completes must not be lost: asyncio.wait_for on 3.11 can swallow it)."""
    from connector.endpoint.deadlines import Deadlines

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
        while not writer.is_closing():
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0)

    async with serving(trickle) as base:
        for _ in range(5):
            with pytest.raises(TimeoutError):
                await Deadlines(0.2).run(fetch(base, timeout=5))
