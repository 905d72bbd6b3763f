"""The production transport: aiohttp, its exceptions translated into :mod:`connector.errors` in one place.

At hundreds of requests in flight it spends ~10x less CPU per request than httpx's default
async pool (measured in DESIGN.md and in ``make bench``). aiohttp is imported with the run's
preparation, never by ``spec``, ``check`` or ``discover`` (:mod:`connector.endpoint.oneshot`).
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
import sys
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from connector import errors
from connector.endpoint.transport import Response, local_exhaustion, origin

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


# Whether the current task's request went out on a pooled (reused) connection: the sender sets it before each
# attempt, the connector below clears it when it opens a new connection.
_REUSED: contextvars.ContextVar[bool] = contextvars.ContextVar("reused", default=False)


def _pool_aware_connector(**options: Any) -> Any:
    """aiohttp's TCPConnector, clearing ``_REUSED`` whenever it opens a connection for a request.

    aiohttp says it through a TraceConfig, but any trace config makes every request send ~8 trace
    signals with their parameter objects: ~4 % of a row's CPU at 512 in flight (py-spy, make bench's
    workload). A request's connection is new exactly when ``_create_connection`` ran for it (in the
    request's own task: the context variable is the sender's); a request on a pooled connection pays
    nothing here, where a wrapper of ``connect`` cost each one a coroutine and a weak reference.
    Called after :func:`_aiohttp` imported aiohttp.
    """
    from aiohttp import ClientRequest, ClientTimeout, TCPConnector
    from aiohttp.client_proto import ResponseHandler

    class PoolAwareConnector(TCPConnector):
        async def _create_connection(self, req: ClientRequest, traces: Any, timeout: ClientTimeout
                                     ) -> ResponseHandler:
            _REUSED.set(False)  # before it can fail: a request whose new connection broke is not resent
            return await super()._create_connection(req, traces, timeout)

    return PoolAwareConnector(**options)


class AiohttpTransport:
    """The production transport: one aiohttp session, connection pool sized to the concurrency."""

    def __init__(self, max_connections: int = 0, verify_tls: bool | ssl.SSLContext = True) -> None:
        _aiohttp()  # imported with the run's preparation (~0.1 s of CPU), not by the run's first request
        self._max_connections = max_connections
        self._verify = verify_tls
        self._verified: ssl.SSLContext | None = None
        self._session: Any = None
        self._timeouts: dict[tuple[float, bool], Any] = {}

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

    def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout: float,
        resend: bool = True, watched: bool = False,
    ) -> AbstractAsyncContextManager[Response]:
        # connect: time to open the connection; sock_read: longest silence while waiting for (more of) the
        # answer. The total (a stream that talks forever, a body trickled a byte at a time) is the client's
        # deadline for the attempt; when it watches the request (``watched``), that deadline bounds every
        # silence too, and aiohttp's timer per read (armed, cancelled and swept from the event loop's heap
        # at each chunk) is left out.
        limits = self._timeouts.get((timeout, watched))
        if limits is None:  # immutable: one per timeout, not one per request
            limits = self._timeouts[timeout, watched] = _aiohttp().ClientTimeout(
                total=None, connect=timeout, sock_read=None if watched else timeout)
        return _Exchange(self, (method, url, headers, body, limits, resend), timeout)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Exchange:
    """One request of :class:`AiohttpTransport` as an async context manager; its library's errors
    translated, on the way in and out. A class, not an ``asynccontextmanager``: that is an async
    generator per request, registered with the event loop's hooks and finalised, on every row."""

    __slots__ = ("_args", "_resp", "_timeout", "_transport")

    def __init__(self, transport: AiohttpTransport, args: tuple[Any, ...], timeout: float) -> None:
        self._transport, self._args, self._timeout = transport, args, timeout
        self._resp: Any = None

    async def __aenter__(self) -> Response:
        """Send; once more on a new connection when a reused keep-alive one proves dead.

        A server may close an idle connection just as we reuse it; llama.cpp closes every
        connection after a streamed reply while still announcing Keep-Alive (measured: 2 of 6
        streamed reads of 5 rows lost their 5th request to it). aiohttp only resends
        idempotent methods; like curl, we resend the POST too, at once and not counted as an
        attempt: the server dropped the connection before answering anything on it. Not with
        ``resend=False``: a batch create the server acted on before it dropped the connection
        would be a second batch, every answer bought twice.
        """
        transport, (method, url, headers, body, limits, resend) = self._transport, self._args
        session, aiohttp = transport._get_session(), _aiohttp()
        tls = transport._tls_for(url)
        try:
            for _ in range(3 if resend else 0):  # each failure discards a dead pooled connection; few are left
                _REUSED.set(True)  # unless a new connection is opened for it (the connector clears it)
                try:
                    resp = self._resp = await session.request(method, url, headers=headers, data=body,
                                                              timeout=limits, allow_redirects=False, ssl=tls)
                    break
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                    if not _REUSED.get():
                        raise
            else:  # redirects are never followed: the key must not reach a host the config did not name
                resp = self._resp = await session.request(method, url, headers=headers, data=body, timeout=limits,
                                                          allow_redirects=False, ssl=tls)
        except Exception as exc:
            raise _translated(exc, url, self._timeout) from exc
        return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                        _Chunks(resp.content, url, self._timeout))

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        resp = self._resp
        try:  # what ClientResponse.__aexit__ does, without its coroutine: the connection released (or closed
            resp.release()  # when broken), then the request's body writer awaited
            await resp.wait_for_close()
        except Exception as failure:
            raise _translated(failure, self._args[1], self._timeout) from failure
        if isinstance(exc, Exception) and (mapped := _translated(exc, self._args[1], self._timeout)) is not exc:
            raise mapped from exc


def _translated(exc: Exception, url: str, timeout: float) -> Exception:
    """``exc`` as a connector error when it is aiohttp's (or the socket's); else ``exc`` itself."""
    aiohttp = _aiohttp()
    if isinstance(exc, errors.ConnectorError) \
            or not isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, OSError, ssl.SSLError)):
        return exc
    return _translate_aiohttp(exc, url, timeout)


class _Chunks:
    """An aiohttp body chunk by chunk, its errors translated (an iterator object: no async generator)."""

    __slots__ = ("_content", "_timeout", "_url")

    def __init__(self, content: Any, url: str, timeout: float) -> None:
        self._content, self._url, self._timeout = content, url, timeout

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk: bytes = await self._content.readany()
        except Exception as exc:
            if isinstance(exc, _aiohttp().EofStream):
                raise StopAsyncIteration from None
            mapped = _translated(exc, self._url, self._timeout)
            if mapped is exc:
                raise
            raise mapped from exc
        if not chunk:
            raise StopAsyncIteration
        return chunk
