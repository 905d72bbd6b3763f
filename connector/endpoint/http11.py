"""The connector's HTTP/1.1 client, on the event loop's own streams, with a pool of keep-alive connections.

Every request of every command goes through it. At the rows per second a ``read`` reaches against a
local server, HTTP is most of a row's CPU: a keep-alive loop on asyncio streams spent 71-79 µs of CPU
per request where the same loop on aiohttp spent 202-219 µs (docs/BENCHMARKS.md, 128 and 512 in
flight, after start-up), and for ``check`` and ``discover``, each in a fresh process, it spares an
HTTP library's import. It speaks just what an API
endpoint needs, the same way for every request:

- a connection per request in flight, kept open after an answer read to its end, reused newest
  first; one the server closed, or idle for :data:`IDLE_SECONDS`, is not reused; a host name is
  looked up once per :data:`DNS_SECONDS` (one lookup at a time), new connections taking its
  addresses in turn and the next one when one refuses;
- the body by Content-Length, chunked transfer, or until the server closes; ``gzip`` and ``deflate``
  answers decompressed as they are read (a bomb stops at ``max_reply_bytes``, as it is read);
- a POST whose reused connection proves dead before any byte of the answer is sent once more on a new
  connection (a server may close an idle connection just as it is reused; llama.cpp closes every
  connection after a streamed reply while announcing Keep-Alive). Never with ``resend=False``, never
  after a new connection broke: the server may have acted on it;
- redirects never followed (a 3xx is returned as it is: the key must not reach a host the config did
  not name), no proxy from the environment, TLS verified as the config says with a context built on
  the first https request;
- ``timeout`` bounds connecting and, unless the caller ``watched`` the exchange with a deadline of its
  own, each silence; every failure is one of :mod:`connector.errors`' transport errors.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import time
import zlib
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from connector import errors
from connector.endpoint.addresses import Addresses, Lookup
from connector.endpoint.transport import Response, local_exhaustion, origin

IDLE_SECONDS = 15.0  # aiohttp's keep-alive default: servers close idle connections sooner or later
_HEAD_LIMIT = 64 * 1024  # a status line and headers longer than this are not an HTTP server's
_CHUNK = 64 * 1024
_TARGETS = 256  # parsed URLs kept (a run's rows all go to one or two)
_INFLATED = 256 * 1024  # at most this much decompressed per piece, so max_reply_bytes stops a bomb early
_OWN = frozenset({"host", "connection", "accept-encoding", "user-agent", "content-length", "transfer-encoding"})
_FRAMING = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, zlib.error)
T = TypeVar("T")


class _Target:
    """What a URL gives every request to it: where to connect, and the start of the request's head."""

    __slots__ = ("bodiless", "host", "https", "key", "port", "start")

    def __init__(self, url: str, method: str) -> None:
        parts = urlsplit(url)
        self.https = parts.scheme.lower() == "https"
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise errors.ConnectFailed(f"invalid URL {origin(url)}: only http:// and https:// URLs with a host")
        self.host, self.port = parts.hostname, parts.port or (443 if self.https else 80)
        self.key = (self.https, self.host, self.port)
        self.bodiless = method == "HEAD"  # its answer announces a body it does not send
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.start = (f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc.rpartition('@')[2]}\r\n"
                      "Accept-Encoding: gzip, deflate\r\nUser-Agent: source-openai-compatible\r\n")


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        """Open, quiet and not idle too long. Bytes that came while it was idle (a server's 408 before it closes
        the connection) answer no request of ours: the next one would read them as its answer."""
        if getattr(self.reader, "_buffer", None) or self.reader.at_eof():  # StreamReader has no public peek
            return False
        return not self.writer.is_closing() and now - self.idle_since < IDLE_SECONDS


class Http11Transport:
    """HTTP/1.1 with keep-alive; the :class:`~connector.endpoint.transport.Transport` interface."""

    def __init__(self, verify_tls: bool | ssl.SSLContext = True, lookup: Lookup | None = None) -> None:
        self._verify = verify_tls
        self._context: ssl.SSLContext | None = None
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self._targets: dict[tuple[str, str], _Target] = {}
        self._addresses = Addresses(lookup)

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

    def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout: float,
        resend: bool = True, watched: bool = False,
    ) -> _Exchange:
        target = self._targets.get((method, url))
        if target is None:
            if len(self._targets) >= _TARGETS:  # URLs that name a batch's files or a job: each used once or twice
                self._targets.clear()
            target = self._targets[method, url] = _Target(url, method)
        return _Exchange(self, target, url, _head(target, headers, body), body, timeout, resend, watched)

    def _pooled(self, key: tuple[bool, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        if idle:
            now = time.monotonic()
            while idle:
                conn = idle.pop()
                if conn.usable(now):
                    return conn
                conn.writer.close()
        return None

    def _forget(self, key: tuple[bool, str, int]) -> None:
        for conn in self._idle.pop(key, []):
            conn.writer.close()

    def _keep(self, key: tuple[bool, str, int], conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        self._idle.setdefault(key, []).append(conn)

    async def _connect(self, target: _Target, url: str, timeout: float) -> _Connection:
        late = errors.ConnectTimeout(f"connecting to {origin(url)} took longer than {timeout:g} s")
        try:
            reader, writer = await _within(self._open(target), timeout, late)
        except errors.ConnectorError:
            raise
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise _failure(exc, url, connecting=True) from exc
        return _Connection(reader, writer)

    async def _open(self, target: _Target) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to the first of the host's addresses (in turn) that takes one."""
        tls = self._tls() if target.https else None
        addresses = await self._addresses.of(target.host, target.port)
        for i, address in enumerate(addresses):
            try:
                return await asyncio.open_connection(address, target.port, ssl=tls, limit=_HEAD_LIMIT,
                                                     server_hostname=target.host if tls else None)
            except OSError:
                if i == len(addresses) - 1:
                    raise
        raise OSError(f"no address for {target.host}")  # a lookup answers at least one, or raises

    async def aclose(self) -> None:
        """Close every idle connection."""
        for key in list(self._idle):
            self._forget(key)


def _head(target: _Target, headers: Mapping[str, str], body: bytes | None) -> bytes:
    lines = [target.start]
    for name, value in headers.items():
        if name.lower() in _OWN:
            continue
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:  # would smuggle a header of its own
            raise errors.ConfigError(f"header {name!r}: a header cannot contain a line break; remove it")
        lines.append(f"{name}: {value}\r\n")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


class _Exchange:
    """One request as an async context manager (a class: an ``asynccontextmanager`` is an async generator
    per request, registered with the event loop's hooks and finalised, on every row)."""

    __slots__ = ("_body", "_conn", "_head", "_pool", "_resend", "_target", "_timeout", "_url", "_watched",
                 "reply")

    def __init__(self, pool: Http11Transport, target: _Target, url: str, head: bytes, body: bytes | None,
                 timeout: float, resend: bool, watched: bool) -> None:
        self._pool, self._target, self._url, self._head, self._body = pool, target, url, head, body
        self._timeout, self._resend, self._watched = timeout, resend, watched
        self._conn: _Connection | None = None
        self.reply: _Body | None = None

    async def __aenter__(self) -> Response:
        pool, target, url, timeout = self._pool, self._target, self._url, self._timeout
        silence = None if self._watched else errors.ReadTimeout(
            f"{origin(url)} did not answer within {timeout:g} s (timeout)")
        dead = 0  # reused connections that proved dead for this request
        while True:
            conn = pool._pooled(target.key) if dead < _DEAD_REUSES else None
            reused = conn is not None
            if conn is None:
                conn = await pool._connect(target, url, timeout)
            self._conn = conn
            try:
                conn.writer.write(self._head + self._body if self._body else self._head)
                status, version, headers = await _bounded(_read_head(conn.reader), timeout, silence)
                body = self.reply = _Body(conn.reader, headers, status, version, target.bodiless, timeout,
                                          silence, url)
                return Response(status, headers, body)
            except _FRAMING as exc:
                conn.writer.close()
                self._conn = None
                # Resent only when nothing of an answer came on a reused connection: the server closed it idle.
                nothing = not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial
                if not (reused and self._resend and nothing and isinstance(exc, _DEAD)):
                    raise _failure(exc, url, connecting=False) from exc
                dead += 1
                if dead == _DEAD_REUSES:  # the server dropped them all (a restart): the rest are dead too
                    pool._forget(target.key)
            except BaseException:
                conn.writer.close()
                self._conn = None
                raise

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        conn, body = self._conn, self.reply
        if conn is None:
            return
        self._conn = None
        if exc is None and body is not None and body.reusable():
            self._pool._keep(self._target.key, conn)
        else:  # an answer left unread (an error's head, a failure): the connection is not at a request's start
            conn.writer.close()


_DEAD = (ConnectionError, asyncio.IncompleteReadError, BrokenPipeError)
_DEAD_REUSES = 3  # then a new connection, and the origin's idle ones closed (aiohttp tried 3 times too)


async def _bounded(step: Awaitable[T], timeout: float, late: errors.TransportError | None) -> T:
    """``step``, within ``timeout`` seconds unless the caller watches the exchange (``late`` None)."""
    if late is None:
        return await step
    return await _within(step, timeout, late)


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


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str, dict[str, str]]:
    """The status, the HTTP version and the headers (lower-case names; repeated ones joined with ", ")."""
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
    return status, version, headers


class _Body:
    """An answer's body as it comes (an async iterator object, not a generator): by Content-Length,
    chunked, or until the server closes; decompressed when the server compressed it."""

    __slots__ = ("_chunked", "_done", "_fed", "_inflate", "_keep", "_late", "_left", "_reader", "_timeout", "_url")

    def __init__(self, reader: asyncio.StreamReader, headers: Mapping[str, str], status: int, version: str,
                 bodiless: bool, timeout: float, late: errors.ReadTimeout | None, url: str) -> None:
        self._reader, self._timeout, self._late, self._url = reader, timeout, late, url
        empty = bodiless or status in (204, 304)  # whatever its headers announce
        self._chunked = not empty and "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length", "")
        # -1: until the server closes. ASCII digits only: int() refuses "²".
        self._left = 0 if empty or self._chunked else int(length) if length.isascii() and length.isdigit() else -1
        self._done = self._left == 0 and not self._chunked
        self._keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower() \
            and (self._chunked or self._left >= 0)
        self._inflate = _decompressor(headers.get("content-encoding", ""))
        self._fed = False  # the decompressor was given bytes (an empty compressed body is an empty body)

    def reusable(self) -> bool:
        """Read to its end on a connection the server keeps open: the next request can go on it."""
        return self._done and self._keep and (self._inflate is None or not self._inflate.unconsumed_tail)

    def __aiter__(self) -> _Body:
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
                except _FRAMING as exc:
                    raise _failure(exc, self._url, connecting=False) from exc
                if inflate is None and raw:
                    return raw
                if not raw or inflate is None:
                    continue  # the end: _done is set
            self._fed = True
            try:
                piece = inflate.decompress(raw, _INFLATED)
            except zlib.error as exc:
                raise errors.BadReply(f"{origin(self._url)} sent a body its Content-Encoding does not "
                                      f"decode: {exc}", retryable=False) from exc
            if piece:
                return piece

    async def _next_raw(self) -> bytes:
        reader, timeout, late = self._reader, self._timeout, self._late
        if self._chunked:  # _left: what is still to come of the current chunk, read a piece at a time
            if self._left == 0:
                size = int((await _bounded(reader.readline(), timeout, late)).split(b";")[0].strip(), 16)
                if size <= 0:
                    if size < 0:
                        raise ValueError(f"a negative chunk size ({size})")
                    while (await _bounded(reader.readline(), timeout, late)) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    self._done = True
                    return b""
                self._left = size
            chunk = await _bounded(reader.read(min(self._left, _CHUNK)), timeout, late)
            if not chunk:
                raise asyncio.IncompleteReadError(b"", self._left)
            self._left -= len(chunk)
            if self._left == 0 and await _bounded(reader.readexactly(2), timeout, late) != b"\r\n":
                raise ValueError("a chunk not followed by CRLF")
            return chunk
        left = self._left
        if left > 0:
            chunk = await _bounded(reader.readexactly(left) if left <= _CHUNK else reader.read(_CHUNK), timeout,
                                   late)
            if not chunk:
                raise asyncio.IncompleteReadError(b"", left)
            self._left -= len(chunk)
            self._done = self._left == 0
            return chunk
        chunk = await _bounded(reader.read(_CHUNK), timeout, late)  # until the server closes
        self._done = not chunk
        return chunk


def _decompressor(encoding: str) -> zlib._Decompress | None:
    """A zlib decompressor for the answer's Content-Encoding; None for none."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if coding == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS)
    raise errors.BadReply(f"the reply's Content-Encoding {encoding!r} is not one this connector asked for "
                          "(gzip, deflate)", retryable=False)


def _failure(exc: BaseException, url: str, *, connecting: bool) -> errors.TransportError:
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
