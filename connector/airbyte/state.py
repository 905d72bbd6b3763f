"""Checkpoints: where a sync stands, where a resumed one starts, and which input it belongs to.

Output is in input order, so the position (rows emitted so far) is a complete
cursor. The stream state this source writes (version 2)::

    {"state_version": 2,
     "position": 150,                  # rows 1..150 are in the destination
     "sync_complete": true,            # only after a full-refresh sync that finished
     "batches": [...],                 # only in batch mode: provider batches holding rows after the position
     "limit": 20,                      # only for a sample (input.limit / --limit): never a finished sync
     "input": {                        # what rows 1..position were (connector.rows.fingerprint)
       "rows_sha256": "<64 hex>",      # the chain hash of rows 1..position, values as text
       "files": [{"name": "data.csv", "size": 5120, "mtime_ns": 1733475600000000000, "rows": 150}]},
     "request": {"parts": {"model": "<hex>", "prompt": "<hex>", ...}},   # what decided the answers
                                       # (connector.requests.request_fingerprint; on_request_change)
     "cursor": {"column": "updated_at", "type": "timestamp", "keyed_by": "id", "input": "<hex>",
                "value": "2025-01-02T10:00:00+00:00", "keys_at_value": ["17", "42"]},
                                       # only with input.cursor (connector.rows.cursor): the highest value
                                       # enriched and the keys of the rows at it; "position" then counts
                                       # the rows after that mark ("selected_from" while a file's sync runs)
     "file_history": {"files": {...}, "cutoff_mtime_ns": null}}   # only with input.incremental files
                                       # (connector.rows.file_history): the files read whole; position and
                                       # input then count rows of the file being read only

A full-refresh sync that finished records ``"sync_complete": true`` so the next one
starts over. A run limited to the input's first N rows (input.limit, ``--limit``) records
``"limit": N`` and never ``sync_complete``: a later full-refresh sync starts over rather than
take the sample for a finished or an interrupted sync; an incremental one continues after the
rows the sample emitted (they are in the destination), up to its own limit if it has one.
Otherwise an incremental sync continues after row N, picking up rows appended
since, once rows 1..N of the input are found to hash to ``input.rows_sha256``
(:mod:`connector.pipeline.resume`; a mismatch is a StateError naming what changed).
``files`` lists the files rows 1..N came from (none for stdin or inline rows), for that
message. Types are checked strictly: ``"sync_complete": "false"`` is an error, not true.

To extend the format, add keys (older readers of version 2 ignore keys they do not
know) or, when a key changes meaning, raise ``state_version``: a state of a higher
version than this reader knows is refused with a message saying so. Version 1 (no
``state_version``: ``{"position": N}``, written before fingerprints) is read as it
is, rows 1..N taken as they now are; the next STATE is version 2.

In batch mode the state also lists the provider batches that still hold rows after N
(``"batches": [...]``, :mod:`connector.pipeline.batch_ledger`), so the next sync collects
their answers instead of submitting the rows again. A state without the key has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connector.errors import StateError
from connector.pipeline.batch_ledger import SavedBatch
from connector.requests.request_fingerprint import RequestFingerprint
from connector.rows.cursor import CursorState
from connector.rows.file_history import FileHistory
from connector.rows.fingerprint import InputFingerprint

STATE_VERSION = 2


@dataclass(frozen=True)
class StreamPosition:
    position: int = 0
    sync_complete: bool = False
    batches: tuple[SavedBatch, ...] = ()
    input: InputFingerprint | None = None  # None: a version-1 state, or no state
    limit: int | None = None  # the run read only the input's first N rows (a sample)
    request: RequestFingerprint | None = None  # None: a state written before request fingerprints
    cursor: CursorState | None = None  # an input.cursor sync's mark (connector.rows.cursor)
    history: FileHistory | None = None  # input.incremental files: the files read whole

    def as_state(self) -> dict[str, Any]:
        """The stream state (version 2; version 1 without a fingerprint, which only tests build)."""
        out: dict[str, Any] = {} if self.input is None else {"state_version": STATE_VERSION}
        out["position"] = self.position
        if self.sync_complete:
            out["sync_complete"] = True
        if self.limit is not None:
            out["limit"] = self.limit
        if self.batches:
            out["batches"] = [batch.as_state() for batch in self.batches]
        if self.input is not None:
            out["input"] = self.input.as_state()
        if self.request is not None:
            out["request"] = self.request.as_state()
        if self.cursor is not None:
            out["cursor"] = self.cursor.as_state()
        if self.history is not None:
            out["file_history"] = self.history.as_state()
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
    """Where the stream resumes, given the ``--state`` file's content (types checked strictly)."""
    entry = _stream_states(raw).get(stream)
    if entry is None:
        return StreamPosition()
    saved = _parsed(entry, f"state for stream '{stream}'")
    if sync_mode == "full_refresh" and (saved.sync_complete or saved.limit is not None or saved.cursor is not None):
        return StreamPosition()  # finished, a sample, or an incremental cursor: a full refresh reads every row
    return saved


def _parsed(entry: Any, where: str) -> StreamPosition:
    position = entry.get("position") if isinstance(entry, dict) else None
    if not isinstance(entry, dict) or not isinstance(position, int) or isinstance(position, bool) or position < 0:
        raise StateError(
            f"{where} is not this source's (expected {{\"position\": <rows done>}}, "
            f"got {str(entry)[:80]}); pass the state this source emitted, or none to start over"
        )
    version = entry.get("state_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= STATE_VERSION:
        raise StateError(f"{where}: state_version {str(version)[:20]} is not one this version of the connector "
                         f"reads (1 to {STATE_VERSION}): a newer version wrote it. Upgrade the connector, or reset "
                         "the stream's state to start over")
    complete = entry.get("sync_complete")
    if complete is not None and not isinstance(complete, bool):
        raise StateError(f"{where}: sync_complete must be true or false, got {str(complete)[:40]!r} "
                         f"({type(complete).__name__}); pass the state this source emitted, or none to start over")
    batches = entry.get("batches") or []
    if not isinstance(batches, list):
        raise StateError(f"{where}: batches must be a list; pass the state this source emitted")
    limit = entry.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise StateError(f"{where}: limit must be a positive integer, got {str(limit)[:40]!r}; pass the state this "
                         "source emitted, or none to start over")
    bound = entry.get("input")
    if version >= 2 and bound is None:
        raise StateError(f"{where}: a version {version} state must have 'input' (its fingerprint); pass the "
                         "state this source emitted, or none to start over")
    request, cursor = entry.get("request"), entry.get("cursor")
    history = entry.get("file_history")
    return StreamPosition(
        position, bool(complete),
        tuple(SavedBatch.from_state(raw, f"{where}, batches.{i}") for i, raw in enumerate(batches)),
        None if bound is None else InputFingerprint.from_state(bound, f"{where}, input"), limit,
        None if request is None else RequestFingerprint.from_state(request, f"{where}, request"),
        None if cursor is None else CursorState.from_state(cursor, f"{where}, cursor"),
        None if history is None else FileHistory.from_state(history, f"{where}, file_history"))


def check_cursor_mode(saved: StreamPosition, cursor: str | None, stream: str) -> None:
    """StateError when the STATE was written by a sync of the other kind: a row-number state for a cursor
    sync (which rows it covered cannot be told by their cursor), or a cursor state for a row-number sync."""
    if cursor is not None and saved.cursor is None and saved.position:
        raise StateError(f"state for stream '{stream}' counts rows done ({saved.position:,}), written by a sync "
                         f"without input.cursor; a sync with input.cursor '{cursor}' cannot tell which rows those "
                         "were. Reset the stream's state (run without --state, or clear it in the platform) to read "
                         "every row once with the cursor (answers already cached are not bought again), or leave "
                         "input.cursor unset")
    if cursor is None and saved.cursor is not None:
        raise StateError(f"state for stream '{stream}' was written by a sync with input.cursor "
                         f"'{saved.cursor.column}'; set input.cursor to it again (or the catalog's cursor_field), or "
                         "reset the stream's state to start over by row number")


def check_resume(start: StreamPosition, rows: int | None, stream: str, sync_mode: str) -> str | None:
    """A warning when the saved position lies beyond the input's end (``rows``, when known), or None.

    Reading on from there would read nothing and keep the state: a user who replaced the
    file instead of appending to it would lose every row without a word. In full-refresh
    mode the position can only come from an interrupted sync of another input, so it is a
    StateError telling the user to reset the state.
    """
    if rows is None or start.position <= rows or start.input is not None:
        return None  # a state with a fingerprint is checked against the rows themselves
    if sync_mode == "full_refresh":
        raise StateError(
            f"state for stream '{stream}' says {start.position:,} rows are done, but the input has only {rows:,}: "
            "it was replaced or shortened since that sync. Reset the stream's state (run without --state, or "
            "clear it in the platform) to read it from the start")
    return (f"{stream}: the state says {start.position:,} rows are done, but the input has only {rows:,}; nothing "
            "new to read. If the input was replaced rather than appended to, reset the stream's state to read it "
            "from the start")
