"""Checkpoints: where a sync stands, and where a resumed one starts.

Output is in input order, so the position (rows emitted so far) is a complete
cursor: ``{"position": N}`` means rows 1..N are in the destination. A full-refresh
sync that finished records ``"sync_complete": true`` so the next one starts over;
an incremental sync continues after row N, picking up rows appended since.

In batch mode the state also lists the provider batches that still hold rows after N
(``"batches": [...]``, :mod:`connector.pipeline.batch_ledger`), so the next sync collects
their answers instead of submitting the rows again. A state without the key (every state
written before batch mode existed) has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connector.errors import StateError
from connector.pipeline.batch_ledger import SavedBatch


@dataclass(frozen=True)
class StreamPosition:
    position: int = 0
    sync_complete: bool = False
    batches: tuple[SavedBatch, ...] = ()

    def as_state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"position": self.position}
        if self.sync_complete:
            out["sync_complete"] = True
        if self.batches:
            out["batches"] = [batch.as_state() for batch in self.batches]
        return out


def _stream_states(raw: Any) -> dict[str, Any]:
    """name -> stream_state, from the protocol's list form or the legacy dict form."""
    if raw is None or raw == [] or raw == {}:
        return {}
    if isinstance(raw, dict) and (raw.get("type") in ("STATE", "STREAM") or "stream" in raw):
        raw = [raw]  # one STATE message rather than a list of them
    if isinstance(raw, list):
        out = {}
        for i, message in enumerate(raw):
            if not isinstance(message, dict):
                raise StateError(f"state.{i}: expected a STATE message object")
            if message.get("type") == "STATE" and isinstance(message.get("state"), dict):
                message = message["state"]
            kind = message.get("type") or "STREAM"
            stream = message.get("stream")
            if kind != "STREAM" or not isinstance(stream, dict):
                raise StateError(
                    f"state.{i}: this source keeps per-stream state (type STREAM), got type {kind}; "
                    "pass the state this source emitted, or none to start over"
                )
            name = (stream.get("stream_descriptor") or {}).get("name")
            if not isinstance(name, str):
                raise StateError(f"state.{i}: stream.stream_descriptor.name is missing")
            out[name] = stream.get("stream_state")
        return out
    if isinstance(raw, dict):  # legacy: {"stream_name": {...}}
        return raw
    raise StateError("state: expected a list of STATE messages (or an empty list)")


def position_for(raw: Any, stream: str, sync_mode: str) -> StreamPosition:
    """Where the stream resumes, given the ``--state`` file's content."""
    entry = _stream_states(raw).get(stream)
    if entry is None:
        return StreamPosition()
    position = entry.get("position") if isinstance(entry, dict) else None
    if not isinstance(position, int) or isinstance(position, bool) or position < 0:
        raise StateError(
            f"state for stream '{stream}' is not this source's (expected {{\"position\": <rows done>}}, "
            f"got {str(entry)[:80]}); pass the state this source emitted, or none to start over"
        )
    batches = entry.get("batches") or []
    if not isinstance(batches, list):
        raise StateError(f"state for stream '{stream}': batches must be a list; pass the state this source emitted")
    saved = StreamPosition(entry["position"], bool(entry.get("sync_complete")), tuple(
        SavedBatch.from_state(raw, f"state for stream '{stream}', batches.{i}") for i, raw in enumerate(batches)))
    if sync_mode == "full_refresh" and saved.sync_complete:
        return StreamPosition()
    return saved


def check_resume(start: StreamPosition, rows: int | None, stream: str, sync_mode: str) -> str | None:
    """A warning when the saved position lies beyond the input's end (``rows``, when known), or None.

    Reading on from there would read nothing and keep the state: a user who replaced the
    file instead of appending to it would lose every row without a word. In full-refresh
    mode the position can only come from an interrupted sync of another input, so it is a
    StateError telling the user to reset the state.
    """
    if rows is None or start.position <= rows:
        return None
    if sync_mode == "full_refresh":
        raise StateError(
            f"state for stream '{stream}' says {start.position:,} rows are done, but the input has only {rows:,}: "
            "it was replaced or shortened since that sync. Reset the stream's state (run without --state, or "
            "clear it in the platform) to read it from the start")
    return (f"{stream}: the state says {start.position:,} rows are done, but the input has only {rows:,}; nothing "
            "new to read. If the input was replaced rather than appended to, reset the stream's state to read it "
            "from the start")
