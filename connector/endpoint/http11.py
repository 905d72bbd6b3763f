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
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from connector import errors
from connector.endpoint.addresses import Addresses, Lookup
from connector.endpoint.http_reading import FRAMING, Body, bounded, failure, read_head, within
from connector.endpoint.transport import Response, origin

IDLE_SECONDS = 15.0  # aiohttp's keep-alive default: servers close idle connections sooner or later
_HEAD_LIMIT = 64 * 1024  # a status line and headers longer than this are not an HTTP server's
_TARGETS = 256  # parsed URLs kept (a run's rows all go to one or two)
_OWN = frozenset({"host", "connection", "accept-encoding", "user-agent", "content-length", "transfer-encoding"})


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
            reader, writer = await within(self._open(target), timeout, late)
        except errors.ConnectorError:
            raise
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise failure(exc, url, connecting=True) from exc
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
        self.reply: Body | None = None

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
                status, version, headers = await bounded(read_head(conn.reader), timeout, silence)
                body = self.reply = Body(conn.reader, headers, status, version, target.bodiless, timeout,
                                          silence, url)
                return Response(status, headers, body)
            except FRAMING as exc:
                conn.writer.close()
                self._conn = None
                # Resent only when nothing of an answer came on a reused connection: the server closed it idle.
                nothing = not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial
                if not (reused and self._resend and nothing and isinstance(exc, _DEAD)):
                    raise failure(exc, url, connecting=False) from exc
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
