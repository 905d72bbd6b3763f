"""The provider batches a sync submitted, as its STATE carries them: which rows went into which
batch, and how to recognise each at the provider.

A row's custom_id is ``r<row number>-<its answer-cache key in base64url>`` (at most 64
characters of ``[A-Za-z0-9_-]``, which every provider accepts): the row it answers and the
exact request it is, so a downloaded answer goes into the answer cache without the row at hand,
and an answer to a request that has changed since (the config was edited) is never taken for
the row's.

A :class:`SavedBatch` is written into the STATE *before* its create request is sent (no id yet,
``state: submitting``), again with its anchor once prepared (OpenAI-format: its input file's id;
Anthropic: the newest batch listed before the create) and again with its id once created: a sync
killed in between finds the batch again by its fingerprint (a hash of its custom_ids and the time it
was sent) or its anchor instead of submitting the rows twice. A create whose answer was unclear (a
5xx, a cut connection) and whose batch was not found is kept the same way, ``state: unconfirmed``.
It stays in the STATE until every one of its rows was emitted.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from connector.errors import StateError

SUBMITTING = "submitting"  # the create request may have been sent; its answer was not seen
UNCONFIRMED = "unconfirmed"  # the create got no clear answer and the batch was not found (yet)


def custom_id(row_number: int, key: str) -> str:
    """The custom_id of row ``row_number`` (1-based) asking the request whose cache key is ``key``."""
    return f"r{row_number}-{base64.urlsafe_b64encode(bytes.fromhex(key)).rstrip(b'=').decode()}"


def cache_key_of(custom_id: str) -> str | None:
    """The answer-cache key inside one of this connector's custom_ids; None for another's."""
    head, _, tail = custom_id.partition("-")
    if not head.startswith("r") or not head[1:].isdigit() or len(tail) != 43:
        return None
    try:
        return base64.urlsafe_b64decode(tail + "=").hex()
    except ValueError:
        return None


def ranges_of(row_numbers: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Increasing row numbers as inclusive ranges: 1, 2, 3, 7 -> (1, 3), (7, 7)."""
    out: list[tuple[int, int]] = []
    for number in row_numbers:
        if out and number == out[-1][1] + 1:
            out[-1] = (out[-1][0], number)
        else:
            out.append((number, number))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class SavedBatch:
    """One provider batch of a sync (see the module docstring)."""

    fingerprint: str
    since: float  # Unix time just before its create request
    size: int  # requests in it
    rows: tuple[tuple[int, int], ...]  # its rows' numbers, as inclusive ranges
    id: str | None = None  # None until the provider's answer to the create was seen
    state: str = SUBMITTING  # the provider's last word on it
    anchor: str | None = None  # what finds it before its id is known (BatchAPI.prepare): its input file, ...
    task: str | None = None  # with tasks: the task whose requests it holds (pipeline/batch_tasks.py)

    @property
    def first(self) -> int:
        return self.rows[0][0]

    @property
    def last(self) -> int:
        return self.rows[-1][1]

    def row_numbers(self) -> Iterator[int]:
        for start, end in self.rows:
            yield from range(start, end + 1)

    def label(self) -> str:
        """How a person recognises it: its id, rows and size."""
        return f"batch {self.id or '(being created)'} (rows {self.first}-{self.last}, {self.size} requests)"

    def as_state(self) -> dict[str, Any]:
        out = {"id": self.id, "fingerprint": self.fingerprint, "since": self.since, "size": self.size,
               "rows": [list(r) for r in self.rows], "state": self.state}
        if self.task is not None:
            out["task"] = self.task
        return out if self.anchor is None else {**out, "anchor": self.anchor}

    @classmethod
    def from_state(cls, raw: Any, where: str) -> SavedBatch:
        """A batch from its STATE form; StateError naming ``where`` when it is not one."""
        problem = StateError(f"{where}: not a batch this source saved (expected id, fingerprint, since, size, rows, "
                             f"state; got {str(raw)[:120]}); pass the state this source emitted")
        if not isinstance(raw, dict):
            raise problem
        rows, since, size = raw.get("rows"), raw.get("since"), raw.get("size")
        if not (isinstance(rows, list) and rows and all(_is_range(r) for r in rows)):
            raise problem
        if not isinstance(since, (int, float)) or isinstance(since, bool) or not math.isfinite(since):
            raise problem
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise problem
        batch_id, fingerprint, state = raw.get("id"), raw.get("fingerprint"), raw.get("state", SUBMITTING)
        anchor, task = raw.get("anchor"), raw.get("task")
        if not (batch_id is None or isinstance(batch_id, str)) or not isinstance(fingerprint, str) \
                or not isinstance(state, str) or not (anchor is None or isinstance(anchor, str)) \
                or not (task is None or isinstance(task, str)):
            raise problem
        ranges = tuple((int(a), int(b)) for a, b in rows)
        if any(b2[0] <= b1[1] for b1, b2 in itertools.pairwise(ranges)):
            raise problem
        return cls(fingerprint, float(since), size, ranges, batch_id, state, anchor, task)


def _is_range(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                               for v in value) and 1 <= value[0] <= value[1])


class Ledger:
    """The open batches of a sync (some of their rows not yet emitted), and which batch each row is in."""

    def __init__(self, batches: Iterable[SavedBatch] = ()) -> None:
        self._batches: dict[str, SavedBatch] = {}
        self._starts: list[int] = []
        self._spans: list[tuple[int, int, str]] = []
        for batch in batches:
            self._batches[batch.fingerprint] = batch
        self._index()

    def _index(self) -> None:
        spans = sorted((a, b, key) for key, batch in self._batches.items() for a, b in batch.rows)
        for (_, end, key), (start, _, other) in itertools.pairwise(spans):
            if start <= end:
                raise StateError(f"state: row {start} is in two batches ({key} and {other}); pass the state this "
                                 "source emitted")
        self._spans = spans
        self._starts = [a for a, _, _ in spans]

    @property
    def batches(self) -> list[SavedBatch]:
        """Every open batch, by first row."""
        return sorted(self._batches.values(), key=lambda b: b.first)

    def __len__(self) -> int:
        return len(self._batches)

    def put(self, batch: SavedBatch) -> None:
        """Add a batch, or replace the one with its fingerprint (a new id or state)."""
        known = batch.fingerprint in self._batches
        self._batches[batch.fingerprint] = batch
        if not known:
            self._index()

    def update(self, batch: SavedBatch, **changes: Any) -> SavedBatch:
        """The batch with these fields changed, kept in the ledger."""
        changed = replace(batch, **changes)
        self.put(changed)
        return changed

    def drop(self, batch: SavedBatch) -> None:
        """Forget a batch: its rows are no longer in any."""
        if self._batches.pop(batch.fingerprint, None) is not None:
            self._index()

    def batch_of(self, row_number: int) -> SavedBatch | None:
        """The batch row ``row_number`` went into, if any."""
        at = bisect.bisect_right(self._starts, row_number) - 1
        if at < 0:
            return None
        start, end, key = self._spans[at]
        return self._batches[key] if start <= row_number <= end else None

    def open_after(self, position: int) -> tuple[SavedBatch, ...]:
        """The batches with a row after ``position`` (rows 1..position emitted): what the STATE keeps."""
        return tuple(b for b in self.batches if b.last > position)

    def forget_through(self, position: int) -> None:
        """Drop the batches whose every row is emitted."""
        for batch in [b for b in self._batches.values() if b.last <= position]:
            self.drop(batch)
