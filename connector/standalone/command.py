"""``run``: the enriched table straight into a Parquet, CSV or JSONL file, for use outside Airbyte.

    source-openai-compatible run --config config.json --output enriched.parquet [--dry-run]

Same config, same run loop, same answers as ``read`` (:mod:`connector.pipeline.run_loop`,
whose records it writes as they come), but no protocol on stdout: progress and the summary are
lines for a person (on stderr), the table is the file. Column types come from
the discovered schema (:mod:`connector.standalone.writers`), so they are the same in every
run. The file appears only once complete (written as ``<output>.partial`` and
renamed); a run stopped by a fatal error leaves none, and the answers it had
received are in the answer cache, so running it again pays only for the rest.
``--output -`` writes JSONL to stdout, for a shell pipe.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from connector.callbacks import Notice, no_notice
from connector.pipeline.connect import TransportFactory, default_transport
from connector.pipeline.progress import NO_PROGRESS, Progress

if TYPE_CHECKING:
    from connector.pipeline.context import RunContext
    from connector.pipeline.run_loop import Event
    from connector.standalone.batch_files import LedgerFile
    from connector.standalone.writers import TableWriter


@dataclass
class Result:
    """What ``run`` did."""

    rows_written: int
    complete: bool
    output: str
    report: str | None = None  # the dry-run report


async def run(
    raw_config: Any,
    output: str | None,
    fmt: str | None = None,
    *,
    dry_run: bool = False,
    progress: Progress = NO_PROGRESS,
    notice: Notice = no_notice,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    transport_factory: TransportFactory = default_transport,
    export_batch: str | None = None,
    import_batch: str | None = None,
) -> Result:
    """Enrich the configured input into ``output``; ConnectorError when the run fails. ``export_batch``
    writes the rows' batch input file instead (nothing sent); ``import_batch`` takes the answers from a
    batch results file (:mod:`connector.standalone.batch_files`)."""
    from connector.config.load import load_config
    from connector.pipeline.prepare import prepare
    from connector.secrets import Redactor
    from connector.standalone.batch_files import LedgerFile

    config = load_config(raw_config, lambda text: notice("WARN", text))
    if dry_run or export_batch:
        async with prepare(config, transport_factory, purpose="dry_run" if dry_run else "export",
                           stdin=stdin) as ctx:
            return await (_dry_run(ctx, output) if dry_run else _export(ctx, export_batch or "", notice))
    output, kind = _output_and_kind(output, fmt)
    redact = Redactor.for_config(config)
    # In batch mode, run's own record of its batches (beside the output) keeps the batches still open.
    ledger = LedgerFile(output) if config.batch.enabled and output != "-" and not import_batch else None
    async with prepare(config, transport_factory, purpose="import" if import_batch else "read", stdin=stdin,
                       notice=lambda level, text: notice(level, redact(text)),
                       saved=ledger.load() if ledger else ()) as ctx:
        for note in ctx.notes:
            notice("WARN", note)
        writer = _writer(ctx, output, kind, stdout)
        try:
            complete = await _write(ctx, writer, _events(ctx, import_batch, progress), ledger, notice)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    where = "stdout" if output == "-" else output
    notice("INFO", f"wrote {writer.rows_written:,} rows to {where} ({kind})"
                   + ("" if complete else "; the run stopped early (see above): the file holds the rows done"))
    return Result(writer.rows_written, complete, output)


def _output_and_kind(output: str | None, fmt: str | None) -> tuple[str, str]:
    """The output and its format; OutputError without an output."""
    from connector.errors import OutputError
    from connector.standalone.writers import format_for

    if not output:
        raise OutputError("--output is required (a .parquet, .csv or .jsonl file, or - for JSONL on stdout); "
                          "or pass --dry-run")
    return output, format_for(output, fmt)


async def _dry_run(ctx: RunContext, output: str | None) -> Result:
    from connector.pipeline.dry_run import dry_run_report

    lines = await dry_run_report(ctx)
    return Result(0, True, output or "", report="\n".join(lines) + "\n")


async def _export(ctx: RunContext, path: str, notice: Notice) -> Result:
    from connector.standalone.batch_files import export_requests, over_upload_limits

    written, skipped = await export_requests(ctx, path)
    left = ", ".join(f"{n} {status}" for status, n in sorted(skipped.items()))
    notice("INFO", f"wrote {written:,} requests to {path} (OpenAI batch input format; nothing was sent)"
                   + (f"; rows without a request: {left}" if left else ""))
    over = over_upload_limits(path, written)
    if over is not None:
        notice("WARN", over)
    return Result(0, True, path)


def _writer(ctx: RunContext, output: str, kind: str, stdout: BinaryIO | None) -> TableWriter:
    """The output file's writer, its column types fixed by the records' schema before the first row."""
    from connector.standalone.writers import TableWriter

    return TableWriter(output, kind, ctx.schema, ctx.input.schema, batch_rows=ctx.parts.input.batch_size,
                       stdout=stdout)


def _events(ctx: RunContext, import_batch: str | None, progress: Progress) -> AsyncIterator[Event]:
    """The run's events: the answers of an imported results file, or a normal (or batch) run."""
    from connector.pipeline.events import run_events
    from connector.pipeline.run_loop import NEVER, run_rows
    from connector.standalone.batch_files import ImportSource, read_results

    if import_batch:
        source = ImportSource(ctx, read_results(ctx, import_batch), import_batch)
        return run_rows(ctx, full_refresh=True, checkpointing=NEVER, progress=progress, source=source)
    return run_events(ctx, full_refresh=True, checkpointing=NEVER, progress=progress)


async def _write(ctx: RunContext, writer: TableWriter, events: AsyncIterator[Event], ledger: LedgerFile | None,
                 notice: Notice) -> bool:
    """The records into ``writer``, the open batches into ``ledger``, the notes to ``notice``; whether the
    run was complete."""
    from connector.pipeline.run_loop import Checkpoint, Finished, Note, RecordOut

    complete = False
    async for event in events:
        if isinstance(event, RecordOut):
            writer.add(event.data)
        elif isinstance(event, Checkpoint) and ledger is not None:
            ledger.save(event.batches)
        elif isinstance(event, Note):
            notice(event.level, ctx.redact(event.text))
        elif isinstance(event, Finished):
            complete = event.complete
            notice("INFO", ctx.redact(event.summary))
    return complete
