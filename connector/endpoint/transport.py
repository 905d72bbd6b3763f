"""HTTP transports: the only modules that touch a network library.

The rest of the connector sees :class:`Transport`: send a request, get a
:class:`Response` whose body can be read whole or chunk by chunk. Two
implementations:

- :class:`~connector.endpoint.http11.Http11Transport`, the default for every command:
  HTTP/1.1 with keep-alive on the event loop's own streams. At hundreds of requests
  in flight it spends less than half the CPU per request of a loop on aiohttp
  (docs/BENCHMARKS.md), and ~10x less than httpx's default async pool.
- :class:`HttpxTransport`, over any ``httpx.AsyncClient``: tests inject one with
  ``httpx.MockTransport``, and cassette tests one that vcrpy records.

Each translates its library's exceptions into :mod:`connector.errors` in one
place, so retry and error policy never depend on which one is in use. The
``timeout`` they get bounds connecting and each silence; the deadline for a whole
attempt (connect, send, every byte of the answer) is the client's, above both.
"""

from __future__ import annotations

import errno
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from connector import errors
from connector.digits import ascii_int


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
        announced = ascii_int(self.headers.get("content-length", ""))
        if announced is not None and announced > limit:
            raise too_large(limit, f"{announced:,} bytes announced by Content-Length")
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
        resend: bool = True, watched: bool = False,
    ) -> AbstractAsyncContextManager[Response]:
        """Send a request; the response body is readable inside the context. ``resend=False``: never send it
        a second time on a connection that broke (a batch create: the server may have acted on the first).
        ``watched``: the caller bounds the whole exchange by a deadline of ``timeout`` (the client's
        :class:`~connector.endpoint.deadlines.Deadlines`), which bounds every silence too: the transport
        may then keep no timer of its own per read."""

    async def aclose(self) -> None:
        """Release connections."""


# Out of file descriptors, socket buffers or ephemeral ports on this machine: nothing
# reached the endpoint, so it is backpressure (fewer requests in flight), not its failure.
_LOCAL_EXHAUSTION = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.EADDRNOTAVAIL})


def local_exhaustion(exc: BaseException) -> errors.LocalResourcesExhausted | None:
    """The LocalResourcesExhausted error when ``exc`` (or what it wraps) is one of those OS errors."""
    seen: BaseException | None = exc
    for _ in range(8):  # an OSError may be wrapped: kept in os_error, or in the exception chain
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


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL, for messages (path, query and credentials left out)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


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
        watched: bool = False,  # httpx's timeouts are kept either way
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
