"""The Airbyte commands, each an async iterator of protocol messages.

Commands never print and never exit: they yield messages and raise
:class:`~connector.errors.ConnectorError` for a fatal condition; ``cli`` turns
both into stdout lines and an exit code. The HTTP transport is injected, so
tests drive the real commands over a fake network.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from connector import protocol
from connector.errors import CatalogError, ConfigError, ConnectorError, EndpointError
from connector.protocol import Message
from connector.specification import specification
from connector.transport import Transport

TransportFactory = Callable[[int], Transport]


def default_transport(concurrency: int) -> Transport:
    from connector.transport import AiohttpTransport

    return AiohttpTransport(max_connections=concurrency)


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
    from connector.limits import ConcurrencyGate, Limiter, TokenBucket

    gate = ConcurrencyGate(config.concurrency, config.min_concurrency, adaptive=config.adaptive_concurrency)
    rpm = TokenBucket(config.requests_per_minute) if config.requests_per_minute else None
    tpm = TokenBucket(config.tokens_per_minute) if config.tokens_per_minute else None
    return Limiter(gate, rpm, tpm)


async def spec() -> AsyncIterator[Message]:
    yield protocol.spec(specification())


async def check(raw_config: Any, transport_factory: TransportFactory = default_transport) -> AsyncIterator[Message]:
    """CONNECTION_STATUS, SUCCEEDED or FAILED with a precise, safe message."""
    from connector.client import EndpointClient
    from connector.probe import CheckFailed, run_check
    from connector.redact import Redactor
    from connector.validation import load_config

    try:
        config = load_config(raw_config)
    except ConfigError as exc:
        yield protocol.connection_status(False, exc.message)
        return
    redact = Redactor(config.secrets())
    transport = transport_factory(1)
    try:
        message = await run_check(config, EndpointClient(config, transport))
        yield protocol.connection_status(True, redact(message))
    except (CheckFailed, ConfigError) as exc:
        yield protocol.connection_status(False, redact(exc.message))
    finally:
        await transport.aclose()


async def discover(raw_config: Any, transport_factory: TransportFactory = default_transport) -> AsyncIterator[Message]:
    """CATALOG: the enriched stream, plus ``models`` when the endpoint lists models."""
    from connector.catalog import enriched_stream, models_stream
    from connector.client import EndpointClient
    from connector.inputs import InputTable
    from connector.templates import RequestTemplate
    from connector.validation import load_config

    config = load_config(raw_config)
    table = InputTable(config.input)
    RequestTemplate.from_config(config).check_columns(table.columns)
    streams = [enriched_stream(config, table.schema)]
    transport = transport_factory(1)
    try:
        if await EndpointClient(config, transport).list_models() is not None:
            streams.append(models_stream())
    except EndpointError:
        pass  # discover describes the data; reachability is check's job
    finally:
        await transport.aclose()
    yield protocol.catalog(streams)


def _rows(batches: Iterator[list[dict[str, Any]]], start: int) -> Iterator[tuple[int, dict[str, Any]]]:
    position = start
    for batch in batches:
        for row in batch:
            yield position, row
            position += 1


async def read(
    raw_config: Any,
    catalog: Any,
    state: Any = None,
    transport_factory: TransportFactory = default_transport,
    checkpointing: Checkpointing = Checkpointing(),
) -> AsyncIterator[Message]:
    """RECORDs in input order with STATE checkpoints, STREAM_STATUS and a LOG summary."""
    from connector.catalog import MODELS_STREAM, SYNC_MODES, enriched_stream, selected_streams
    from connector.client import EndpointClient
    from connector.inputs import InputTable
    from connector.redact import Redactor
    from connector.templates import RequestTemplate
    from connector.validation import load_config

    config = load_config(raw_config)
    table = InputTable(config.input)
    template = RequestTemplate.from_config(config)
    template.check_columns(table.columns)
    enriched_stream(config, table.schema)  # the same name and column checks as discover
    # PyAirbyte asks for incremental on every stream; models is then simply listed again.
    offered = {config.stream_name: SYNC_MODES, MODELS_STREAM: SYNC_MODES}
    selected = selected_streams(catalog, offered)
    redact = Redactor(config.secrets())
    transport = transport_factory(config.concurrency)
    client = EndpointClient(config, transport, limiter=limiter_for(config))
    try:
        for stream in selected:
            if stream.name == MODELS_STREAM:
                messages = _read_models(client, stream.name)
            else:
                messages = _read_enriched(config, table, template, client, redact, stream.sync_mode,
                                          state, checkpointing)
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


async def _read_enriched(
    config: Any,
    table: Any,
    template: Any,
    client: Any,
    redact: Any,
    sync_mode: str,
    state: Any,
    checkpointing: Checkpointing,
) -> AsyncIterator[Message]:
    from connector.engine import ordered_map
    from connector.enrich import RowEnricher
    from connector.state import StreamPosition, position_for

    name = config.stream_name
    start = position_for(state, name, sync_mode)
    enricher = RowEnricher(config, client, redact, template)
    yield protocol.stream_status(name, "STARTED")
    total = table.count_rows()
    if total is not None:
        yield protocol.estimate(name, max(total - start.position, 0))
    if start.position:
        yield protocol.log(f"{name}: resuming after row {start.position} (from state)")

    position, since_state = start.position, 0
    last_state = time.monotonic()
    started = time.monotonic()
    rows = _rows(table.batches(skip=start.position), start.position)
    try:
        async for data in ordered_map(rows, enricher, config.concurrency):
            if position == start.position:
                yield protocol.stream_status(name, "RUNNING")
            yield protocol.record(name, data)
            position += 1
            since_state += 1
            if since_state >= checkpointing.rows or time.monotonic() - last_state >= checkpointing.seconds:
                yield protocol.state(name, StreamPosition(position).as_state(), since_state)
                since_state, last_state = 0, time.monotonic()
    except ConnectorError:
        if since_state:
            yield protocol.state(name, StreamPosition(position).as_state(), since_state)
        yield protocol.stream_status(name, "INCOMPLETE")
        raise

    tally = enricher.tally
    failed_whole = bool(tally.rows) and not tally.ok
    final = StreamPosition(position, sync_complete=sync_mode == "full_refresh")
    # A run in which every row failed adds no final state (checkpoints already emitted
    # stand), so the rows after the last checkpoint are retried by the next run.
    if not failed_whole and (since_state or final.sync_complete or position == start.position):
        yield protocol.state(name, final.as_state(), since_state)
    elapsed = time.monotonic() - started
    yield protocol.log(
        f"{name}: {tally.rows} rows in {elapsed:.1f} s ({tally.rows / elapsed if elapsed else 0:.1f} rows/s): "
        f"{tally.ok} ok, {tally.failed} failed, {tally.retried} retried; "
        f"tokens in {tally.prompt_tokens}, out {tally.completion_tokens}"
        + (f"; first errors: {' | '.join(tally.first_errors)}" if tally.first_errors else "")
    )
    if failed_whole:
        yield protocol.stream_status(name, "INCOMPLETE")
        raise SyncFailed(
            f"every row failed ({tally.rows} rows); first errors: {' | '.join(tally.first_errors)}"
        )
    yield protocol.stream_status(name, "COMPLETE")
