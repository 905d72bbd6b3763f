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

import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import replace

from connector import errors
from connector.dialects import Dialect
from connector.dialects.base import Reply, StreamAssembler
from connector.dialects.usage import TokenUsage
from connector.endpoint.limits import TokenEstimator
from connector.endpoint.sse import SSEEvent, SSEParser
from connector.endpoint.transport import bounded

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

    __slots__ = ("answered", "assembler", "events")

    def __init__(self) -> None:
        self.answered = False  # a 2xx status arrived: the endpoint is producing (and billing) an answer
        self.assembler: StreamAssembler | None = None  # a streamed answer's, once it began
        self.events = 0  # stream events fed to it

    def billed(self, failure: errors.EndpointError, prompt_estimate: int, output_estimate: int,
               estimator: TokenEstimator) -> TokenUsage | None:
        """What the provider bills for this attempt, which ended in ``failure`` without an answer; None
        when nothing says an answer was being produced (no 2xx, or a stream that sent no event, or a
        plain body read whole but unusable: a proxy's error page).

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
                return None
            return TokenUsage(prompt_estimate, output_estimate, estimated=True)
        if not self.events:
            return None
        reported, chars = self.assembler.received()
        prompt = reported.prompt if reported.prompt is not None else prompt_estimate
        completion = reported.completion if reported.completion is not None else \
            estimator.prompt_tokens(chars) if chars else 0  # text, counted as a prompt's text is
        return replace(reported, prompt=prompt, completion=completion,
                       estimated=reported.prompt is None or reported.completion is None)


async def assemble(dialect: Dialect, reception: Reception, first: bytes, rest: AsyncIterator[bytes], started: float,
                   max_reply: int) -> tuple[Reply, float | None]:
    """A streamed reply from its SSE events, and the time to its first token (ms)."""
    parser = SSEParser()
    assembler = reception.assembler = dialect.stream_assembler()
    ttft: float | None = None

    def feed(events: Iterable[SSEEvent]) -> None:
        nonlocal ttft
        for event in events:
            if assembler.finished:  # after the end marker: not part of the answer
                return
            reception.events += 1
            if event.event == "error":  # any shape: the stream ends in an error, not an answer
                raise errors.BadReply(f"the endpoint reported an error mid-stream: {dialect.error_message(event.data)}")
            assembler.feed(event.data)
            if ttft is None and assembler.got_first_token:
                ttft = (time.perf_counter() - started) * 1000

    try:
        feed(parser.feed(first))
        # Transport failures arrive as TransportError, not caught below; max_reply_bytes bounds the stream.
        async for chunk in bounded(rest, max_reply, len(first)):
            feed(parser.feed(chunk))
        feed(parser.close())
        return dialect.normalise(assembler.result()), ttft
    except SHAPE_ERRORS as exc:
        raise shape_error(dialect, exc) from exc
