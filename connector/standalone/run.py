"""``run``: the enriched table straight into a Parquet, CSV or JSONL file, for use outside Airbyte.

    source-openai-compatible run --config config.json --output enriched.parquet [--dry-run]

Same config, same run loop, same answers as ``read`` (:mod:`connector.pipeline.run`,
whose records it writes as they come), but no protocol on stdout: progress and the summary are
lines for a person (on stderr), the table is the file. Column types come from
the discovered schema (:mod:`connector.standalone.writers`), so they are the same in every
run. The file appears only once complete (written as ``<output>.partial`` and
renamed); a run stopped by a fatal error leaves none, and the answers it had
received are in the answer cache, so running it again pays only for the rest.
``--output -`` writes JSONL to stdout, for a shell pipe.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from connector.pipeline.progress import NO_PROGRESS, Progress
from connector.pipeline.wiring import TransportFactory, default_transport

Notice = Callable[[str, str], None]  # (level, text)


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
    notice: Notice = lambda level, text: None,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    transport_factory: TransportFactory = default_transport,
    export_batch: str | None = None,
    import_batch: str | None = None,
) -> Result:
    """Enrich the configured input into ``output``; ConnectorError when the run fails. ``export_batch``
    writes the rows' batch input file instead (nothing sent); ``import_batch`` takes the answers from a
    batch results file (:mod:`connector.standalone.batch_files`)."""
    from connector.answers.records import META_COLUMNS
    from connector.answers.schema import enriched_schema
    from connector.config.load import load_config
    from connector.dialects import dialect_for
    from connector.errors import OutputError
    from connector.pipeline.dry_run import dry_run_report
    from connector.pipeline.run import NEVER, Checkpoint, Event, Finished, Note, RecordOut, RunParts, run_rows
    from connector.pipeline.wiring import answer_cache, connect, enricher_for, run_events
    from connector.requests.templates import RequestTemplate
    from connector.rows.stdin import StdinTable, numbered_rows, open_input
    from connector.secrets import Redactor
    from connector.standalone.batch_files import ImportSource, LedgerFile, export_requests, read_results
    from connector.standalone.writers import TableWriter, format_for

    config = load_config(raw_config, lambda text: notice("WARN", text))
    dialect = dialect_for(config)  # the run's one dialect; ConfigError when the shape cannot express the config
    template = RequestTemplate.from_config(config, dialect.conversation_key)  # a typo fails before any input is read
    table = open_input(config.input, stdin, META_COLUMNS)
    if dry_run:
        if isinstance(table, StdinTable):
            await table.start()
        template.check_columns(table.columns)
        async with connect(config, dialect, transport_factory) as endpoint:
            lines = await dry_run_report(endpoint, table, template, 0)
        return Result(0, True, output or "", report="\n".join(lines) + "\n")
    if export_batch:
        if isinstance(table, StdinTable):
            await table.start()
        template.check_columns(table.columns)
        async with connect(config, dialect, transport_factory) as endpoint:
            rows = numbered_rows(table.batches(), 0, lambda: False)
            written, skipped = await export_requests(endpoint, enricher_for(endpoint, template), rows, export_batch)
        left = ", ".join(f"{n} {status}" for status, n in sorted(skipped.items()))
        notice("INFO", f"wrote {written:,} requests to {export_batch} (OpenAI batch input format; nothing was sent)"
                       + (f"; rows without a request: {left}" if left else ""))
        return Result(0, True, export_batch)
    if import_batch:
        config = config.model_copy(update={"validation_retries": 0})  # nothing is sent on an import
    if not output:
        raise OutputError("--output is required (a .parquet, .csv or .jsonl file, or - for JSONL on stdout); "
                          "or pass --dry-run")
    kind = format_for(output, fmt)
    if isinstance(table, StdinTable):
        await table.start()  # the columns, declared or inferred, fix the file's schema
    for note in table.notes:
        notice("WARN", note)
    template.check_columns(table.columns)
    for warning in template.warnings:
        notice("WARN", warning)
    schema = enriched_schema(table.schema, config)
    writer = TableWriter(output, kind, schema, table.schema,
                         batch_rows=config.input.batch_size, stdout=stdout)
    complete = False
    try:
        redact = Redactor.for_config(config)
        async with connect(config, dialect, transport_factory,
                           notice=lambda level, text: notice(level, redact(text))) as endpoint:
            cache = answer_cache(config, lambda warning: notice("WARN", endpoint.redact(warning)))
            parts = RunParts(endpoint.config, endpoint.client, enricher_for(endpoint, template, cache), cache)
            ledger = LedgerFile(output) if config.batch.enabled and output != "-" and not import_batch else None
            events: AsyncIterator[Event]
            if import_batch:
                source = ImportSource(endpoint, parts.enricher, read_results(endpoint, import_batch), import_batch,
                                      cache)
                events = run_rows(parts, table, full_refresh=True, checkpointing=NEVER, progress=progress,
                                  source=source)
            else:
                events = run_events(endpoint, parts, table, 0, ledger.load() if ledger else (), full_refresh=True,
                                    checkpointing=NEVER, progress=progress)
            try:
                async for event in events:
                    if isinstance(event, RecordOut):
                        writer.add(event.data)
                    elif isinstance(event, Checkpoint) and ledger is not None:
                        ledger.save(event.batches)
                    elif isinstance(event, Note):
                        notice(event.level, endpoint.redact(event.text))
                    elif isinstance(event, Finished):
                        complete = event.complete
                        notice("INFO", endpoint.redact(event.summary))
            finally:
                if cache is not None:
                    cache.close()
        writer.close()
    except BaseException:
        writer.abort()
        raise
    where = "stdout" if output == "-" else output
    notice("INFO", f"wrote {writer.rows_written:,} rows to {where} ({kind})"
                   + ("" if complete else "; the run stopped early (see above): the file holds the rows done"))
    return Result(writer.rows_written, complete, output)
