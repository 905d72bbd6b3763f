"""A transport for the few requests of a one-shot command (``check``, ``discover``), on asyncio streams.

``check`` and ``discover`` ask one or two things of the endpoint, in a fresh process that a platform
starts for every form it shows. aiohttp's import is a large part of that process's start-up
(docs/BENCHMARKS.md, cold start), and a pool of keep-alive connections buys nothing for one
request, so this transport speaks HTTP/1.1 itself on the event loop's own streams: one
connection per request (``Connection: close``), the body by Content-Length, chunked transfer or
until the server closes, never compressed (``Accept-Encoding: identity``). Its promises are the
production transport's: TLS verified as the config says (a context built only for ``https://``),
redirects never followed (a 3xx is returned as it is), no proxy from the environment, the
``timeout`` bounding connecting and each silence, and every failure one of
:mod:`connector.errors`' transport errors.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from typing import TypeVar
from urllib.parse import SplitResult, urlsplit

from connector import errors
from connector.endpoint.transport import Response, local_exhaustion, origin

_HEAD_LIMIT = 64 * 1024  # a status line and headers longer than this are not an HTTP server's
_CHUNK = 64 * 1024
T = TypeVar("T")


class OneShotTransport:
    """One connection per request; the :class:`~connector.endpoint.transport.Transport` interface."""

    def __init__(self, verify_tls: bool | ssl.SSLContext = True) -> None:
        self._verify = verify_tls
        self._context: ssl.SSLContext | None = None

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            if isinstance(self._verify, ssl.SSLContext):
                self._context = self._verify
            elif self._verify:
                self._context = ssl.create_default_context()
            else:
                self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE
            self._context.set_alpn_protocols(["http/1.1"])
        return self._context

    @asynccontextmanager
    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout: float,
        resend: bool = True,  # a request is sent once, on a connection of its own
        watched: bool = False,  # its silences are bounded either way
    ) -> AsyncIterator[Response]:
        parts = urlsplit(url)
        https = parts.scheme.lower() == "https"
        host, port = parts.hostname or "", parts.port or (443 if https else 80)
        try:
            reader, writer = await _within(
                asyncio.open_connection(host, port, ssl=self._tls() if https else None, limit=_HEAD_LIMIT),
                timeout, errors.ConnectTimeout(f"connecting to {origin(url)} took longer than {timeout:g} s"))
        except errors.ConnectorError:
            raise
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise _failure(exc, url, connecting=True) from exc
        try:
            writer.write(_request_head(method, parts.netloc.rpartition("@")[2], parts, headers, body))
            if body:
                writer.write(body)
            silence = errors.ReadTimeout(f"{origin(url)} did not answer within {timeout:g} s (timeout)")
            status, received = await _within(_read_head(reader), timeout, silence)
            yield Response(status, received, _body(reader, received, method, status, timeout, silence, url))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise _failure(exc, url, connecting=False) from exc
        finally:
            writer.close()

    async def aclose(self) -> None:
        """Nothing to release: every connection closes with its request."""


async def _within(step: Awaitable[T], timeout: float, late: errors.TransportError) -> T:
    """``step`` within ``timeout`` seconds, else ``late``. asyncio.timeout, not wait_for: on 3.11
    wait_for loses a cancellation that lands as its step completes, so the client's deadline for the
    attempt would be lost while a trickling server keeps each read short."""
    try:
        if sys.version_info >= (3, 11):
            async with asyncio.timeout(timeout):
                return await step
        return await asyncio.wait_for(step, timeout)
    except asyncio.TimeoutError:
        raise late from None


def _request_head(method: str, host: str, parts: SplitResult, headers: Mapping[str, str], body: bytes | None
                  ) -> bytes:
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close", "Accept-Encoding: identity",
             "User-Agent: source-openai-compatible"]
    named = {name.lower() for name in headers}
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() not in _OWN]
    if body is not None and "content-length" not in named:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_OWN = frozenset({"host", "connection", "accept-encoding", "user-agent", "content-length", "transfer-encoding"})


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The status and the headers (lower-case names; repeated ones joined with ", ")."""
    while True:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status_line, *lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1.") or not (rest[:3].isascii() and rest[:3].isdigit()):
            raise ValueError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
        status = int(rest[:3])
        if status >= 200 or status == 101:
            break  # 100 Continue and other interim answers come before the real one
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return status, headers


async def _body(reader: asyncio.StreamReader, headers: Mapping[str, str], method: str, status: int, timeout: float,
                silence: errors.ReadTimeout, url: str) -> AsyncIterator[bytes]:
    """The body's bytes as they come: Content-Length, chunked, or until the server closes."""
    try:
        if method == "HEAD" or status in (204, 304):
            return
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while size := int((await _within(reader.readline(), timeout, silence)).split(b";")[0].strip(), 16):
                yield await _within(reader.readexactly(size), timeout, silence)
                await _within(reader.readexactly(2), timeout, silence)
            return
        length = headers.get("content-length", "")
        left = int(length) if length.isascii() and length.isdigit() else -1  # not "²": int() refuses it
        while left != 0:
            chunk = await _within(reader.read(_CHUNK if left < 0 else min(_CHUNK, left)), timeout, silence)
            if not chunk:
                if left > 0:
                    raise asyncio.IncompleteReadError(b"", left)
                return
            left -= len(chunk) if left > 0 else 0
            yield chunk
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        raise _failure(exc, url, connecting=False) from exc


def _failure(exc: BaseException, url: str, *, connecting: bool) -> errors.TransportError:
    """The connector's error for a failure of the socket, the TLS layer or the HTTP framing."""
    local = local_exhaustion(exc)
    if local is not None:
        return local
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return errors.TLSFailed(f"TLS handshake with {origin(url)} failed: {exc}")
    if connecting:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return errors.ConnectFailed(f"cannot connect to {origin(url)}: {reason}")
    return errors.StreamBroken(f"connection to {origin(url)} broke: {type(exc).__name__}: {exc}")
