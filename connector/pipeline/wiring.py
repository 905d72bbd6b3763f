"""How the parts of one run are put together: the one place that wires them.

``read``, ``run``, the dry run and the Spark/Ray workers all get their transport,
client, limiter, spend budget, answer cache and row enricher from here, so a
change to how a run is built is made once.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from connector.answers.cache import AnswerCache, open_cache
from connector.config.model import SourceConfig
from connector.dialects import Dialect
from connector.endpoint.client import EndpointClient
from connector.endpoint.limits import ConcurrencyGate, Limiter, SpendBudget, TokenBucket, WaitCap
from connector.endpoint.resources import fit_concurrency
from connector.endpoint.transport import AiohttpTransport, Transport
from connector.errors import ConfigError
from connector.pipeline.batch_ledger import SavedBatch
from connector.pipeline.enrich import RowEnricher
from connector.pipeline.progress import NO_PROGRESS, Progress
from connector.pipeline.run import DEFAULT_CHECKPOINTING, Checkpointing, Event, Note, RunParts, run_rows
from connector.requests.templates import RequestTemplate
from connector.rows.table import Table
from connector.secrets import Redactor

TransportFactory = Callable[[SourceConfig], Transport]
Notice = Callable[[str, str], None]  # (level, text)


def _ignore(_level: str, _text: str) -> None:
    pass


def default_transport(config: SourceConfig) -> Transport:
    """aiohttp, with a connection pool as large as the concurrency and the config's TLS settings."""
    verify: bool | ssl.SSLContext = config.tls.verify
    if config.tls.verify and config.tls.ca_bundle:
        try:
            verify = ssl.create_default_context(cafile=config.tls.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"tls.ca_bundle: cannot load '{config.tls.ca_bundle}': {exc}") from None
    return AiohttpTransport(max_connections=config.concurrency, verify_tls=verify)


def limiter_for(config: SourceConfig, notice: Notice | None = None) -> Limiter:
    """The concurrency gate and rate budgets a run's requests pass through; ``notice`` hears of
    long waits the endpoint asks for."""
    waits = WaitCap(config.max_wait_seconds, notice) if notice else WaitCap(config.max_wait_seconds)
    gate = ConcurrencyGate(config.concurrency, config.min_concurrency, adaptive=config.adaptive_concurrency,
                           waits=waits)
    rpm = TokenBucket(config.requests_per_minute) if config.requests_per_minute else None
    tpm = TokenBucket(config.tokens_per_minute) if config.tokens_per_minute else None
    return Limiter(gate, rpm, tpm)


def budget_for(config: SourceConfig) -> SpendBudget | None:
    """The spend guards of one run, or None when the config sets none."""
    if config.max_requests is None and config.max_total_tokens is None:
        return None
    return SpendBudget(config.max_requests, config.max_total_tokens)


@dataclass
class Endpoint:
    """The config, its secrets mask, and a client over an open transport."""

    config: SourceConfig
    redact: Redactor
    client: EndpointClient
    transport: Transport


@asynccontextmanager
async def connect(config: SourceConfig, dialect: Dialect, transport_factory: TransportFactory = default_transport,
                  *, limited: bool = True, notice: Notice | None = None) -> AsyncIterator[Endpoint]:
    """An endpoint client for the run, speaking the run's one ``dialect`` (built first, with
    :func:`connector.dialects.dialect_for`, so what the API shape cannot express fails before
    anything is read), through the limiter and spend budget unless ``limited`` is off; the
    transport is closed on the way out.

    ``notice`` hears at once what the person running it should know while rows may not flow:
    a concurrency lowered to fit the open-files limit, a long wait the endpoint asked for.
    ``Endpoint.config`` is the config the run really uses (its concurrency so lowered).
    """
    if limited:
        config = fit_concurrency(config, notice or _ignore)
    transport = transport_factory(config)
    try:
        client = EndpointClient(config, transport, limiter=limiter_for(config, notice) if limited else None,
                                budget=budget_for(config) if limited else None, dialect=dialect)
        yield Endpoint(config, Redactor.for_config(config), client, transport)
    finally:
        await transport.aclose()


def enricher_for(endpoint: Endpoint, template: RequestTemplate | None = None,
                 cache: AnswerCache | None = None) -> RowEnricher:
    """The row enricher of a run over ``endpoint``."""
    return RowEnricher(endpoint.config, endpoint.client, endpoint.redact, template, cache)


def run_events(endpoint: Endpoint, parts: RunParts, table: Table, start: int = 0,
               saved: tuple[SavedBatch, ...] = (), *, full_refresh: bool = False,
               checkpointing: Checkpointing = DEFAULT_CHECKPOINTING,
               progress: Progress = NO_PROGRESS) -> AsyncIterator[Event]:
    """The run's events: :func:`run_rows`, or :func:`run_batches` through the provider's batch API when
    ``batch.enabled`` (resuming the STATE's ``saved`` batches)."""
    if not endpoint.config.batch.enabled:
        events = run_rows(parts, table, start, full_refresh=full_refresh, checkpointing=checkpointing,
                          progress=progress)
        return _forsaken(saved, endpoint.config.stream_name, events) if saved else events
    from connector.endpoint.batch import batch_api
    from connector.pipeline.batch_run import run_batches

    api = batch_api(endpoint.config, endpoint.transport, endpoint.client.dialect)
    return run_batches(parts, api, table, start, saved, full_refresh=full_refresh, checkpointing=checkpointing,
                       progress=progress)


async def _forsaken(saved: tuple[SavedBatch, ...], stream: str, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """A normal run from a STATE that lists provider batches: said, then run (their rows are asked again)."""
    yield Note(f"{stream}: the state lists {len(saved)} provider batches ({', '.join(b.id or '?' for b in saved)}) "
               "but batch.enabled is off: their rows are sent as normal requests and the batches' answers are not "
               "collected; turn batch.enabled on to collect them instead", "WARN")
    async for event in events:
        yield event


def answer_cache(config: SourceConfig, warn: Callable[[str], None]) -> AnswerCache | None:
    """The answer cache the config asks for (None when off); ``warn`` hears why it could not be used."""
    return open_cache(config, warn)
