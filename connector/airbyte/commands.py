"""The Airbyte commands, each an async iterator of protocol messages.

Commands never print and never exit: they yield messages and raise
:class:`~connector.errors.ConnectorError` for a fatal condition; ``cli`` turns
both into stdout lines and an exit code. The HTTP transport is injected, so
tests drive the real commands over a fake network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, BinaryIO

from connector.airbyte import protocol
from connector.airbyte.protocol import Message
from connector.callbacks import Notice, OutputBarrier
from connector.errors import CatalogError, CheckFailed, ConfigError, EndpointError
from connector.pipeline.connect import TransportFactory, default_transport

# read's run loop (and the cache, cursor and file syncs under it) is imported by read alone: check and
# discover, which a platform starts in a fresh process each time, import only what they use (issue 25).
if TYPE_CHECKING:
    from connector.airbyte.catalog import SelectedStream
    from connector.airbyte.state import StreamPosition
    from connector.config.model import SourceConfig
    from connector.endpoint.client import EndpointClient
    from connector.pipeline.context import RunContext
    from connector.pipeline.progress import Progress
    from connector.pipeline.run_loop import Checkpointing

__all__ = ["TransportFactory", "check", "default_transport", "discover", "read", "spec"]


async def spec() -> AsyncIterator[Message]:
    from connector.config.specification import specification

    yield protocol.spec(specification())


async def check(raw_config: Any, transport_factory: TransportFactory = default_transport) -> AsyncIterator[Message]:
    """CONNECTION_STATUS, SUCCEEDED or FAILED with a precise, safe message."""
    from connector.answers.schema import task_outputs
    from connector.config.load import load_config
    from connector.config.parts import first_task, other_models, parts_of
    from connector.dialects import dialect_for
    from connector.pipeline.connect import connect
    from connector.pipeline.probe import run_check
    from connector.secrets import Redactor

    notes: list[str] = []
    try:
        config = load_config(raw_config, notes.append)
        task_outputs(parts_of(config).output.tasks)  # two tasks writing one column
        others = other_models(config)  # with tasks: the first task asked is the probe, every other model too
        config = first_task(config)
        parts = parts_of(config)
        dialect = dialect_for(parts.request)  # what the API shape cannot express fails here
        tasks = [(name, dialect_for(parts_of(task).request)) for name, task in others]
    except ConfigError as exc:
        yield protocol.connection_status(False, exc.message)
        return
    async with connect(parts, Redactor.for_config(config), dialect, transport_factory, limited=False) as endpoint:
        try:
            message = await run_check(config, endpoint.client, endpoint.transport, tasks)
            message += "".join(f" Note: {note}." for note in notes)
            yield protocol.connection_status(True, endpoint.redact(message))
        except (CheckFailed, ConfigError) as exc:
            yield protocol.connection_status(False, endpoint.redact(exc.message))


async def discover(raw_config: Any, transport_factory: TransportFactory = default_transport) -> AsyncIterator[Message]:
    """CATALOG: the enriched stream, plus ``models`` when the endpoint lists models."""
    from connector.airbyte.catalog import enriched_stream, models_stream
    from connector.answers.records import META_COLUMNS
    from connector.config.load import load_config
    from connector.pipeline.connect import connect, requests_of
    from connector.rows.opening import open_input
    from connector.secrets import Redactor

    notes: list[str] = []
    config = load_config(raw_config, notes.append)
    for note in notes:
        yield protocol.log(note, "WARN")
    parts, dialect, template = requests_of(config)  # ConfigError when the shape cannot express the config
    table = open_input(parts.input, reserved=META_COLUMNS)  # never reads stdin: its columns are input.columns
    if not table.columns_known:
        yield protocol.log("input.path is '-' (stdin) and input.columns is not set: the catalog declares only "
                           "the output and metadata columns, and Airbyte and PyAirbyte drop undeclared input "
                           "columns. List them in input.columns.", "WARN")
    else:
        template.check_columns(table.columns)
    for warning in template.warnings:
        yield protocol.log(warning, "WARN")
    streams = [enriched_stream(parts.run.stream_name, parts.output, table.schema, parts.input.cursor)]
    async with connect(parts, Redactor.for_config(config), dialect, transport_factory, limited=False) as endpoint:
        try:
            if await endpoint.client.list_models() is not None:
                streams.append(models_stream())
        except EndpointError:
            pass  # discover describes the data; reachability is check's job
    yield protocol.catalog(streams)


async def read(
    raw_config: Any,
    catalog: Any,
    state: Any = None,
    transport_factory: TransportFactory = default_transport,
    checkpointing: Checkpointing | None = None,
    *,
    progress: Progress | None = None,
    dry_run: bool = False,  # a dry run renders every request and sends nothing
    stdin: BinaryIO | None = None,
    notice: Notice | None = None,
    before_output: OutputBarrier | None = None,
) -> AsyncIterator[Message]:
    """RECORDs in input order with STATE checkpoints, STREAM_STATUS and a LOG summary.

    ``notice`` shows a LOG line at once (a long wait the endpoint asked for), while records may not flow;
    without it such lines come out with the next message. ``progress`` (None: none) hears of every record
    (and may add LOG lines); a dry run reports counts, tokens and cost as LOG messages; ``stdin`` is where
    ``input.path: "-"`` reads (default: the process's); ``checkpointing`` None: the run loop's;
    ``before_output``: the output's barrier, where the cache commits once a batch of records, not once a record.
    """
    from connector.airbyte.catalog import MODELS_STREAM, SYNC_MODES, selected_streams
    from connector.config.load import load_config
    from connector.pipeline.prepare import prepare
    notes: list[str] = []
    config = load_config(raw_config, notes.append)
    for note in notes:
        yield protocol.log(note, "WARN")
    # PyAirbyte asks for incremental on every stream; models is then simply listed again.
    selected = selected_streams(catalog, {config.stream_name: SYNC_MODES, MODELS_STREAM: SYNC_MODES})
    enriched = next((s for s in selected if s.name != MODELS_STREAM), None)
    config = _with_cursor(config, enriched)
    held: list[Message] = []
    saved = _saved_position(config, state, enriched, held)  # a WARN for a changed request joins held
    async with prepare(config, transport_factory, purpose="dry_run" if dry_run else "read", stdin=stdin,
                       notice=notice or _into(held), start=saved.position, saved=saved.batches,
                       saved_input=saved.input, saved_cursor=saved.cursor, file_history=saved.history,
                       before_output=before_output) as ctx:
        for note in ctx.notes:
            yield protocol.log(note, "WARN")
        for stream in selected:
            if stream.name == MODELS_STREAM and dry_run:
                continue  # listing models is free, but a dry run sends nothing at all
            async for message in _stream(ctx, stream, saved, dry_run, checkpointing, progress):
                while held:
                    yield held.pop(0)
                yield message
        while held:
            yield held.pop(0)


async def _stream(ctx: RunContext, stream: SelectedStream, saved: StreamPosition | None, dry_run: bool,
                  checkpointing: Checkpointing | None, progress: Progress | None) -> AsyncIterator[Message]:
    """One selected stream's messages: the models listed, or the enriched rows (or their dry run)."""
    from connector.airbyte.catalog import MODELS_STREAM
    from connector.airbyte.state import check_resume

    if stream.name == MODELS_STREAM:
        async for message in _read_models(ctx.client, stream.name):
            yield message
        return
    assert saved is not None, "the enriched stream was selected"
    beyond = check_resume(saved, ctx.input.count_rows(), stream.name, stream.sync_mode)
    if beyond:
        yield protocol.log(beyond, "WARN")
    messages = _dry_run(ctx) if dry_run else _read_enriched(ctx, stream.sync_mode == "full_refresh",
                                                             checkpointing, progress)
    async for message in messages:
        yield message


def _saved_position(config: SourceConfig, state: Any, enriched: SelectedStream | None,
                    held: list[Message]) -> StreamPosition:
    """Where the enriched stream resumes: the STATE's position, or row 1 when the request changed since
    and on_request_change says reenrich (a WARN for a change goes to ``held``); row 1 when it is not read."""
    from connector.airbyte.state import StreamPosition, check_cursor_mode, position_for
    from connector.config.parts import parts_of
    from connector.requests.request_fingerprint import on_change, request_fingerprint

    if enriched is None:
        return StreamPosition()
    saved = position_for(state, enriched.name, enriched.sync_mode)
    check_cursor_mode(saved, config.input.cursor, enriched.name)
    parts = parts_of(config)
    current = request_fingerprint(parts.request, parts.output)
    again, warning = on_change(saved.request, current, config.on_request_change, enriched.name, _done(saved))
    if warning:
        held.append(protocol.log(warning, "WARN"))
    return StreamPosition() if again else saved


def _done(saved: StreamPosition) -> str | None:
    """The rows a STATE covers, in words (None: none): rows 1..N, or those up to a cursor value."""
    cursor = saved.cursor
    if cursor is not None and (cursor.mark.value is not None or cursor.mark.keys):
        return f"the rows up to {cursor.column} {cursor.mark.value!r}"
    return f"rows 1..{saved.position:,}" if saved.position else None


def _with_cursor(config: SourceConfig, enriched: SelectedStream | None) -> SourceConfig:
    """The config with the cursor the sync uses (input.cursor or the catalog's cursor_field; none in full
    refresh), so every later stage reads it from input.cursor alone."""
    from connector.airbyte.catalog import cursor_of

    cursor = None if enriched is None else cursor_of(enriched, config.input.cursor)
    if cursor == config.input.cursor:
        return config
    if cursor is not None and config.input.is_stdin:
        raise CatalogError("catalog: cursor_field needs an input that can be read again; standard input cannot")
    return config.model_copy(update={"input": config.input.model_copy(update={"cursor": cursor})})


def _into(messages: list[Message]) -> Notice:
    """A notice that keeps its lines as LOG messages, for the command to yield."""
    return lambda level, text: messages.append(protocol.log(text, level))


async def _read_models(client: EndpointClient, name: str) -> AsyncIterator[Message]:
    yield protocol.stream_status(name, "STARTED")
    models = await client.list_models()
    if models is None:
        raise CatalogError("catalog: stream 'models' was selected but the endpoint has no /models")
    yield protocol.stream_status(name, "RUNNING")
    emitted_at = protocol.now_ms()
    for model in models:
        yield protocol.record(name, {"id": model}, emitted_at)
    yield protocol.state(name, {"listed": len(models)}, len(models))
    yield protocol.stream_status(name, "COMPLETE")


async def _read_enriched(ctx: RunContext, full_refresh: bool, checkpointing: Checkpointing | None,
                         progress: Progress | None) -> AsyncIterator[Message]:
    """The run loop's events as Airbyte messages; the loop decides, this only translates."""
    from connector.airbyte.state import StreamPosition
    from connector.pipeline.events import run_events
    from connector.pipeline.progress import NO_PROGRESS
    from connector.pipeline.run_loop import DEFAULT_CHECKPOINTING, Checkpoint, Finished, Note, RecordOut, Started
    from connector.requests.request_fingerprint import request_fingerprint

    name, redact = ctx.parts.run.stream_name, ctx.redact
    yield protocol.stream_status(name, "STARTED")
    running = False
    every = DEFAULT_CHECKPOINTING if checkpointing is None else checkpointing
    async for event in run_events(ctx, full_refresh=full_refresh, checkpointing=every,
                                  progress=NO_PROGRESS if progress is None else progress):
        if isinstance(event, RecordOut):
            if not running:
                running = True
                yield protocol.stream_status(name, "RUNNING")
            yield protocol.record(name, event.data)
        elif isinstance(event, Checkpoint):
            position = StreamPosition(event.position, event.sync_complete, event.batches, event.input,
                                      ctx.parts.input.limit,
                                      request_fingerprint(ctx.parts.request, ctx.parts.output), event.cursor,
                                      event.history)
            yield protocol.state(name, position.as_state(), event.records)
        elif isinstance(event, Note):
            yield protocol.log(redact(event.text), event.level)
        elif isinstance(event, Started) and event.total is not None:
            yield protocol.estimate(name, event.total)
        elif isinstance(event, Finished):
            yield protocol.log(redact(event.summary))
            yield protocol.stream_status(name, "COMPLETE" if event.complete else "INCOMPLETE")


async def _dry_run(ctx: RunContext) -> AsyncIterator[Message]:
    """The dry-run report of the enriched stream as LOG messages: nothing is sent, no state moves."""
    from connector.pipeline.dry_run import dry_run_report

    for line in await dry_run_report(ctx):
        yield protocol.log(line)
