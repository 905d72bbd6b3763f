"""Reading an HTTP/1.1 answer from a connection: its status and headers, then its body as it comes.

:mod:`connector.endpoint.http11` sends the request and keeps the connection; this module reads what comes back
on it, every byte bounded: by ``max_reply_bytes`` (a body is handed over 64 KB at most at a time, and a
compressed one 256 KB at most decompressed), and by ``timeout`` for each silence unless the caller watches the
exchange with a deadline of its own. Every failure is one of :mod:`connector.errors`' transport errors.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import zlib
from collections.abc import Awaitable, Mapping
from typing import TypeVar

from connector import errors
from connector.digits import ascii_int
from connector.endpoint.transport import local_exhaustion, origin

_CHUNK = 64 * 1024
_INFLATED = 256 * 1024  # at most this much decompressed per piece, so max_reply_bytes stops a bomb early
# What a broken connection or broken framing raises while an answer is read.
FRAMING = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, zlib.error)
T = TypeVar("T")


async def bounded(step: Awaitable[T], timeout: float, late: errors.TransportError | None) -> T:
    """``step``, within ``timeout`` seconds unless the caller watches the exchange (``late`` None)."""
    if late is None:
        return await step
    return await within(step, timeout, late)


async def within(step: Awaitable[T], timeout: float, late: errors.TransportError) -> T:
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


async def read_head(reader: asyncio.StreamReader) -> tuple[int, str, dict[str, str]]:
    """The status, the HTTP version and the headers (lower-case names; repeated ones joined with ", ")."""
    while True:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status_line, *lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        status = ascii_int(rest[:3])
        if not version.startswith("HTTP/1.") or status is None:
            raise ValueError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
        if status >= 200 or status == 101:
            break  # 100 Continue and other interim answers come before the real one
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return status, version, headers


class Body:
    """An answer's body as it comes (an async iterator object, not a generator): by Content-Length,
    chunked, or until the server closes; decompressed when the server compressed it."""

    __slots__ = ("_chunked", "_deflate", "_done", "_fed", "_inflate", "_keep", "_late", "_left", "_reader", "_timeout",
                 "_url")

    def __init__(self, reader: asyncio.StreamReader, headers: Mapping[str, str], status: int, version: str,
                 bodiless: bool, timeout: float, late: errors.ReadTimeout | None, url: str) -> None:
        self._reader, self._timeout, self._late, self._url = reader, timeout, late, url
        empty = bodiless or status in (204, 304)  # whatever its headers announce
        self._chunked = not empty and "chunked" in headers.get("transfer-encoding", "").lower()
        length = ascii_int(headers.get("content-length", ""))
        self._left = 0 if empty or self._chunked else -1 if length is None else length  # -1: until the server closes
        self._done = self._left == 0 and not self._chunked
        self._keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower() \
            and (self._chunked or self._left >= 0)
        coding = headers.get("content-encoding", "").strip().lower()
        self._inflate = _decompressor(coding)
        self._deflate = coding == "deflate"  # maybe raw: see _inflated
        self._fed = False  # the decompressor was given bytes (an empty compressed body is an empty body)

    def reusable(self) -> bool:
        """Read to its end on a connection the server keeps open: the next request can go on it."""
        return self._done and self._keep and (self._inflate is None or not self._inflate.unconsumed_tail)

    def __aiter__(self) -> Body:
        return self

    async def __anext__(self) -> bytes:
        inflate = self._inflate
        while True:
            if inflate is not None and inflate.unconsumed_tail:
                raw = inflate.unconsumed_tail  # what the last piece left compressed
            elif self._done:
                if inflate is not None and self._fed and not inflate.eof:
                    raise errors.BadReply(f"{origin(self._url)} sent a body that ends before its compressed stream "
                                          "does: the answer is cut", retryable=True)
                raise StopAsyncIteration
            else:
                try:
                    raw = await self._next_raw()
                except FRAMING as exc:
                    raise failure(exc, self._url, connecting=False) from exc
                if inflate is None and raw:
                    return raw
                if not raw or inflate is None:
                    continue  # the end: _done is set
            piece = self._inflated(raw)
            inflate = self._inflate  # raw deflate, found on the first bytes, has a decompressor of its own
            if piece:
                return piece

    def _inflated(self, raw: bytes) -> bytes:
        """``raw`` decompressed, 256 KB at most (the rest stays in the decompressor's unconsumed tail)."""
        first, self._fed = not self._fed, True
        assert self._inflate is not None, "only a compressed body is inflated"
        try:
            return self._inflate.decompress(raw, _INFLATED)
        except zlib.error as exc:
            if first and self._deflate:  # deflate without its zlib wrapper: some servers send it (aiohttp read it)
                self._deflate, self._inflate = False, zlib.decompressobj(-zlib.MAX_WBITS)
                self._fed = False
                return self._inflated(raw)
            raise errors.BadReply(f"{origin(self._url)} sent a body its Content-Encoding does not "
                                  f"decode: {exc}", retryable=False) from exc

    async def _next_raw(self) -> bytes:
        reader, timeout, late = self._reader, self._timeout, self._late
        if self._chunked:  # _left: what is still to come of the current chunk, read a piece at a time
            if self._left == 0:
                size = int((await bounded(reader.readline(), timeout, late)).split(b";")[0].strip(), 16)
                if size <= 0:
                    if size < 0:
                        raise ValueError(f"a negative chunk size ({size})")
                    while (await bounded(reader.readline(), timeout, late)) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    self._done = True
                    return b""
                self._left = size
            chunk = await bounded(reader.read(min(self._left, _CHUNK)), timeout, late)
            if not chunk:
                raise asyncio.IncompleteReadError(b"", self._left)
            self._left -= len(chunk)
            if self._left == 0 and await bounded(reader.readexactly(2), timeout, late) != b"\r\n":
                raise ValueError("a chunk not followed by CRLF")
            return chunk
        left = self._left
        if left > 0:
            chunk = await bounded(reader.readexactly(left) if left <= _CHUNK else reader.read(_CHUNK), timeout,
                                   late)
            if not chunk:
                raise asyncio.IncompleteReadError(b"", left)
            self._left -= len(chunk)
            self._done = self._left == 0
            return chunk
        chunk = await bounded(reader.read(_CHUNK), timeout, late)  # until the server closes
        self._done = not chunk
        return chunk


def _decompressor(coding: str) -> zlib._Decompress | None:
    """A zlib decompressor for the answer's Content-Encoding (lower case, trimmed); None for none."""
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if coding == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS)
    raise errors.BadReply(f"the reply's Content-Encoding {coding!r} is not one this connector asked for "
                          "(gzip, deflate)", retryable=False)


def failure(exc: BaseException, url: str, *, connecting: bool) -> errors.TransportError:
    """The connector's error for a failure of the socket, the TLS layer or the HTTP framing."""
    local = local_exhaustion(exc)
    if local is not None:
        return local
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return errors.TLSFailed(f"TLS handshake with {origin(url)} failed: {exc}")
    if connecting:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, OSError) and (exc.errno or 0) > 0 and reason.startswith("Connect call failed"):
            reason = os.strerror(exc.errno or 0)  # not asyncio's "Connect call failed ('10.0.0.1', 443)"
        return errors.ConnectFailed(f"cannot connect to {origin(url)}: {reason}")
    return errors.StreamBroken(f"connection to {origin(url)} broke: {type(exc).__name__}: {exc}")
