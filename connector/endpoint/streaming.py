"""A streamed reply assembled from its SSE events, and what an attempt cut before its answer was billed for.

:func:`assemble` feeds the SSE events of a 2xx stream to the dialect's
:class:`~connector.dialects.base.StreamAssembler`: the end marker closes the answer (what follows it is
ignored), an ``event: error`` in any shape is not an answer, ``max_reply_bytes`` bounds the stream.

:class:`Reception` follows one attempt, so that when it ends without an answer (the ``timeout``
deadline, a connection reset, a stream that broke, was cut at ``max_reply_bytes`` or reported an
error) the tokens the provider bills for it are still counted (:meth:`Reception.billed`): a provider
bills the prompt and the text it generated, whether or not the client stayed for the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Iterable, Mapping

from connector import errors
from connector.dialects import Dialect
from connector.dialects.base import Reply, StreamAssembler
from connector.dialects.usage import TokenUsage
from connector.endpoint.limits import TokenEstimator
from connector.endpoint.sse import SSEEvent, SSEParser
from connector.endpoint.transport import Response, bounded

# How long what follows a stream's end marker is waited for (see _drain).
_DRAIN_SECONDS = 0.5

# What reading a reply of an unexpected shape raises (JSON errors are BadReply already).
SHAPE_ERRORS = (TypeError, AttributeError, KeyError, IndexError, ValueError)


def answers_whole(headers: Mapping[str, str], first: bytes) -> bool:
    """A streamed request answered with one plain JSON body (some gateways and servers do)."""
    kind = headers.get("content-type", "").lower()
    if "event-stream" in kind:
        return False
    return "json" in kind or first.lstrip()[:1] == b"{"


def shape_error(dialect: Dialect, exc: Exception) -> errors.BadReply:
    """A reply the dialect could not read (a field of an unexpected type): BadReply, never a crash."""
    return errors.BadReply(f"the reply does not have the {dialect.name} shape "
                           f"({type(exc).__name__}: {exc})", retryable=False)


class Reception:
    """What one attempt has received so far: whether a 2xx answer began, and its stream's events."""

    __slots__ = ("answered", "assembler", "body", "events", "headers", "started", "ttft")

    def __init__(self) -> None:
        self.answered = False  # a 2xx status arrived: the endpoint is producing (and billing) an answer
        self.headers: Mapping[str, str] = {}  # its headers
        self.started = 0.0  # perf_counter when the attempt began
        self.assembler: StreamAssembler | None = None  # a streamed answer's, once it began
        self.events = 0  # stream events fed to it
        self.ttft: float | None = None  # ms to its first token
        self.body: list[bytes] = []  # a plain answer's bytes as they came

    def billed(self, failure: errors.EndpointError, dialect: Dialect, prompt_estimate: int, output_estimate: int,
               estimator: TokenEstimator) -> TokenUsage | None:
        """What the provider bills for this attempt, which ended in ``failure`` without an answer; None
        when nothing says an answer was being produced (no 2xx, or a stream that sent no event, or a
        plain body read whole but unusable and with no usage: a proxy's error page). A whole body
        refused for its shape (a ``message`` that is a string) counts the usage it reported.

        A stream counts the usage it reported, and each count it did not report is estimated (and the
        usage marked ``estimated``): the prompt as the dry run estimates it (``prompt_estimate``), the
        completion from the characters of text received. A plain body cut by the deadline or the
        connection was generated whole before it was sent: its completion is ``output_estimate``, what
        the spend guard reserved for the answer.
        """
        if not self.answered:
            return None
        if self.assembler is None:
            if not isinstance(failure, errors.TransportError):
                return self._refused(dialect)
            return TokenUsage(prompt_estimate, output_estimate, estimated=True)
        if not self.events:
            return None
        reported, chars = self.assembler.received()
        prompt = reported.prompt if reported.prompt is not None else prompt_estimate
        completion = reported.completion if reported.completion is not None else \
            estimator.prompt_tokens(chars) if chars else 0  # text, counted as a prompt's text is
        return reported._replace(prompt=prompt, completion=completion,
                                 estimated=reported.prompt is None or reported.completion is None)


    def _refused(self, dialect: Dialect) -> TokenUsage | None:
        """The usage a whole 2xx body reported although its reply was refused (a field of the wrong type)."""
        try:
            usage = dialect.reported_usage(b"".join(self.body))  # before its shape is trusted
        except (errors.BadReply, *SHAPE_ERRORS):
            return None
        return usage if usage.reported else None


async def assemble(dialect: Dialect, reception: Reception, first: bytes, rest: AsyncIterator[bytes], started: float,
                   max_reply: int) -> tuple[Reply, float | None]:
    """A streamed reply from its SSE events, and the time to its first token (ms).

    Reading stops at the stream's end marker (``[DONE]``, ``message_stop``, ``response.completed``): a
    server that keeps the connection open after it is not waited for, and a connection that breaks after
    the answer was complete (its finish seen) leaves the answer, not a failure to buy again."""
    parser = SSEParser()
    assembler = reception.assembler = dialect.stream_assembler()
    reception.ttft = None

    def feed(events: Iterable[SSEEvent]) -> None:
        for event in events:
            if assembler.finished:  # after the end marker: not part of the answer
                return
            reception.events += 1
            if event.event == "error":  # any shape: the stream ends in an error, not an answer
                raise errors.BadReply(f"the endpoint reported an error mid-stream: {dialect.error_message(event.data)}")
            assembler.feed(event.data)
            if reception.ttft is None and assembler.got_first_token:
                reception.ttft = (time.perf_counter() - started) * 1000

    chunks = bounded(rest, max_reply, len(first))  # max_reply_bytes bounds the stream
    try:
        feed(parser.feed(first))
        while not assembler.finished:
            chunk = await anext(chunks, None)
            if chunk is None:
                feed(parser.close())
                break
            feed(parser.feed(chunk))
        else:
            await _drain(chunks)
        return dialect.normalise(assembler.result()), reception.ttft
    except errors.TransportError:  # a reset, a silence past the timeout
        reply = whole(dialect, reception)
        if reply is None:
            raise
        return reply, reception.ttft
    except SHAPE_ERRORS as exc:
        raise shape_error(dialect, exc) from exc
    finally:
        await chunks.aclose()


async def read_whole(dialect: Dialect, reception: Reception, response: Response, first: bytes, max_reply: int) -> Reply:
    """A plain (not streamed) answer; one whose bytes all came before the connection broke or went silent
    (a chunked body without its last chunk) is the answer, not a failure to buy again."""
    reception.body = [first]
    try:
        raw = await response.read(max_reply, already=len(first), into=reception.body)
    except errors.TransportError:
        reply = whole(dialect, reception)
        if reply is None:
            raise
        return reply
    try:
        return dialect.normalise(dialect.parse_reply(raw))
    except SHAPE_ERRORS as exc:
        raise shape_error(dialect, exc) from exc


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """What follows a stream's end marker, read and dropped for a moment: a body read to its end leaves
    its connection reusable (most servers end it at once), one that does not end is left at that."""
    async def rest() -> None:
        async for _ in chunks:
            pass

    with contextlib.suppress(asyncio.TimeoutError, errors.ConnectorError):
        if sys.version_info >= (3, 11):  # a timer in this task, not a task of its own
            async with asyncio.timeout(_DRAIN_SECONDS):
                await rest()
        else:
            await asyncio.wait_for(rest(), _DRAIN_SECONDS)


def whole(dialect: Dialect, reception: Reception) -> Reply | None:
    """The answer of an attempt cut after it was complete: a stream whose finish was seen (though not its
    end marker or the end of the connection: a stream that simply ends there is accepted too), a plain
    body that parses as a whole reply (JSON cut short does not); None when it was not complete."""
    try:
        if reception.assembler is not None:
            return dialect.normalise(reception.assembler.result()) if reception.events else None
        body = b"".join(reception.body)
        return dialect.normalise(dialect.parse_reply(body)) if body.strip() else None
    except (errors.BadReply, *SHAPE_ERRORS):
        return None
