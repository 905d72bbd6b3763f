"""The connector's HTTP/1.1 client (every command's): framing, keep-alive reuse, no redirect followed,
TLS verified, failures as the connector's transport errors. Each test serves canned bytes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from connector import errors
from connector.endpoint.http11 import Http11Transport
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


async def fetch(url: str, transport: Http11Transport | None = None, body: bytes | None = None,
                timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    transport = transport or Http11Transport()
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
    assert "Accept-Encoding: gzip, deflate\r\n" in head  # decompressed as read: test_compressed_bodies


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
        assert (await fetch(base, Http11Transport(trusted)))[::2] == (200, b"ok")
        assert (await fetch(base, Http11Transport(False)))[::2] == (200, b"ok")  # tls.verify: false


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


class KeepAliveServer:
    """Answers every request of a connection with ``answer`` but its ``drop``-th (1-based; 0: none), which it
    closes unanswered; records (connection, request on it) of every request read."""

    def __init__(self, answer: bytes, drop: int = 0) -> None:
        self.answer, self.drop = answer, drop
        self.seen: list[tuple[int, int]] = []
        self.answered = 0
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection, count = self.connections, 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                count += 1
                self.seen.append((connection, count))
                if count == self.drop:
                    return  # closed unanswered (finally)
                writer.write(self.answer)
                await writer.drain()
                self.answered += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _twice(answer: bytes, read: bool = True, method: str = "POST") -> KeepAliveServer:
    fake = KeepAliveServer(answer)
    transport = Http11Transport()
    async with serving(fake.serve) as base:
        for _ in range(2):
            async with transport.request(method, f"{base}/v1/x", {}, b"{}" if method == "POST" else None,
                                         5) as resp:
                if read:
                    await resp.read()
        await transport.aclose()
    return fake


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
])
async def test_an_answer_read_to_its_end_leaves_its_connection_for_the_next_request(answer: bytes) -> None:
    fake = await _twice(answer)
    assert [connection for connection, _ in fake.seen] == [1, 1]


async def test_a_head_answer_announcing_a_body_leaves_its_connection_for_the_next_request() -> None:
    fake = await _twice(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", method="HEAD")
    assert [connection for connection, _ in fake.seen] == [1, 1]


@pytest.mark.parametrize("answer, read", [
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}", True),  # the server says so
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", True),  # HTTP/1.0: no keep-alive unless asked
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", False),  # left unread: not at a request's start
])
async def test_a_connection_not_at_a_request_s_start_is_not_reused(answer: bytes, read: bool) -> None:
    fake = await _twice(answer, read)
    assert [connection for connection, _ in fake.seen] == [1, 2]


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    closing = KeepAliveServer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        closing.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        closing.seen.append((closing.connections, 1))
        writer.write(closing.answer)
        await writer.drain()
        writer.close()  # keep-alive announced, then closed idle

    transport = Http11Transport()
    async with serving(once) as base:
        for _ in range(3):
            async with transport.request("POST", f"{base}/v1/x", {}, b"{}", 5) as resp:
                assert await resp.read() == b"{}"
            await asyncio.sleep(0.05)  # the server's close reaches the idle connection
    assert [connection for connection, _ in closing.seen] == [1, 2, 3]


@pytest.mark.parametrize("coding", ["gzip", "deflate", "x-gzip", "raw deflate"])
async def test_compressed_bodies_are_decompressed_as_read(coding: str) -> None:
    import gzip
    import zlib

    text = b'{"choices": []}' * 1000
    if coding == "raw deflate":  # deflate without its zlib wrapper, as some servers send it
        squeeze = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        packed, coding = squeeze.compress(text) + squeeze.flush(), "deflate"
    else:
        packed = zlib.compress(text) if coding == "deflate" else gzip.compress(text)
    answer = (b"HTTP/1.1 200 OK\r\nContent-Encoding: " + coding.encode() + b"\r\nContent-Length: "
              + str(len(packed)).encode() + b"\r\n\r\n" + packed)
    fake = KeepAliveServer(answer)
    transport = Http11Transport()
    async with serving(fake.serve) as base:
        for _ in range(2):
            async with transport.request("POST", f"{base}/v1/x", {}, b"{}", 5) as resp:
                assert await resp.read() == text
    assert [connection for connection, _ in fake.seen] == [1, 1]


async def test_a_compressed_bomb_stops_at_max_reply_bytes_as_it_is_read() -> None:
    import gzip

    packed = gzip.compress(b"0" * 50_000_000)  # ~50 KB that inflate to 50 MB
    answer = (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: " + str(len(packed)).encode()
              + b"\r\n\r\n" + packed)
    async with serving(canned(answer)) as base, Http11Transport().request("POST", f"{base}/v1/x", {}, b"{}",
                                                                          5) as resp:
        with pytest.raises(errors.BadReply, match="larger than max_reply_bytes"):
            await resp.read(limit=1_000_000)


@pytest.mark.parametrize("coding", ["br", "zstd"])
async def test_an_encoding_not_asked_for_is_a_bad_reply_naming_it(coding: str) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: " + coding.encode() + b"\r\nContent-Length: 2\r\n\r\n{}"
    async with serving(canned(answer)) as base:
        with pytest.raises(errors.BadReply, match=f"Content-Encoding '{coding}'"):
            await fetch(base)


@pytest.mark.parametrize("name, value", [("X-A", "1\r\nX-Injected: 2"), ("X-A\nX-B", "1"), ("X-A", "1\n")])
async def test_a_header_with_a_line_break_is_refused_not_sent(name: str, value: str) -> None:
    seen: list[bytes] = []
    async with serving(canned(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", seen)) as base:
        with pytest.raises(errors.ConfigError, match="line break"):
            async with Http11Transport().request("POST", f"{base}/v1/x", {name: value}, b"{}", 5):
                pass
    assert seen == []


def test_a_host_that_does_not_resolve_is_a_connect_failure_in_the_resolver_s_words() -> None:
    import socket

    from connector.endpoint.http_reading import failure

    failed = failure(socket.gaierror(-2, "Name or service not known"), "http://h.example:8080/v1", connecting=True)
    assert failed.message == "cannot connect to http://h.example:8080: Name or service not known"
    refused = failure(OSError(111, "Connect call failed ('127.0.0.1', 9)"), "http://127.0.0.1:9/v1", connecting=True)
    assert refused.message == "cannot connect to http://127.0.0.1:9: Connection refused"


async def test_a_host_name_is_looked_up_once_for_many_connections_and_a_refusing_address_is_passed_over() -> None:
    lookups: list[str] = []

    async def lookup(host: str, port: int) -> list[str]:
        lookups.append(host)
        await asyncio.sleep(0.01)  # the first connections all wait for this one lookup
        return ["127.0.0.2", "127.0.0.1"]  # nothing listens on 127.0.0.2: refused, then the next

    fake = KeepAliveServer(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
    transport = Http11Transport(lookup=lookup)
    async with serving(fake.serve) as base:
        url = base.replace("127.0.0.1", "llm.example") + "/v1/x"

        async def one() -> bytes:
            async with transport.request("POST", url, {}, b"{}", 5) as resp:
                return await resp.read()

        assert await asyncio.gather(*(one() for _ in range(8))) == [b"{}"] * 8
        assert await one() == b"{}"
    assert (lookups, len(fake.seen), fake.connections) == (["llm.example"], 9, 9)


async def test_bytes_a_server_sent_on_an_idle_connection_are_not_read_as_the_next_answer() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    timed_out = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"
    fake = KeepAliveServer(answer + timed_out)  # each answer followed by an unasked 408, the connection left open
    transport = Http11Transport()
    async with serving(fake.serve) as base:
        for _ in range(2):
            async with transport.request("POST", f"{base}/v1/x", {}, b"{}", 5) as resp:
                assert (resp.status, await resp.read()) == (200, b"{}")
            await asyncio.sleep(0.05)  # the 408 reaches the idle connection
        await transport.aclose()
    assert [connection for connection, _ in fake.seen] == [1, 2]


async def test_a_chunk_announced_larger_than_max_reply_bytes_stops_there_as_it_is_read() -> None:
    async def huge_chunk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nE8D4A51000\r\n")  # a 1 TB chunk
        writer.write(b"x" * 3_000_000)  # then 3 MB of it, and silence
        await writer.drain()
        await asyncio.sleep(10)

    async with serving(huge_chunk) as base, Http11Transport().request("POST", f"{base}/v1/x", {}, b"{}",
                                                                        5) as resp:
        with pytest.raises(errors.BadReply, match="larger than max_reply_bytes"):
            await resp.read(limit=1_000_000)


@pytest.mark.parametrize("answer, failure", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n", "not followed by CRLF"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n", "negative chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", "invalid literal"),
])
async def test_broken_chunked_framing_is_a_broken_stream(answer: bytes, failure: str) -> None:
    async with serving(canned(answer)) as base:
        with pytest.raises(errors.StreamBroken, match=failure):
            await fetch(base)


async def test_a_chunk_larger_than_a_read_comes_whole_in_pieces_and_leaves_the_connection_reusable() -> None:
    data = bytes(range(256)) * 1000  # 256,000 bytes in one chunk
    fake = KeepAliveServer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + f"{len(data):x}".encode()
                           + b"\r\n" + data + b"\r\n0\r\n\r\n")
    transport = Http11Transport()
    async with serving(fake.serve) as base:
        for _ in range(2):
            async with transport.request("POST", f"{base}/v1/x", {}, b"{}", 5) as resp:
                assert await resp.read() == data
        await transport.aclose()
    assert [connection for connection, _ in fake.seen] == [1, 1]


async def test_a_compressed_body_broken_past_its_first_piece_is_a_bad_reply() -> None:
    import gzip

    packed = bytearray(gzip.compress(bytes(range(256)) * 8_000, mtime=0))  # 2 MB, inflated 256 KB a piece
    packed[4000:4004] = b"\xff\xff\xff\xff"  # its check fails in the 8th piece, not the first
    answer = (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: " + str(len(packed)).encode()
              + b"\r\n\r\n" + bytes(packed))
    async with serving(canned(answer)) as base:
        with pytest.raises(errors.BadReply, match="does not decode"):
            await fetch(base)


async def test_a_compressed_body_that_ends_before_its_stream_does_is_a_bad_reply() -> None:
    import gzip

    packed = gzip.compress(b'{"choices": []}' * 1000)[:-20]  # cut: the server's body ends mid-stream
    answer = (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: " + str(len(packed)).encode()
              + b"\r\n\r\n" + packed)
    async with serving(canned(answer)) as base:
        with pytest.raises(errors.BadReply, match="ends before its compressed stream"):
            await fetch(base)


async def test_a_proxy_in_the_environment_is_not_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there: a proxy taken would be refused
    async with serving(canned(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as base:
        assert (await fetch(base))[::2] == (200, b"ok")
