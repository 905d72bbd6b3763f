"""The Airbyte commands, each an async iterator of protocol messages.

Commands never print and never exit: they yield messages and raise
:class:`~connector.errors.ConnectorError` for a fatal condition; ``cli`` turns
both into stdout lines and an exit code. The HTTP transport is injected, so
tests drive the real commands over a fake network.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from connector.airbyte import protocol
from connector.airbyte.protocol import Message
from connector.config.specification import specification
from connector.endpoint.transport import Transport
from connector.errors import CatalogError, ConfigError, ConnectorError, EndpointError
from connector.pipeline.progress import NO_PROGRESS, Progress

TransportFactory = Callable[[Any], Transport]


def default_transport(config: Any) -> Transport:
    """aiohttp, with a connection pool as large as the concurrency and the config's TLS settings."""
    import ssl

    from connector.endpoint.transport import AiohttpTransport

    verify: bool | ssl.SSLContext = config.tls.verify
    if config.tls.verify and config.tls.ca_bundle:
        try:
            verify = ssl.create_default_context(cafile=config.tls.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"tls.ca_bundle: cannot load '{config.tls.ca_bundle}': {exc}") from None
    return AiohttpTransport(max_connections=config.concurrency, verify_tls=verify)


@dataclass(frozen=True)
class Checkpointing:
    """Emit STATE after this many records or this many seconds, whichever comes first."""

    rows: int = 1000
    seconds: float = 10.0


class SyncFailed(ConnectorError):
    """The sync ran but cannot be called a success (e.g. every row failed)."""

    failure_type = "transient_error"


def limiter_for(config: Any) -> Any:
    """The concurrency gate and rate budgets a read runs under."""
    from connector.endpoint.limits import ConcurrencyGate, Limiter, TokenBucket

    gate = ConcurrencyGate(config.concurrency, config.min_concurrency, adaptive=config.adaptive_concurrency)
    rpm = TokenBucket(config.requests_per_minute) if config.requests_per_minute else None
    tpm = TokenBucket(config.tokens_per_minute) if config.tokens_per_minute else None
    return Limiter(gate, rpm, tpm)


async def spec() -> AsyncIterator[Message]:
    yield protocol.spec(specification())


async def check(raw_config: Any, transport_factory: TransportFactory = default_transport) -> AsyncIterator[Message]:
    """CONNECTION_STATUS, SUCCEEDED or FAILED with a precise, safe message."""
    from connector.config.load import load_config
    from connector.endpoint.client import EndpointClient
    from connector.pipeline.probe import CheckFailed, run_check
    from connector.secrets import Redactor

    try:
        config = load_config(raw_config)
    except ConfigError as exc:
        yield protocol.connection_status(False, exc.message)
        return
    redact = Redactor(config.secrets())
    transport = transport_factory(config)
    try:
        message = await run_check(config, EndpointClient(config, transport))
        yield protocol.connection_status(True, redact(message))
    except (CheckFailed, ConfigError) as exc:
        yield protocol.connection_status(False, redact(exc.message))
    finally:
        await transport.aclose()


async def discover(raw_config: Any, transport_factory: TransportFactory = default_transport) -> AsyncIterator[Message]:
    """CATALOG: the enriched stream, plus ``models`` when the endpoint lists models."""
    from connector.airbyte.catalog import enriched_stream, models_stream
    from connector.config.load import load_config
    from connector.endpoint.client import EndpointClient
    from connector.requests.templates import RequestTemplate
    from connector.rows.stdin import StdinTable, open_input

    config = load_config(raw_config)
    table = open_input(config.input)  # never reads stdin: its columns are input.columns
    if isinstance(table, StdinTable) and not table.columns_known:
        yield protocol.log("input.path is '-' (stdin) and input.columns is not set: the catalog declares only "
                           "the output and metadata columns, and Airbyte and PyAirbyte drop undeclared input "
                           "columns. List them in input.columns.", "WARN")
    else:
        RequestTemplate.from_config(config).check_columns(table.columns)
    streams = [enriched_stream(config, table.schema)]
    transport = transport_factory(config)
    try:
        if await EndpointClient(config, transport).list_models() is not None:
            streams.append(models_stream())
    except EndpointError:
        pass  # discover describes the data; reachability is check's job
    finally:
        await transport.aclose()
    yield protocol.catalog(streams)


async def read(
    raw_config: Any,
    catalog: Any,
    state: Any = None,
    transport_factory: TransportFactory = default_transport,
    checkpointing: Checkpointing = Checkpointing(),
    *,
    progress: Progress = NO_PROGRESS,
    dry_run: bool = False,
    stdin: BinaryIO | None = None,
    table: Any = None,
) -> AsyncIterator[Message]:
    """RECORDs in input order with STATE checkpoints, STREAM_STATUS and a LOG summary.

    ``progress`` hears of every record (and may add LOG lines); ``dry_run`` renders every
    request and reports counts, tokens and cost as LOG messages, sending nothing; ``stdin``
    is where ``input.path: "-"`` reads (default: the process's); ``table`` is an input
    table already opened by the caller (the standalone writer needs its schema first).
    """
    from connector.airbyte.catalog import MODELS_STREAM, SYNC_MODES, enriched_stream, selected_streams
    from connector.config.load import load_config
    from connector.endpoint.client import EndpointClient
    from connector.requests.templates import RequestTemplate
    from connector.rows.stdin import StdinTable, open_input
    from connector.secrets import Redactor

    config = load_config(raw_config)
    if table is None:
        table = open_input(config.input, stdin)
    if isinstance(table, StdinTable):
        await table.start()  # without input.columns, infers them from the first rows
        for note in table.notes:
            yield protocol.log(note, "WARN")
    template = RequestTemplate.from_config(config)
    template.check_columns(table.columns)
    enriched_stream(config, table.schema)  # the same name and column checks as discover
    # PyAirbyte asks for incremental on every stream; models is then simply listed again.
    offered = {config.stream_name: SYNC_MODES, MODELS_STREAM: SYNC_MODES}
    selected = selected_streams(catalog, offered)
    redact = Redactor(config.secrets())
    transport = transport_factory(config)
    client = EndpointClient(config, transport, limiter=limiter_for(config))
    try:
        for stream in selected:
            if dry_run:
                if stream.name != MODELS_STREAM:
                    messages = _dry_run(config, table, template, client, redact, stream.sync_mode, state)
                else:
                    continue  # listing models is free, but a dry run sends nothing at all
            elif stream.name == MODELS_STREAM:
                messages = _read_models(client, stream.name)
            else:
                messages = _read_enriched(config, table, template, client, redact, stream.sync_mode,
                                          state, checkpointing, progress)
            async for message in messages:
                yield message
    finally:
        await transport.aclose()


async def _read_models(client: Any, name: str) -> AsyncIterator[Message]:
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


class RowFailed(ConnectorError):
    """A row failed and ``on_row_error`` is ``fail``, or the error rate passed its maximum."""

    failure_type = "transient_error"


def _spend_guard(config: Any, client: Any, tally: Any) -> str | None:
    """Why no further request may be sent, or None."""
    if config.max_requests is not None and client.requests_sent >= config.max_requests:
        return f"max_requests ({config.max_requests}) reached"
    if config.max_total_tokens is not None and tally.tokens >= config.max_total_tokens:
        return f"max_total_tokens ({config.max_total_tokens}) reached ({tally.tokens} used)"
    return None


async def _read_enriched(
    config: Any,
    table: Any,
    template: Any,
    client: Any,
    redact: Any,
    sync_mode: str,
    state: Any,
    checkpointing: Checkpointing,
    progress: Progress = NO_PROGRESS,
) -> AsyncIterator[Message]:
    from connector.airbyte.state import StreamPosition, position_for
    from connector.answers.cache import open_cache
    from connector.answers.records import Tally
    from connector.pipeline.enrich import RowEnricher
    from connector.pipeline.ordered import ordered_map
    from connector.rows.stdin import numbered_rows

    name = config.stream_name
    start = position_for(state, name, sync_mode)
    warnings: list[str] = []
    cache = open_cache(config, warnings.append)
    enricher = RowEnricher(config, client, redact, template, cache)
    tally = Tally()
    yield protocol.stream_status(name, "STARTED")
    for warning in warnings:
        yield protocol.log(redact(warning), "WARN")
    sized = table.estimate_rows()
    total = None if sized is None else max(sized[0] - start.position, 0)
    if sized is not None and total is not None:
        yield protocol.estimate(name, total)
        if sized[1]:
            yield protocol.log(f"{name}: about {total:,} rows to read (an estimate from the input's file sizes)")
    progress.start(name, total, sized is not None and sized[1])
    if start.position:
        yield protocol.log(f"{name}: resuming after row {start.position} (from state)")

    stopped_by: list[str] = []

    def stop() -> bool:
        reason = _spend_guard(config, client, tally)
        if reason:
            stopped_by.append(reason)
        return reason is not None

    rows = numbered_rows(table.batches(skip=start.position), start.position, stop)

    position, since_state = start.position, 0
    committed = start.position  # the position the last STATE carried
    last_state = time.monotonic()
    started = time.monotonic()
    try:
        async for data in ordered_map(rows, enricher, config.concurrency):
            if position == start.position:
                yield protocol.stream_status(name, "RUNNING")
            tally.observe(data)
            failed = data["_status"] != "ok"
            if failed and config.on_row_error == "fail":
                raise RowFailed(f"row {data['_row_number']} failed and on_row_error is 'fail': {data['_error']}")
            position += 1
            if failed and config.on_row_error == "skip":
                tally.skipped += 1
            else:
                if cache is not None:
                    cache.commit()  # the answer is durable before its record exists
                yield protocol.record(name, data)
                since_state += 1
            if config.max_error_rate is not None and tally.rows >= 20 and \
                    tally.failed / tally.rows > config.max_error_rate:
                raise RowFailed(
                    f"{tally.failed} of {tally.rows} rows failed, above max_error_rate "
                    f"{config.max_error_rate:g}; first errors: {' | '.join(tally.first_errors)}"
                )
            if since_state >= checkpointing.rows or time.monotonic() - last_state >= checkpointing.seconds:
                yield protocol.state(name, StreamPosition(position).as_state(), since_state)
                since_state, last_state, committed = 0, time.monotonic(), position
            for message in progress.advance(tally):
                yield message
    except ConnectorError:
        # Commit what was processed (a row that failed the sync is not), then report.
        if position != committed:
            yield protocol.state(name, StreamPosition(position).as_state(), since_state)
        yield protocol.stream_status(name, "INCOMPLETE")
        raise
    finally:
        if cache is not None:
            cache.close()
        for message in progress.finish(tally):
            yield message

    elapsed = time.monotonic() - started
    rate = f"{tally.rows / elapsed:.1f}" if elapsed else "-"
    summary = f"{name}: {tally.rows} rows in {elapsed:.1f} s ({rate} rows/s): {tally.summary()}"
    failed_whole = bool(tally.rows) and tally.failed == tally.rows
    if stopped_by:
        if position != committed:
            yield protocol.state(name, StreamPosition(position).as_state(), since_state)
        yield protocol.log(summary)
        yield protocol.log(f"{name}: spend guard: {stopped_by[0]}; stopped after row {position}. "
                           "Run again (with the last state) to continue.", "WARN")
        yield protocol.stream_status(name, "INCOMPLETE")
        return
    final = StreamPosition(position, sync_complete=sync_mode == "full_refresh")
    # A run in which every row failed adds no final state (checkpoints already emitted
    # stand), so the rows after the last checkpoint are retried by the next run.
    if not failed_whole and (since_state or final.sync_complete or position == start.position):
        yield protocol.state(name, final.as_state(), since_state)
    yield protocol.log(summary)
    if failed_whole:
        yield protocol.stream_status(name, "INCOMPLETE")
        raise SyncFailed(f"every row failed ({tally.rows} rows); first errors: {' | '.join(tally.first_errors)}")
    yield protocol.stream_status(name, "COMPLETE")


async def _dry_run(config: Any, table: Any, template: Any, client: Any, redact: Any, sync_mode: str,
                   state: Any) -> AsyncIterator[Message]:
    """The dry-run report of the enriched stream as LOG messages: nothing is sent, no state moves."""
    from connector.airbyte.state import position_for
    from connector.pipeline.dry_run import Planner, plan
    from connector.pipeline.enrich import RowEnricher
    from connector.rows.stdin import numbered_rows

    start = position_for(state, config.stream_name, sync_mode)
    planner = Planner(config, RowEnricher(config, client, redact, template), client, redact)
    report = await plan(numbered_rows(table.batches(skip=start.position), start.position, lambda: False), planner)
    for message in report.messages():
        yield message
