"""``run``: the enriched table straight into a Parquet, CSV or JSONL file, for use outside Airbyte.

    source-openai-compatible run --config config.json --output enriched.parquet [--dry-run]

Same config, same engine, same answers as ``read`` (it drives ``read`` itself and
writes its RECORDs), but no protocol on stdout: progress and the summary are
lines for a person (on stderr), the table is the file. Column types come from
the discovered schema (:mod:`connector.standalone.writers`), so they are the same in every
run. The file appears only once complete (written as ``<output>.partial`` and
renamed); a run stopped by a fatal error leaves none, and the answers it had
received are in the answer cache, so running it again pays only for the rest.
``--output -`` writes JSONL to stdout, for a shell pipe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from connector.airbyte import commands
from connector.pipeline.progress import NO_PROGRESS, Progress

Notice = Callable[[str, str], None]  # (level, text)


@dataclass
class Result:
    """What ``run`` did."""

    rows_written: int
    complete: bool
    output: str
    report: str | None = None  # the dry-run report


def _catalog(stream: str) -> dict[str, Any]:
    return {"streams": [{"stream": {"name": stream, "json_schema": {},
                                    "supported_sync_modes": ["full_refresh", "incremental"]},
                         "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}]}


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
    transport_factory: commands.TransportFactory = commands.default_transport,
) -> Result:
    """Enrich the configured input into ``output``; ConnectorError when the run fails."""
    from connector.airbyte.catalog import enriched_schema
    from connector.config.load import load_config
    from connector.rows.files import InputTable
    from connector.rows.stdin import StdinTable, open_input
    from connector.secrets import Redactor
    from connector.standalone.writers import OutputError, TableWriter, format_for

    config = load_config(raw_config)
    redact = Redactor(config.secrets())
    table = open_input(config.input, stdin)
    catalog = _catalog(config.stream_name)
    if dry_run:
        lines = []
        async for message in commands.read(raw_config, catalog, None, transport_factory, dry_run=True, table=table):
            if message["type"] == "LOG":
                lines.append(redact(message["log"]["message"]))
        return Result(0, True, output or "", report="\n".join(lines) + "\n")
    if not output:
        raise OutputError("--output is required (a .parquet, .csv or .jsonl file, or - for JSONL on stdout); "
                          "or pass --dry-run")
    kind = format_for(output, fmt)
    if isinstance(table, StdinTable):
        await table.start()  # the columns, declared or inferred, fix the file's schema
    schema = enriched_schema(table.schema, config)
    writer = TableWriter(output, kind, schema, table.schema if isinstance(table, InputTable) else None,
                         batch_rows=config.input.batch_size, stdout=stdout)
    complete = True
    never = commands.Checkpointing(rows=2**62, seconds=float("inf"))  # a file has no checkpoints
    try:
        async for message in commands.read(raw_config, catalog, None, transport_factory, never,
                                           progress=progress, table=table):
            kind_of = message["type"]
            if kind_of == "RECORD":
                writer.add(message["record"]["data"])
            elif kind_of == "LOG":
                notice(message["log"]["level"], redact(message["log"]["message"]))
            elif kind_of == "TRACE" and message["trace"]["type"] == "STREAM_STATUS" and \
                    message["trace"]["stream_status"]["status"] == "INCOMPLETE":
                complete = False
        writer.close()
    except BaseException:
        writer.abort()
        raise
    where = "stdout" if output == "-" else output
    notice("INFO", f"wrote {writer.rows_written:,} rows to {where} ({kind})"
                   + ("" if complete else "; the run stopped early (see above): the file holds the rows done"))
    return Result(writer.rows_written, complete, output)
