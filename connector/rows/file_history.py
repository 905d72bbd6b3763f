"""Incremental by file (``input.incremental: files``): which files a sync has read, and which to read next.

As Airbyte's file-based sources do (airbyte-cdk ``DefaultFileBasedCursor``), the STATE keeps a
history of the files read whole, keyed by their URI (``stream_state.file_history``)::

    "file_history": {
      "files": {"s3://tickets/2025/day-01.parquet": {"size": 5120, "mtime_ns": 1733475600000000000,
                                                     "etag": null, "rows": 150}, ...},
      "cutoff_mtime_ns": null}        # set once the history was trimmed (see below)

A sync lists the files ``input.path`` names and reads, in this order: the file a killed sync
stopped in (when it is still the same version, from the row after the last one emitted: the
STATE's ``position`` and ``input`` then count rows of that file only), then every file not in
the history (new, even one whose name sorts before those read) and every file whose size,
modification time or ETag (when the store gives one) differs from the history's (changed: read
again whole), in name order. Files in the history and unchanged are skipped; files in the
history and no longer listed are noted as deleted and dropped from it.

The history holds at most :data:`MAX_FILES` files (Airbyte's default too). Past it, the files
modified longest ago are dropped and ``cutoff_mtime_ns`` is the oldest modification time still
kept; from then on a file not in the history that was modified more than :data:`LOOKBACK_NS`
(3 days, Airbyte's ``DEFAULT_DAYS_TO_SYNC_IF_HISTORY_IS_FULL``) before the cutoff is taken as
read. A file in that margin is read again (its answers come from the answer cache when they
were bought before): the rule errs towards reading twice, never towards missing a file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connector.errors import StateError

MAX_FILES = 10_000
LOOKBACK_NS = 3 * 24 * 3600 * 1_000_000_000


@dataclass(frozen=True)
class FileVersion:
    """One file as listed: its URI, size, modification time and ETag (None where the store gives none)."""

    name: str
    size: int
    mtime_ns: int
    etag: str | None = None
    rows: int = 0  # rows it held when it was read (0 until then)

    def same_as(self, other: FileVersion) -> bool:
        """The same version of the file: size and modification time, and ETag when both have one."""
        if (self.size, self.mtime_ns) != (other.size, other.mtime_ns):
            return False
        return self.etag is None or other.etag is None or self.etag == other.etag

    def as_state(self) -> dict[str, Any]:
        return {"size": self.size, "mtime_ns": self.mtime_ns, "etag": self.etag, "rows": self.rows}

    @classmethod
    def from_state(cls, name: str, raw: Any, where: str) -> FileVersion:
        if not isinstance(raw, dict):
            raise StateError(f"{where}: expected an object with size, mtime_ns, etag and rows")
        numbers = []
        for key in ("size", "mtime_ns", "rows"):
            value = raw.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise StateError(f"{where}.{key}: expected a whole number >= 0, got {str(value)[:40]!r}")
            numbers.append(value)
        etag = raw.get("etag")
        if etag is not None and not isinstance(etag, str):
            raise StateError(f"{where}.etag: expected a string or null, got {str(etag)[:40]!r}")
        return cls(name, numbers[0], numbers[1], etag, numbers[2])


@dataclass(frozen=True)
class FileHistory:
    """The files read whole by earlier syncs (see the module doc)."""

    files: Mapping[str, FileVersion] = field(default_factory=dict)
    cutoff_mtime_ns: int | None = None

    def as_state(self) -> dict[str, Any]:
        return {"files": {name: f.as_state() for name, f in sorted(self.files.items())},
                "cutoff_mtime_ns": self.cutoff_mtime_ns}

    @classmethod
    def from_state(cls, raw: Any, where: str) -> FileHistory:
        if not isinstance(raw, dict) or not isinstance(raw.get("files", {}), dict):
            raise StateError(f"{where}: expected an object with 'files' (an object of file URI -> version); pass "
                             "the state this source emitted, or none to start over")
        cutoff = raw.get("cutoff_mtime_ns")
        if cutoff is not None and (not isinstance(cutoff, int) or isinstance(cutoff, bool)):
            raise StateError(f"{where}.cutoff_mtime_ns: expected a whole number or null, got {str(cutoff)[:40]!r}")
        files = {name: FileVersion.from_state(name, value, f"{where}.files[{name!r}]")
                 for name, value in raw.get("files", {}).items()}
        return cls(files, cutoff)

    def taken_as_read(self, found: FileVersion) -> bool:
        """A file not in a trimmed history, modified long enough before its cutoff (see the module doc)."""
        return self.cutoff_mtime_ns is not None and found.mtime_ns < self.cutoff_mtime_ns - LOOKBACK_NS

    def with_read(self, done: Iterable[FileVersion], listed: Iterable[str] | None = None,
                  most: int = MAX_FILES) -> FileHistory:
        """The history once ``done`` are read whole; without the files no longer ``listed`` (when given);
        trimmed to ``most`` files, the ones modified longest ago dropped first."""
        files = dict(self.files)
        if listed is not None:
            keep = set(listed)
            files = {name: f for name, f in files.items() if name in keep}
        files.update((f.name, f) for f in done)
        cutoff = self.cutoff_mtime_ns
        if len(files) > most:
            newest = sorted(files.values(), key=lambda f: (f.mtime_ns, f.name), reverse=True)[:most]
            files = {f.name: f for f in newest}
            cutoff = max(cutoff or 0, min(f.mtime_ns for f in newest))
        return FileHistory(files, cutoff)


@dataclass(frozen=True)
class FilePlan:
    """What a sync reads of the files listed, and why."""

    read: tuple[str, ...]  # in reading order
    resumed: str | None  # the file a killed sync stopped in, read on from its saved row
    new: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]
    deleted: tuple[str, ...]
    restarted: str | None = None  # the file a killed sync stopped in, changed since: read again whole

    @property
    def listed(self) -> int:
        return len(self.new) + len(self.changed) + len(self.unchanged) + (self.resumed is not None)

    def notes(self, stream: str) -> list[tuple[str, str]]:
        """(level, text) lines that say what this sync reads of the files, for the run's log."""
        out = [("INFO", f"{stream}: input.incremental files: {self.listed:,} files listed, {len(self.unchanged):,} "
                        f"skipped as unchanged since they were read, {len(self.read):,} to read "
                        f"({len(self.new):,} new, {len(self.changed):,} changed"
                        + (", 1 resumed where the last sync stopped" if self.resumed else "") + ")")]
        if self.changed:
            out.append(("WARN", f"{stream}: changed since they were read, so read again whole (rows already "
                                f"answered for the same request come from the answer cache): {_names(self.changed)}"))
        if self.restarted:
            out.append(("WARN", f"{stream}: '{self.restarted}', which the last sync stopped in, changed since: "
                                "it is read again from its first row"))
        if self.deleted:
            out.append(("WARN", f"{stream}: no longer in the input (their records stay in the destination; dropped "
                                f"from the file history): {_names(self.deleted)}"))
        return out


def plan_files(listed: Sequence[FileVersion], history: FileHistory, current: FileVersion | None) -> FilePlan:
    """Which of the ``listed`` files to read (see the module doc); ``current`` is the file the saved STATE
    stopped in (None when it stopped between files)."""
    new: list[str] = []
    changed: list[str] = []
    unchanged: list[str] = []
    resumed = restarted = None
    for found in sorted(listed, key=lambda f: f.name):
        if current is not None and found.name == current.name:
            if found.same_as(current):
                resumed = found.name
                continue
            restarted = found.name
        before = history.files.get(found.name)
        if before is None:
            (unchanged if history.taken_as_read(found) and found.name != restarted else new).append(found.name)
        elif before.same_as(found):
            unchanged.append(found.name)
        else:
            changed.append(found.name)
    names = {f.name for f in listed}
    gone = [n for n in history.files if n not in names]
    if current is not None and current.name not in names and current.name not in history.files:
        gone.append(current.name)  # the file a killed sync stopped in: its rows emitted stay emitted
    deleted = tuple(sorted(gone))
    ahead = (resumed,) if resumed else ()
    read = ahead + tuple(sorted(new + changed))
    return FilePlan(read, resumed, tuple(new), tuple(changed), tuple(unchanged), deleted, restarted)


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:10])
    return shown + (f" and {len(names) - 10:,} more" if len(names) > 10 else "")
