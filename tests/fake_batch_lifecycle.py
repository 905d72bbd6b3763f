"""The batches of the fake batch server (tests/fake_batch.py): items, plans and lifecycle.

A batch walks a path of stages chosen by its plan, one stage per advance (``POST /_advance``,
or every N polls)::

    complete: queued -> running -> partial -> finalizing -> completed
    expire:   queued -> running -> partial -> expired
    fail:     queued -> failed

Anthropic has no ``queued`` stage (a Message Batch is ``in_progress`` once created) and neither
Anthropic nor Gemini a ``finalizing`` one. Entering ``partial`` runs every item except the
``slow`` ones; ``finalizing`` / ``completed`` run what is left; ``expired`` leaves the rest
unfinished (expired); a cancel request moves the batch to ``cancelling`` and the next advance
to ``cancelled``, leaving the rest cancelled. On Anthropic, where a batch cannot fail as a
whole, ``failed`` errors every item that has not run. Each stage has the provider's own name
(:data:`NATIVE`).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tests.fake_batch_answers import answer, error_status, markers
from tests.fake_openai import STATS, canonical, count_answer

PATHS = {
    "openai": {"complete": ["queued", "running", "partial", "finalizing", "completed"],
               "expire": ["queued", "running", "partial", "expired"],
               "fail": ["queued", "failed"]},
    "anthropic": {"complete": ["running", "partial", "completed"],
                  "expire": ["running", "partial", "expired"],
                  "fail": ["running", "failed"]},
    "gemini": {"complete": ["queued", "running", "partial", "completed"],
               "expire": ["queued", "running", "partial", "expired"],
               "fail": ["queued", "failed"]},
}
NATIVE = {
    "openai": {"queued": "validating", "running": "in_progress", "partial": "in_progress",
               "finalizing": "finalizing", "completed": "completed", "expired": "expired", "failed": "failed",
               "cancelling": "cancelling", "cancelled": "cancelled"},
    "anthropic": {"running": "in_progress", "partial": "in_progress", "completed": "ended", "expired": "ended",
                  "failed": "ended", "cancelling": "canceling", "cancelled": "ended"},
    "gemini": {"queued": "BATCH_STATE_PENDING", "running": "BATCH_STATE_RUNNING", "partial": "BATCH_STATE_RUNNING",
               "completed": "BATCH_STATE_SUCCEEDED", "expired": "BATCH_STATE_EXPIRED",
               "failed": "BATCH_STATE_FAILED", "cancelled": "BATCH_STATE_CANCELLED"},
}
TERMINAL = frozenset({"completed", "expired", "failed", "cancelled"})
OUTCOMES = ("complete", "expire", "fail")
COUNTERS = ("batch_files_uploaded", "batch_created", "batch_requests", "batch_custom_ids_twice",
            "batch_requests_per_custom_id_max", "batch_polls", "batch_downloads", "batch_cancels",
            "batch_items_succeeded", "batch_items_errored", "batch_items_expired", "batch_items_canceled",
            "sync_answers", "batch_faults")

CUSTOM_IDS: Counter[str] = Counter()  # custom_id -> times submitted in a created batch
_SEQ = itertools.count(1)


@dataclass
class Item:
    """One request of a batch and what became of it."""

    custom_id: str
    kind: str  # the answer shape: chat, responses, anthropic, gemini
    body: dict[str, Any]
    metadata: Any = None  # Gemini's per-request metadata, returned with the response
    outcome: str = "pending"  # pending, succeeded, errored, expired, canceled
    status: int = 200
    reply: dict[str, Any] | None = None
    seq: int = 0

    def run(self) -> None:
        """Answer it (billed: counted at the server) or fail it as its markers say."""
        self.seq = next(_SEQ)
        status = error_status(self.body)
        if status is not None:
            self.outcome, self.status = "errored", status
            STATS["batch_items_errored"] += 1
            return
        self.outcome, self.reply = "succeeded", answer(self.kind, self.body, self.seq)
        STATS["batch_items_succeeded"] += 1
        count_answer(canonical(self.body))

    def leave(self, outcome: str) -> None:
        """The batch ended before this item ran."""
        self.seq = next(_SEQ)
        self.outcome = outcome
        STATS[f"batch_items_{outcome}"] += 1


@dataclass
class Batch:
    """One batch of any of the three APIs."""

    id: str
    api: str  # openai, anthropic, gemini
    items: list[Item]
    plan: str = "complete"
    reason: str = ""
    endpoint: str = ""  # openai: the endpoint; gemini: the model
    input_file_id: str = ""
    completion_window: str = "24h"
    metadata: dict[str, Any] = field(default_factory=dict)
    validation_errors: list[dict[str, Any]] = field(default_factory=list)
    stage: str = ""
    step: int = 0
    polls: int = 0
    times: dict[str, int] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None

    def __post_init__(self) -> None:
        if self.validation_errors:
            self.plan = "fail"
        self.stage = PATHS[self.api][self.plan][0]
        self.times["created"] = int(time.time())
        STATS["batch_created"] += 1
        STATS[f"batch_created_{self.api}"] += 1
        STATS["batch_requests"] += len(self.items)
        for item in self.items:
            CUSTOM_IDS[item.custom_id] += 1
            if CUSTOM_IDS[item.custom_id] == 2:
                STATS["batch_custom_ids_twice"] += 1
            STATS["batch_requests_per_custom_id_max"] = max(STATS["batch_requests_per_custom_id_max"],
                                                            CUSTOM_IDS[item.custom_id])

    @property
    def native(self) -> str:
        """The provider's own word for the current stage."""
        if self.api == "gemini" and self.stage == "cancelling":
            return NATIVE["gemini"]["cancelled"]
        return NATIVE[self.api][self.stage]

    @property
    def terminal(self) -> bool:
        return self.stage in TERMINAL

    def replan(self, outcome: str, reason: str = "") -> None:
        """Choose another ending for a batch in flight (the stages so far stay)."""
        path = PATHS[self.api][outcome]
        self.plan, self.reason = outcome, reason
        # Where the new path has no such stage (finalizing, on the way to expired), the next
        # advance ends the batch.
        self.step = path.index(self.stage) if self.stage in path else len(path) - 2

    def cancel(self) -> None:
        STATS["batch_cancels"] += 1
        if self.api == "gemini":  # the Gemini API has no cancelling state
            self._enter("cancelled")
        else:
            self._enter("cancelling")

    def advance(self) -> None:
        """One step along the path (or from cancelling to cancelled)."""
        if self.terminal:
            return
        if self.stage == "cancelling":
            self._enter("cancelled")
            return
        path = PATHS[self.api][self.plan]
        self.step = min(self.step + 1, len(path) - 1)
        self._enter(path[self.step])

    def _enter(self, stage: str) -> None:
        self.stage = stage
        self.times.setdefault(stage, int(time.time()))
        pending = [i for i in self.items if i.outcome == "pending"]
        if stage == "partial":
            for item in pending:
                if "slow" not in markers(item.body):
                    item.run()
        elif stage in ("finalizing", "completed"):
            for item in pending:
                item.run()
        elif stage == "expired":
            for item in pending:
                item.leave("expired")
        elif stage == "cancelled":
            for item in pending:
                item.leave("canceled")
        elif stage == "failed" and self.api == "anthropic":
            for item in pending:  # a Message Batch cannot fail as a whole: each request errors
                item.seq, item.outcome, item.status = next(_SEQ), "errored", 500
                STATS["batch_items_errored"] += 1

    def count(self, *outcomes: str) -> int:
        return sum(1 for i in self.items if i.outcome in outcomes)


def answer_now(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The answer of a normal (synchronous) request beside the batch APIs, counted as bought like a
    batch item's (its ``[[fake:item-error-...]]`` markers are a batch's business: it is answered)."""
    STATS["sync_answers"] += 1
    count_answer(canonical(body))
    return answer(kind, body, next(_SEQ))


def iso(ts: int | None) -> str | None:
    """An RFC 3339 time (UTC) of a Unix time."""
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def page_of(batches: list[Batch], after: str | None, limit: int) -> tuple[list[Batch], bool]:
    """The batches after the one with id ``after`` (newest first), at most ``limit`` of them, and
    whether more follow."""
    ids = [b.id for b in batches]
    start = ids.index(after) + 1 if after in ids else 0
    end = start + max(1, min(limit, 1000))
    return batches[start:end], end < len(batches)
