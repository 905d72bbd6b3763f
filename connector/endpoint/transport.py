"""HTTP transports: the only modules that touch a network library.

The rest of the connector sees :class:`Transport`: send a request, get a
:class:`Response` whose body can be read whole or chunk by chunk. Two
implementations:

- :class:`AiohttpTransport`, the default. At hundreds of requests in flight it
  spends ~10x less CPU per request than httpx's default async pool (measured in
  DESIGN.md and in ``make bench``).
- :class:`HttpxTransport`, over any ``httpx.AsyncClient``: tests inject one with
  ``httpx.MockTransport``, and cassette tests one that vcrpy records.

Each translates its library's exceptions into :mod:`connector.errors` in one
place, so retry and error policy never depend on which one is in use. The
``timeout`` they get bounds connecting and each silence; the deadline for a whole
attempt (connect, send, every byte of the answer) is the client's, above both.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import ssl
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from connector import errors


@dataclass
class Response:
    """Status, headers (lower-case names) and a body to read once."""

    status: int
    headers: Mapping[str, str]
    _chunks: AsyncIterator[bytes]

    async def read(self, limit: int | None = None, already: int = 0, into: list[bytes] | None = None) -> bytes:
        """The (rest of the) body, decompressed; BadReply as soon as it passes ``limit`` bytes (``already``
        read included), as announced (Content-Length) or as read, so a gzip bomb or a runaway body never
        fills memory. ``into``: a list the chunks are appended to as they come (what arrived before a
        failure stays there), returned joined."""
        if limit is None:
            return b"".join([chunk async for chunk in self._chunks])
        announced = self.headers.get("content-length", "")
        if announced.isdigit() and int(announced) > limit:
            raise too_large(limit, f"{int(announced):,} bytes announced by Content-Length")
        parts = into if into is not None else []
        size = already
        # bounded()'s check inline: an async generator more per reply (created, registered with the
        # event loop's asyncgen hooks, finalised) costs every row for nothing when the body is read here.
        async for chunk in self._chunks:
            size += len(chunk)
            if size > limit:
                raise _read_past(limit)
            parts.append(chunk)
        return b"".join(parts)

    async def head(self, size: int) -> bytes:
        """The first ``size`` bytes of the body (an error body's words), the rest left unread."""
        parts: list[bytes] = []
        got = 0
        async for chunk in self._chunks:
            parts.append(chunk)
            got += len(chunk)
            if got >= size:
                break
        return b"".join(parts)[:size]

    def iter_chunks(self) -> AsyncIterator[bytes]:
        return self._chunks


async def bounded(chunks: AsyncIterator[bytes], limit: int, already: int = 0) -> AsyncGenerator[bytes, None]:
    """``chunks`` as they come, BadReply once they (with ``already`` bytes read before) pass ``limit``."""
    size = already
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise _read_past(limit)
        yield chunk


def _read_past(limit: int) -> errors.BadReply:
    return too_large(limit, f"more than {limit:,} bytes after decompression")


def too_large(limit: int, what: str) -> errors.BadReply:
    """The error of a reply beyond ``max_reply_bytes``: the row's, not retried (it would come again)."""
    return errors.BadReply(f"the reply is larger than max_reply_bytes ({limit:,} bytes): {what}; it was cut off "
                           "unread. Raise max_reply_bytes if answers this large are expected", retryable=False)


class Transport(Protocol):
    """What the endpoint client needs from HTTP."""

    def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout: float,
        resend: bool = True,
    ) -> AbstractAsyncContextManager[Response]:
        """Send a request; the response body is readable inside the context. ``resend=False``: never send it
        a second time on a connection that broke (a batch create: the server may have acted on the first)."""

    async def aclose(self) -> None:
        """Release connections."""


# Out of file descriptors, socket buffers or ephemeral ports on this machine: nothing
# reached the endpoint, so it is backpressure (fewer requests in flight), not its failure.
_LOCAL_EXHAUSTION = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.EADDRNOTAVAIL})


def local_exhaustion(exc: BaseException) -> errors.LocalResourcesExhausted | None:
    """The LocalResourcesExhausted error when ``exc`` (or what it wraps) is one of those OS errors."""
    seen: BaseException | None = exc
    for _ in range(8):  # aiohttp keeps the OSError in os_error, httpx in the exception chain
        if seen is None:
            return None
        cause = getattr(seen, "os_error", None)
        for candidate in (seen, cause):
            if isinstance(candidate, OSError) and candidate.errno in _LOCAL_EXHAUSTION:
                reason = candidate.strerror or errno.errorcode.get(candidate.errno or 0, "resource exhausted")
                return errors.LocalResourcesExhausted(
                    f"this machine ran out of resources for a new connection ({reason}); "
                    "fewer requests are sent at once until it recovers")
        seen = seen.__cause__ or seen.__context__
    return None


# What ssl.create_default_context and aiohttp call to load the system's CA certificates.
_LOAD_CAS = "set_default_verify_paths"


def _aiohttp() -> Any:
    """aiohttp, imported without loading the system's CA certificates.

    Importing aiohttp.connector builds two TLS contexts, each loading the CA bundle (~85 ms
    apiece at load 12 here), which an http:// endpoint never uses and ``spec``/``check``/
    ``discover`` pay in every fresh container. While it is imported, loading the default CA
    paths does nothing, so those two contexts trust no one; an https request never uses them:
    :meth:`AiohttpTransport._tls_for` gives each one a context of its own, built on first use.
    Were one used after all, its handshake would fail (nothing trusted), never pass unchecked.
    """
    import sys

    if "aiohttp" in sys.modules:
        return sys.modules["aiohttp"]
    own = ssl.SSLContext.__dict__.get(_LOAD_CAS)
    setattr(ssl.SSLContext, _LOAD_CAS, lambda _self: None)
    try:
        import aiohttp
    finally:
        if own is None:
            delattr(ssl.SSLContext, _LOAD_CAS)
        else:
            setattr(ssl.SSLContext, _LOAD_CAS, own)
    return aiohttp


def _translate_aiohttp(exc: BaseException, url: str, timeout: float) -> errors.TransportError:
    aiohttp = _aiohttp()

    local = local_exhaustion(exc)
    if local is not None:
        return local
    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError, ssl.SSLError)):
        return errors.TLSFailed(f"TLS handshake with {origin(url)} failed: {exc}")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return errors.ConnectTimeout(f"connecting to {origin(url)} took longer than {timeout:g} s")
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return errors.ReadTimeout(f"{origin(url)} did not answer within {timeout:g} s (timeout)")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return errors.ConnectFailed(f"cannot connect to {origin(url)}: {exc.os_error.strerror or exc}")
    if isinstance(exc, aiohttp.InvalidURL):
        return errors.ConnectFailed(f"invalid URL {url}")
    return errors.StreamBroken(f"connection to {origin(url)} broke: {type(exc).__name__}: {exc}")


# Whether the current task's request went out on a pooled (reused) connection: set by the connector below.
_REUSED: contextvars.ContextVar[bool] = contextvars.ContextVar("reused", default=False)


def _pool_aware_connector(**options: Any) -> Any:
    """aiohttp's TCPConnector, saying in ``_REUSED`` whether each request's connection came from the pool.

    aiohttp says it through a TraceConfig, but any trace config makes every request send ~8 trace
    signals with their parameter objects: ~4 % of a row's CPU at 512 in flight (py-spy, make bench's
    workload). Here: a set lookup per request. Called after :func:`_aiohttp` imported aiohttp.
    """
    from aiohttp import ClientRequest, ClientTimeout, TCPConnector
    from aiohttp.connector import Connection

    class PoolAwareConnector(TCPConnector):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._used: weakref.WeakSet[Any] = weakref.WeakSet()  # the connections' protocols seen before

        async def connect(self, req: ClientRequest, traces: Any, timeout: ClientTimeout) -> Connection:
            conn = await super().connect(req, traces, timeout)
            protocol = conn.protocol
            _REUSED.set(protocol in self._used)  # same task as the request: its caller reads it
            self._used.add(protocol)
            return conn

    return PoolAwareConnector(**options)


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL, for messages (path, query and credentials left out)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class AiohttpTransport:
    """The production transport: one aiohttp session, connection pool sized to the concurrency."""

    def __init__(self, max_connections: int = 0, verify_tls: bool | ssl.SSLContext = True) -> None:
        _aiohttp()  # imported with the run's preparation (~0.1 s of CPU), not by the run's first request
        self._max_connections = max_connections
        self._verify = verify_tls
        self._verified: ssl.SSLContext | None = None
        self._session: Any = None
        self._timeouts: dict[float, Any] = {}

    def _tls_for(self, url: str) -> bool | ssl.SSLContext:
        """aiohttp's ``ssl`` for a request: for https with verification, the system's CAs loaded
        here on first use (see :func:`_aiohttp`); an http:// request builds no TLS context."""
        if self._verify is not True or url[:6].lower() != "https:":
            return self._verify
        if self._verified is None:
            self._verified = ssl.create_default_context()
            self._verified.set_alpn_protocols(["http/1.1"])  # as aiohttp's own default context
        return self._verified

    def _get_session(self) -> Any:
        aiohttp = _aiohttp()

        if self._session is None:
            # ssl=True: verify certificates with the default context; False: no verification.
            connector = _pool_aware_connector(limit=self._max_connections, ttl_dns_cache=300, ssl=self._verify)
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "source-openai-compatible"},
            )
        return self._session

    async def _send(self, session: Any, method: str, url: str, headers: Mapping[str, str],
                    body: bytes | None, limits: Any, resend: bool = True) -> Any:
        """Send; once more on a new connection when a reused keep-alive one proves dead.

        A server may close an idle connection just as we reuse it; llama.cpp closes every
        connection after a streamed reply while still announcing Keep-Alive (measured: 2 of 6
        streamed reads of 5 rows lost their 5th request to it). aiohttp only resends
        idempotent methods; like curl, we resend the POST too, at once and not counted as an
        attempt: the server dropped the connection before answering anything on it. Not with
        ``resend=False``: a batch create the server acted on before it dropped the connection
        would be a second batch, every answer bought twice.
        """
        aiohttp = _aiohttp()
        tls = self._tls_for(url)

        for _ in range(3 if resend else 0):  # each failure discards a dead pooled connection; few are left at once
            _REUSED.set(False)
            try:
                return await session.request(method, url, headers=headers, data=body, timeout=limits,
                                             allow_redirects=False, ssl=tls)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                if not _REUSED.get():
                    raise
        # Redirects are never followed: the key must not reach a host the config did not name.
        return await session.request(method, url, headers=headers, data=body, timeout=limits,
                                     allow_redirects=False, ssl=tls)

    @asynccontextmanager
    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout: float,
        resend: bool = True,
    ) -> AsyncIterator[Response]:
        aiohttp = _aiohttp()
        session = self._get_session()
        # connect: time to open the connection; sock_read: longest silence while
        # waiting for (more of) the answer. The total (a stream that talks forever,
        # a body trickled a byte at a time) is the client's deadline for the attempt.
        limits = self._timeouts.get(timeout)
        if limits is None:  # immutable: one per timeout, not one per request
            limits = self._timeouts[timeout] = aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout)
        try:
            async with await self._send(session, method, url, headers, body, limits, resend) as resp:

                async def chunks() -> AsyncIterator[bytes]:
                    try:
                        async for chunk in resp.content.iter_any():
                            yield chunk
                    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                        raise _translate_aiohttp(exc, url, timeout) from exc

                headers_lower = {k.lower(): v for k, v in resp.headers.items()}
                yield Response(resp.status, headers_lower, chunks())
        except errors.ConnectorError:
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ssl.SSLError) as exc:
            raise _translate_aiohttp(exc, url, timeout) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _translate_httpx(exc: BaseException, url: str, timeout: float) -> errors.TransportError:
    import httpx

    local = local_exhaustion(exc)
    if local is not None:
        return local
    if isinstance(exc, httpx.ConnectTimeout):
        return errors.ConnectTimeout(f"connecting to {origin(url)} took longer than {timeout:g} s")
    if isinstance(exc, httpx.TimeoutException):
        return errors.ReadTimeout(f"{origin(url)} did not answer within {timeout:g} s (timeout)")
    if isinstance(exc, httpx.ConnectError):
        text = str(exc)
        if "SSL" in text or "certificate" in text.lower():
            return errors.TLSFailed(f"TLS handshake with {origin(url)} failed: {text}")
        return errors.ConnectFailed(f"cannot connect to {origin(url)}: {text}")
    return errors.StreamBroken(f"connection to {origin(url)} broke: {type(exc).__name__}: {exc}")


class HttpxTransport:
    """A transport over an ``httpx.AsyncClient`` (tests: MockTransport; cassettes: vcrpy)."""

    def __init__(self, client: Any = None) -> None:
        import httpx

        self._client = client if client is not None else httpx.AsyncClient()

    @asynccontextmanager
    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout: float,
        resend: bool = True,  # httpx (no retries configured) never sends a request twice
    ) -> AsyncIterator[Response]:
        import httpx

        try:
            async with self._client.stream(
                method, url, headers=dict(headers), content=body, timeout=timeout, follow_redirects=False
            ) as resp:

                async def chunks() -> AsyncIterator[bytes]:
                    try:
                        async for chunk in resp.aiter_bytes():
                            yield chunk
                    except httpx.HTTPError as exc:
                        raise _translate_httpx(exc, url, timeout) from exc

                yield Response(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, chunks())
        except errors.ConnectorError:
            raise
        except httpx.HTTPError as exc:
            raise _translate_httpx(exc, url, timeout) from exc

    async def aclose(self) -> None:
        await self._client.aclose()
