"""The run loop: rows in, records and events out, knowing nothing of Airbyte.

:func:`run_rows` drives one input table through the row enricher and yields, in
order, what happened: :class:`Started`, a :class:`Note` now and then, a
:class:`Record` per row kept, a :class:`Checkpoint` when a resumable position is
due, and :class:`Finished` with the summary, on every way out. The one error
policy and the one checkpoint rule live here:

- A row's failure is its record's business (``_status: error``) unless
  ``on_row_error`` says ``skip`` (left out, counted) or ``fail`` (the run stops
  with :class:`~connector.errors.RowFailed`); past ``max_error_rate`` (from the
  20th row) the run stops too.
- A spend guard that refuses a request stops the run cleanly before that row:
  a checkpoint for the rows done, ``Finished(complete=False)``, no error.
- A fatal endpoint error (key, quota, URL, model) stops it at once.
- Whenever the run ends early it ends with a checkpoint for the rows done (when
  it moved), then ``Finished``, then (for errors) the exception.
- Checkpoints come every ``Checkpointing.rows`` records or ``.seconds`` seconds,
  and at the end; a run in which every row failed adds no final one, so the rows
  since the last checkpoint are tried again next time.

The Airbyte ``read`` turns these events into protocol messages
(:mod:`connector.airbyte.commands`); ``run`` writes the records to a file
(:mod:`connector.standalone.command`); neither decides anything about the run.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from connector.answers.cache import AnswerCache
from connector.answers.records import Enriched, Record, Tally
from connector.callbacks import Clock
from connector.errors import ConnectorError, RowFailed, SyncFailed
from connector.pipeline.batch_ledger import SavedBatch
from connector.pipeline.context import RunContext
from connector.pipeline.ordered import ordered_map
from connector.pipeline.progress import NO_PROGRESS, Progress
from connector.pipeline.resume import RowHasher, follow, verified_rows
from connector.rows.cursor import CursorState
from connector.rows.file_history import FileHistory
from connector.rows.fingerprint import InputFingerprint
from connector.rows.table import Row

# max_error_rate is judged only once this many rows are done: two failures in
# the first three rows say little about a million.
ERROR_RATE_MIN_ROWS = 20


@dataclass(frozen=True)
class Checkpointing:
    """A checkpoint after this many records or this many seconds, whichever comes first."""

    rows: int = 1000
    seconds: float = 10.0


DEFAULT_CHECKPOINTING = Checkpointing()
NEVER = Checkpointing(rows=2**62, seconds=float("inf"))  # a file written whole has no checkpoints


@dataclass(frozen=True, slots=True)
class Started:
    """The run began after ``resumed_after`` rows; ``total`` rows are expected (None: unknown)."""

    total: int | None
    estimated: bool
    resumed_after: int


@dataclass(frozen=True, slots=True)
class Note:
    """Something to tell the person running it."""

    text: str
    level: str = "INFO"


class RecordOut(NamedTuple):  # a NamedTuple: immutable, and built per row ~3x faster than a frozen dataclass
    """One enriched row, to emit."""

    data: Record


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Rows 1..``position`` are done; ``records`` were emitted since the previous checkpoint; in batch
    mode, ``batches`` still hold rows after the position (:mod:`connector.pipeline.batch_run`);
    ``input`` is the fingerprint of rows 1..position (:mod:`connector.pipeline.resume`)."""

    position: int
    records: int
    sync_complete: bool = False
    batches: tuple[SavedBatch, ...] = ()
    input: InputFingerprint | None = None
    cursor: CursorState | None = None  # a cursor sync's mark (connector.pipeline.cursor_sync)
    history: FileHistory | None = None  # input.incremental files: position and input count rows of one file


@dataclass(frozen=True, slots=True)
class Finished:
    """The run is over: ``complete`` when every row was done; ``summary`` counts them."""

    complete: bool
    summary: str
    tally: Tally


Event = Started | Note | RecordOut | Checkpoint | Finished
Rows = Iterator[tuple[int, Row]] | AsyncIterator[tuple[int, Row]]
# Where run_rows gets each row's record from (None: a spend guard refused it), in row order;
# notes to pass on may come between them. Default: the row enricher, concurrently.
AnswerSource = Callable[[Rows], AsyncIterator[Enriched | Note | None]]


async def run_rows(
    ctx: RunContext,
    *,
    full_refresh: bool = False,
    checkpointing: Checkpointing = DEFAULT_CHECKPOINTING,
    progress: Progress = NO_PROGRESS,
    clock: Clock = time.monotonic,
    source: AnswerSource | None = None,
) -> AsyncIterator[Event]:
    """Enrich the context's table from its ``start`` on (see the module docstring for what is yielded);
    the records come from ``source`` when given (batch mode), else from the row enricher. Rows 1..start
    are read first and must match ``ctx.saved_input``, the STATE's fingerprint (when it has one)."""
    loop = _Loop(ctx, checkpointing, progress, clock)
    rows = await verified_rows(ctx.input, loop.hasher, ctx.start, ctx.saved_input, loop.name, loop.stop_feeding,
                               ctx.parts.input.limit)
    if ctx.cursor is not None:
        rows = follow(rows, ctx.cursor.see)  # after the rows a resumed sync had done: the state's mark has them
    for event in loop.begin(legacy_state=ctx.saved_input is None):
        yield event
    enrich = ctx.tasks or ctx.enricher  # with tasks, a row's record is done when all its tasks are
    answers = source(rows) if source is not None else ordered_map(rows, enrich, ctx.parts.run.concurrency)
    try:
        async for done in answers:
            for event in loop.take(done):
                yield event
    except ConnectorError:
        for event in loop.interrupted():  # what was done is committed, and said, before the error
            yield event
        raise
    finally:
        if ctx.cache is not None:
            ctx.cache.commit()
    for event in loop.end(full_refresh):
        yield event


class _Loop:
    """The run loop's state and its decisions, one method per moment of the run."""

    def __init__(self, ctx: RunContext, checkpointing: Checkpointing, progress: Progress, clock: Clock) -> None:
        self.policy, self.cache, self.budget = ctx.parts.run, ctx.cache, ctx.client.budget
        self.name, self.table, self.start = ctx.parts.run.stream_name, ctx.input, ctx.start
        self.limit = ctx.parts.input.limit  # a sample: never a finished sync
        # The cache's commit before each record, unless the output commits it before records reach their reader.
        self.commit = None if ctx.cache is None or ctx.output_commits else ctx.cache.commit
        self.checkpointing, self.progress, self.clock = checkpointing, progress, clock
        self.tally = Tally()
        self.files = ctx.files  # input.incremental files
        self.hasher = RowHasher(ctx.input.files, per_file=self.files is not None)  # for each checkpoint
        self.cursor = ctx.cursor  # a cursor sync's mark, for each checkpoint
        self.stopped_by: str | None = None  # why a spend guard refused a row's request
        self.bought = ctx.tasks or ctx.enricher  # its .refused: what rows a spend guard refused had bought
        self.position = self.committed = ctx.start  # rows done; the position the last checkpoint carried
        self.since = 0  # records since the last checkpoint
        self.last_checkpoint = self.started = 0.0  # set as the run begins

    def stop_feeding(self) -> bool:
        return self.budget is not None and self.budget.reason is not None

    def begin(self, legacy_state: bool) -> Iterator[Event]:
        name, start = self.name, self.start
        sized = self.table.estimate_rows()
        total = None if sized is None else max(sized[0] - start, 0)
        estimated = sized is not None and sized[1]
        if self.limit is not None:
            total, estimated = max(min(self.limit, sized[0] if sized else self.limit) - start, 0), False
            if sized is not None and sized[1] and sized[0] < self.limit:
                estimated = True  # the input may hold fewer rows than the limit
        yield Started(total, estimated, start)
        for level, text in self.files.notes(name) if self.files else ():
            yield Note(text, level)
        if estimated:
            yield Note(f"{name}: about {total:,} rows to read (an estimate from the input's file sizes)")
        if self.cursor is not None:
            yield Note(f"{name}: {self.cursor.opening()}")
        if start:
            yield Note(f"{name}: resuming after row {start} (from state)" if not self.files else
                       f"{name}: resuming after row {start} of '{self.table.files[0].name}' (from state)")
        if start and legacy_state:
            yield Note(f"{name}: the state has no input fingerprint (an earlier version wrote it): rows 1..{start} "
                       "are taken to be those it covered; the next state is bound to them", "WARN")
        self.progress.start(name, total, estimated)
        self.last_checkpoint = self.started = self.clock()

    def take(self, done: Enriched | Note | None) -> Iterator[Event]:
        """One answer source item: a note to pass on, a row done, or a row a spend guard refused."""
        if isinstance(done, Note):
            yield done
            return
        if self.stopped_by is not None:
            if done is not None:  # a later row's answer is cached; it cannot be emitted before the one refused
                self.tally.observe_unemitted(done.outcome)
            return
        if done is None:  # a spend guard refused this row's request
            budget = self.budget
            self.stopped_by = budget.reason if budget is not None and budget.reason else "a spend guard"
            return
        tally, policy = self.tally, self.policy
        tally.observe(done)
        failed = done.outcome.failed
        if failed and policy.on_row_error == "fail":
            raise RowFailed(f"row {done.number} failed and on_row_error is 'fail': {done.outcome.error}")
        self.position += 1
        self.hasher.advance()
        if self.cursor is not None:
            self.cursor.advance()
        if failed and policy.on_row_error == "skip":
            tally.skipped += 1
        else:
            if self.commit is not None:
                self.commit()  # the answer is durable before its record exists
            yield RecordOut(done.record())
            self.since += 1
        self._judge_error_rate()
        now = self.clock()
        if self.since >= self.checkpointing.rows or now - self.last_checkpoint >= self.checkpointing.seconds:
            yield self._checkpoint()
            self.since, self.last_checkpoint, self.committed = 0, now, self.position
        for line in self.progress.advance(tally):
            yield Note(line)

    def _judge_error_rate(self) -> None:
        tally, most = self.tally, self.policy.max_error_rate
        if most is not None and tally.rows >= ERROR_RATE_MIN_ROWS and tally.failed / tally.rows > most:
            raise RowFailed(f"{tally.failed} of {tally.rows} rows failed, above max_error_rate {most:g}; "
                            f"first errors: {' | '.join(tally.first_errors)}")

    def interrupted(self) -> Iterator[Event]:
        """The run stops on an error: the rows done are committed (the row that stopped it is not)."""
        if self.position != self.committed:
            yield self._checkpoint()
        for line in self.progress.finish(self.tally):
            yield Note(line)
        yield from self._said()
        yield Finished(False, self._summary(), self.tally)

    def _checkpoint(self, *, finished: bool = False, sync_complete: bool = False) -> Checkpoint:
        """A checkpoint for the rows done; ``finished`` when the input was read to its end (input.incremental
        files: the files read whole go into the history; the position counts rows of the file being read)."""
        position, fingerprint = self.position, self.hasher.fingerprint()
        if self.files is not None:
            done, within, _current = self.hasher.split()
            return Checkpoint(within, self.since, sync_complete=sync_complete, input=fingerprint,
                              history=self.files.history_after(done))
        if self.cursor is None:
            return Checkpoint(position, self.since, sync_complete=sync_complete, input=fingerprint)
        position, fingerprint, cursor = self.cursor.checkpoint(position, fingerprint, finished)
        return Checkpoint(position, self.since, input=fingerprint, cursor=cursor)

    def _summary(self) -> str:
        summary = _summary(self.name, self.tally, self.clock() - self.started, self.cache)
        return summary if self.cursor is None else summary + self.cursor.summary(self.tally.rows)

    def end(self, full_refresh: bool) -> Iterator[Event]:
        """Every answer is in (or a spend guard stopped the run): the last checkpoint and the summary."""
        tally, position = self.tally, self.position
        for line in self.progress.finish(tally):
            yield Note(line)
        if self.stopped_by is not None:
            for outcome in self.bought.refused:
                tally.observe_unemitted(outcome)
        summary = self._summary()
        if self.stopped_by is not None:
            if position != self.committed:
                yield self._checkpoint()
            yield from self._said()
            yield Note(f"{self.name}: spend guard: {self.stopped_by}; stopped after row {position}. "
                       "Run again (with the last state) to continue.", "WARN")
            yield Finished(False, summary, tally)
            return
        failed_whole = bool(tally.rows) and tally.failed == tally.rows
        finished = self.limit is None
        # a file's cursor sync saves its mark only now, even when the last checkpoint came with the last row
        promote = finished and self.cursor is not None and not self.cursor.table.ordered
        if not failed_whole and (self.since or full_refresh or position == self.start or promote):
            yield self._checkpoint(finished=finished, sync_complete=full_refresh and finished)
        yield from self._said()
        yield Finished(not failed_whole, summary, tally)
        if failed_whole:
            raise SyncFailed(f"every row failed ({tally.rows} rows); first errors: {' | '.join(tally.first_errors)}")

    def _said(self) -> Iterator[Note]:
        """What the sync did with the input's files (input.incremental files)."""
        if self.files is not None:
            yield Note(self.files.summary(self.name, self.table.count_rows() or 0, self.tally.rows))


def _summary(name: str, tally: Tally, elapsed: float, cache: AnswerCache | None) -> str:
    rate = f"{tally.rows / elapsed:.1f}" if elapsed else "-"
    trouble = cache.trouble() if cache is not None else ""  # damaged entries; a cache that stopped storing
    return f"{name}: {tally.rows} rows in {elapsed:.1f} s ({rate} rows/s): {tally.summary()}{trouble}"
