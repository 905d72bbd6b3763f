"""One sync's incremental-by-file bookkeeping (``input.incremental: files``, :mod:`connector.rows.file_history`).

:class:`FileSync` is made from the saved STATE before the input is opened; the input table asks
it which of the listed files to read (:meth:`FileSync.choose`), and the run loop asks it what
to save at each checkpoint (:meth:`FileSync.history_after`). The STATE's ``position`` and
``input`` fingerprint then count rows of the file being read only, so a sync killed in the
middle of a file resumes at the row after the last one emitted, whatever files arrive meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence

from connector.errors import StateError
from connector.rows.file_history import FileHistory, FilePlan, FileVersion, plan_files
from connector.rows.fingerprint import InputFile, InputFingerprint


class FileSync:
    """What this sync reads of the input's files, and the history it leaves (see the module doc)."""

    def __init__(self, history: FileHistory | None, start: int, saved_input: InputFingerprint | None) -> None:
        self.fresh = history is None  # no file history in the STATE: every file is new
        self._history = history or FileHistory()
        self._saved_start, self._saved_input = start, saved_input
        saved_file = saved_input.files[0] if saved_input and saved_input.files and start else None
        self._current = None if saved_file is None or history is None else \
            FileVersion(saved_file.name, saved_file.size, saved_file.mtime_ns)
        self._listed: dict[str, FileVersion] = {}
        self.plan: FilePlan | None = None

    def choose(self, listed: Sequence[FileVersion]) -> tuple[str, ...]:
        """The files to read, in order, of those ``input.path`` lists now."""
        self._listed = {f.name: f for f in listed}
        self.plan = plan_files(listed, self._history, self._current)
        return self.plan.read

    @property
    def start(self) -> int:
        """Rows of the first file to read already emitted (the resumed file's), else 0."""
        return self._saved_start if self.plan is not None and self.plan.resumed else 0

    @property
    def saved_input(self) -> InputFingerprint | None:
        """The STATE's fingerprint of the resumed file's rows, to check them against (None: nothing resumed)."""
        return self._saved_input if self.start else None

    def notes(self, stream: str) -> list[tuple[str, str]]:
        """(level, text): what this sync reads of the files, said before the first row."""
        lines = [] if self.plan is None else self.plan.notes(stream)
        if self.fresh and self._saved_start:
            lines.append(("WARN", f"{stream}: the state has no file history (it was written without input.incremental "
                                  "files): every file is read (answers already bought come from the answer cache)"))
        return lines

    def history_after(self, done: Sequence[InputFile]) -> FileHistory:
        """The history once the files ``done`` (read whole, with their rows) are read."""
        versions = []
        for found in done:  # a pipe's rows were read from its copy: its own name and times then
            listed = self._listed.get(found.name) or FileVersion(found.name, found.size, found.mtime_ns)
            versions.append(FileVersion(listed.name, listed.size, listed.mtime_ns, listed.etag, found.rows))
        return self._history.with_read(versions, self._listed)

    def summary(self, stream: str, rows_read: int, rows_done: int) -> str:
        """What this sync did, in one line, for the end of the run."""
        plan = self.plan
        if plan is None:
            return f"{stream}: no file was listed"
        return (f"{stream}: files: {plan.listed:,} listed, {len(plan.unchanged):,} skipped as unchanged, "
                f"{len(plan.read):,} read ({len(plan.new):,} new, {len(plan.changed):,} changed"
                + (", 1 resumed" if plan.resumed else "") + f"), {len(plan.deleted):,} no longer listed; rows: "
                f"{rows_read:,} read, {rows_done:,} enriched")


def file_sync_for(incremental: str, history: FileHistory | None, start: int,
                  saved_input: InputFingerprint | None, syncing: bool = True) -> FileSync | None:
    """The sync's FileSync when ``input.incremental`` is ``files`` and the run is a sync (``read``, its dry
    run; None for ``run``, which keeps no STATE); StateError for a STATE of files that a sync by rows would
    misread."""
    if not syncing:
        return None
    if incremental == "files":
        return FileSync(history, start, saved_input)
    if history is not None:
        raise StateError("the state was written with input.incremental files (its position counts rows of one "
                         "file), but input.incremental is now rows; set it back to files, or reset the stream's "
                         "state to read the input from the start")
    return None
