"""What every provider's batch API offers, in one vocabulary, and how requests are cut into batches.

A batch protocol (:class:`BatchAPI`) turns a row's built request body into a
:class:`BatchRequest` (its entry in the provider's input), submits a chunk of them as one
provider batch, polls it (:class:`BatchStatus`, with the provider's own state word and its
request counts) and, once it ended, reads one :class:`ItemResult` per request: a reply
normalised by the dialect, as a normal request's, or an error from :mod:`connector.errors`.

Phases, whatever the provider calls them::

    pending   accepted, not started (OpenAI validating, Gemini PENDING)
    running   requests are being answered (in_progress, finalizing, cancelling / canceling, RUNNING)
    ended     over; results can be read (completed, expired, cancelled, Anthropic ended, SUCCEEDED, ...)
    failed    over as a whole, nothing ran; ``failure`` has the provider's reason (OpenAI failed, FAILED)

A custom_id is the row's key in a batch: at most 64 characters of ``[A-Za-z0-9_-]``, which
every provider accepts (Anthropic's rule is the strictest).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol

import orjson

from connector import errors
from connector.dialects.base import Dialect, Reply

Phase = Literal["pending", "running", "ended", "failed"]
CUSTOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """What one batch of a provider may hold.

    ``max_bytes`` bounds the serialised input (the JSONL file, or the create request's body);
    ``overhead`` is what that input costs besides its entries; each entry costs its length plus
    one separator byte (a newline or a comma).
    """

    max_requests: int | None
    max_bytes: int
    one_model: bool = True
    overhead: int = 0


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One request, ready for a batch: its custom_id, its model and its serialised input entry."""

    custom_id: str
    model: str
    entry: bytes


@dataclass(frozen=True, slots=True)
class Submission:
    """A chunk about to be (or maybe already) submitted: how to recognise it at the provider."""

    fingerprint: str
    size: int  # how many requests it holds
    since: float  # Unix time just before the create request was sent
    anchor: str | None = None  # what :meth:`BatchAPI.prepare` gave: the batch is found by it before its id is known
    model: str = ""  # its requests' model, where a batch holds one (Gemini's lookup compares it)


@dataclass(frozen=True, slots=True)
class RequestCounts:
    """The provider's request counts; ``errored`` includes expired and cancelled requests."""

    total: int = 0
    succeeded: int = 0
    errored: int = 0
    pending: int = 0


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """One poll's answer."""

    batch_id: str
    state: str  # the provider's own word: in_progress, ended, BATCH_STATE_RUNNING, ...
    phase: Phase
    counts: RequestCounts
    results: tuple[str, ...] = ()  # where the results are: file ids, a results URL, the batch name
    failure: str | None = None  # why the batch failed as a whole, in the provider's words
    failure_retryable: bool = True

    @property
    def over(self) -> bool:
        """The batch will not change any more."""
        return self.phase in ("ended", "failed")


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What became of one request: a normalised reply, or the error it ended with."""

    custom_id: str
    reply: Reply | None = None
    error: errors.EndpointError | None = None


@dataclass(frozen=True, slots=True)
class Chunks:
    """Requests cut into batches, and the requests too large for any batch on their own."""

    batches: list[list[BatchRequest]]
    too_large: list[BatchRequest]


class BatchAPI(Protocol):
    """One provider's batch API (see the module docstring)."""

    name: ClassVar[str]

    @property
    def limits(self) -> BatchLimits:
        """What one batch may hold."""

    def request(self, custom_id: str, body: Mapping[str, Any]) -> BatchRequest:
        """A built request body (``dialect.build``) as this provider's batch entry."""

    async def prepare(self, requests: Sequence[BatchRequest], submission: Submission) -> str | None:
        """What the create needs first, and what finds its batch before the batch's id is known (the
        anchor, kept in the STATE before the create is sent): OpenAI-format uploads the input file (its
        id; the batch names it); Anthropic reads the newest batch in the list (a batch created later is
        listed above it); None where there is nothing to anchor. Always safe to repeat."""

    async def create(self, requests: Sequence[BatchRequest], submission: Submission) -> str:
        """Create one batch of these requests (within :attr:`limits`; ``submission.anchor`` from
        :meth:`prepare`); its id. Not safe to repeat blindly: see :meth:`find`."""

    async def find(self, submission: Submission, exclude: Collection[str] = ()) -> str | None:
        """The id of a batch already created for this submission (its answer lost or unclear), if the provider
        can tell; never one of ``exclude`` (the batches known to hold other rows)."""

    async def poll(self, batch_id: str) -> BatchStatus:
        """The batch's state and counts now."""

    async def results(self, status: BatchStatus, custom_ids: Sequence[str] | None = None) -> list[ItemResult]:
        """One result per custom_id of an ended batch, a request without a result unfinished; with no
        custom_ids, every result the provider reported."""

    async def cancel(self, batch_id: str) -> None:
        """Ask the provider to stop the batch (requests already answered keep their results)."""


async def submit(api: BatchAPI, requests: Sequence[BatchRequest], submission: Submission) -> str:
    """Prepare and create, once each, no retry; the batch's id. The run's own submission, with its retries
    and lookups, is :meth:`connector.endpoint.batch.retry.BatchRetry.create`."""
    anchor = await api.prepare(requests, submission)
    return await api.create(requests, replace(submission, anchor=anchor))


def nearest(candidates: Iterable[tuple[float, str]], submission: Submission,
            exclude: Collection[str]) -> str | None:
    """Of batches (created at, id) that match a submission by size and model, the one created nearest to
    when its create was sent, not before it (with 60 s for clock skew) and not one of ``exclude``."""
    fits = [(abs(created - submission.since), batch_id) for created, batch_id in candidates
            if created >= submission.since - 60 and batch_id not in exclude]
    return min(fits)[1] if fits else None


def unix_time(value: Any) -> float:
    """An RFC 3339 time (``created_at``, ``createTime``) as Unix time; 0 when unreadable."""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def fingerprint(custom_ids: Sequence[str], salt: str = "") -> str:
    """A stable name for a chunk of requests: the same custom_ids in the same order (and the same
    ``salt``, e.g. when it was submitted), the same name."""
    digest = hashlib.sha256("\n".join([*custom_ids, salt]).encode()).hexdigest()[:32]
    return f"soc-{digest}"


def check_custom_id(custom_id: str) -> str:
    """The custom_id, if every provider accepts it."""
    if not CUSTOM_ID.match(custom_id):
        raise ValueError(f"custom_id {custom_id!r} is not 1 to 64 characters of A-Z, a-z, 0-9, _ and -")
    return custom_id


class Chunker:
    """Cuts requests into batches within ``limits`` as they come, keeping their order (grouped by model
    where a batch holds one model only), so a million rows never sit in memory at once."""

    def __init__(self, limits: BatchLimits) -> None:
        self._limits = limits
        self._room = limits.max_bytes - limits.overhead
        self._open: dict[str, list[BatchRequest]] = {}
        self._sizes: dict[str, int] = {}
        self.too_large: list[BatchRequest] = []  # requests larger than a batch may be, on their own

    def add(self, request: BatchRequest) -> list[BatchRequest] | None:
        """Take one request; the batch it closed (no room left for it there), if it closed one."""
        cost = len(request.entry) + 1
        if cost > self._room:
            self.too_large.append(request)
            return None
        group = request.model if self._limits.one_model else ""
        current = self._open.setdefault(group, [])
        size = self._sizes.get(group, 0)
        most = self._limits.max_requests
        closed = None
        if current and ((most is not None and len(current) >= most) or size + cost > self._room):
            closed, current, size = current, [], 0
            self._open[group] = current
        current.append(request)
        self._sizes[group] = size + cost
        return closed

    def flush(self) -> list[list[BatchRequest]]:
        """The batches still open, in the order their groups began; the chunker is empty after."""
        out = [batch for batch in self._open.values() if batch]
        self._open.clear()
        self._sizes.clear()
        return out


def chunk(requests: Sequence[BatchRequest], limits: BatchLimits) -> Chunks:
    """Cut requests into batches within ``limits`` (see :class:`Chunker`); the too large apart."""
    chunker = Chunker(limits)
    closed = [batch for batch in map(chunker.add, requests) if batch is not None]
    return Chunks(closed + chunker.flush(), chunker.too_large)


def answered(custom_id: str, dialect: Dialect, reply: Any) -> ItemResult:
    """The result of a request the provider answered: the reply normalised by the dialect (BadReply if unusable)."""
    try:
        return ItemResult(custom_id, reply=dialect.parse_reply(orjson.dumps(reply)))
    except errors.BadReply as exc:
        return ItemResult(custom_id, error=exc)


def unfinished(custom_id: str, batch_id: str, why: str) -> ItemResult:
    """The result of a request the batch ended without running."""
    return ItemResult(custom_id, error=errors.BatchItemUnfinished(f"batch {batch_id} ended without running "
                                                                   f"this request: {why}"))


def complete(batch_id: str, found: Mapping[str, ItemResult], custom_ids: Sequence[str] | None,
             why: str) -> list[ItemResult]:
    """One result per custom_id, in their order: the ones found, the rest unfinished (``why``);
    without custom_ids, the ones found."""
    if custom_ids is None:
        return list(found.values())
    return [found.get(c) or unfinished(c, batch_id, why) for c in custom_ids]


def id_in(obj: Mapping[str, Any], key: str, what: str) -> str:
    """The non-empty text ``obj[key]`` (a batch or file id); BadReply saying which answer lacked it."""
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise errors.BadReply(f"{what} answered without {key!r}")
    return value


def as_object(value: Any) -> dict[str, Any]:
    """A JSON value if it is an object, else an empty one."""
    return value if isinstance(value, dict) else {}


def as_int(value: Any) -> int:
    """A count from a provider's JSON: a number, or (proto3 JSON int64) its text; absent is 0."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
