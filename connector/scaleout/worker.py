"""The engine for one worker: Arrow batches in, enriched Arrow batches out.

A worker (a Spark task, a Ray actor) owns one :class:`BatchEnricher`. Its
requests go through the same steps as a ``read``: answer cache, single flight,
retries with ``Retry-After``, adaptive concurrency and the rate budgets, several
embedding rows of a batch to a request (:func:`~connector.pipeline.input_groups.grouped`), with
results in input order. The config is the connector's, with two changes made by
:func:`worker_config`:

- ``concurrency`` is per worker (``concurrency=`` overrides the config's);
- ``requests_per_minute``, ``tokens_per_minute`` and the input and output token budgets are the budgets of the whole
  job: each worker gets its share, the budget divided by ``workers``, so the
  endpoint sees at most the configured rate whatever the cluster size.

``_row_number`` counts rows within the worker's partition (Spark and Ray do not
tell a task where its rows start): keep an id column of your own to join on.
``on_row_error: skip`` leaves failed rows out; ``fail`` fails the task. The spend
guards (``max_requests``, ``max_total_tokens``) belong to one ``read`` and are
refused here: budget a cluster job with the rate limits and the input's size.
With ``tasks``, a row's tasks run in one pass as in a ``read`` (:class:`~connector.pipeline.tasks.
TaskEnricher`); the driver checks the first task's template, a worker the others' (it knows the answers
they use once its context is built).

The event loop runs in a daemon thread of the worker, so the adapters work from
any calling thread (Spark's worker, a Ray actor, a notebook whose own loop is
running).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from connector.errors import ConfigError, RowFailed

if TYPE_CHECKING:
    from connector.answers.records import Enriched
    from connector.config.model import SourceConfig
    from connector.pipeline.connect import TransportFactory
    from connector.pipeline.context import RunContext

T = TypeVar("T")


def worker_config(config: Mapping[str, Any], workers: int = 1, concurrency: int | None = None) -> dict[str, Any]:
    """The raw config one worker runs with: rate budgets divided across ``workers``."""
    if workers < 1:
        raise ConfigError("workers: must be >= 1 (how many tasks or actors call the endpoint at once)")
    raw = dict(config)
    raw.setdefault("input", {"path": "-"})  # rows come from the engine, not from a file
    for guard in ("max_requests", "max_total_tokens"):
        if raw.get(guard) is not None:
            raise ConfigError(f"{guard}: a spend guard of one read; not supported when scaling out. Bound a "
                              "cluster job with requests_per_minute / tokens_per_minute and the input's size")
    for budget in ("requests_per_minute", "tokens_per_minute", "input_tokens_per_minute", "output_tokens_per_minute"):
        if raw.get(budget):
            raw[budget] = max(1, int(raw[budget]) // workers)
    if concurrency is not None:
        raw["concurrency"] = concurrency
        raw["min_concurrency"] = min(int(raw.get("min_concurrency") or 1), concurrency)
    return raw


class BatchEnricher:
    """Enriches Arrow batches with the connector's engine; one per worker, picklable until first used."""

    def __init__(self, config: Mapping[str, Any], input_schema: pa.Schema, *, workers: int = 1,
                 concurrency: int | None = None, transport_factory: TransportFactory | None = None) -> None:
        from connector.answers.arrow_schema import Columns
        from connector.answers.records import META_COLUMNS
        from connector.answers.schema import enriched_schema
        from connector.config.load import load_config
        from connector.pipeline.connect import requests_of
        from connector.rows.arrow_values import unsupported
        from connector.rows.columns import renames

        self.raw_config = worker_config(config, workers, concurrency)
        self.config = load_config(self.raw_config)
        if self.config.batch.enabled:
            raise ConfigError("batch.enabled: Spark and Ray workers send normal requests, row by row; a provider "
                              "batch spans syncs, which a worker does not have. Turn batch off here, or use read "
                              "or run for batch mode")
        for field in input_schema:
            why = unsupported(field.type)
            if why:
                raise ConfigError(f"input column {field.name!r} is {field.type}: {why}, which cannot be sent or "
                                  "written exactly; convert or drop the column before enriching")
        # An already-enriched table keeps its own metadata columns, under input.metadata_prefix.
        self._names = renames(input_schema.names, META_COLUMNS, self.config.input.metadata_prefix)
        schema = pa.schema([f.with_name(self._names.get(f.name, f.name)) for f in input_schema])
        # A config the API shape cannot express fails here, in the driver, before any worker starts.
        parts, _, template = requests_of(self.config)
        template.check_columns(schema.names)
        self.input_schema = schema
        self.json_schema = enriched_schema(schema, parts.output)
        self.columns = Columns(self.json_schema, schema, "parquet")
        self._transport_factory = transport_factory
        self._rows_done = 0
        self._runtime: _Runtime | None = None

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema of every batch :meth:`enrich` returns."""
        return self.columns.schema

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_runtime"] = None  # a loop and sockets do not travel; a worker starts its own
        return state

    def enrich(self, batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch:
        """One batch in, the same rows enriched (in the same order), as one batch of :attr:`schema`."""
        from connector.rows.columns import arrow_rows

        start = self._rows_done
        rows = arrow_rows(batch, lambda i: f"row {start + i + 1} of this partition", self._names)
        if self._runtime is None:
            self._runtime = _Runtime(self.config, self._transport_factory, self.input_schema.names)
        self._rows_done += len(rows)
        done = self._runtime.run(self._runtime.enrich(rows, start))
        if self.config.on_row_error != "emit":
            failed = [row for row in done if row.outcome.failed]
            if failed and self.config.on_row_error == "fail":
                first = failed[0]
                raise RowFailed(f"row {first.number} of this partition failed and on_row_error is "
                                f"'fail': {first.outcome.error}")
            done = [row for row in done if not row.outcome.failed]
        return self.columns.batch([row.record() for row in done])

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None


class _Runtime:
    """An event loop in a daemon thread, and the run context (client, limiter, cache, enricher) living on it."""

    def __init__(self, config: SourceConfig, transport_factory: TransportFactory | None,
                 columns: list[str]) -> None:
        self._config = config
        self._columns = columns  # the input's: a task's template is checked against them and the answers it uses
        self._factory = transport_factory
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="enrich-loop", daemon=True)
        self._thread.start()
        self._preparation: AbstractAsyncContextManager[RunContext] | None = None
        self._ctx: RunContext | None = None
        self.run(self._setup())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _setup(self) -> None:
        from connector.pipeline.connect import default_transport
        from connector.pipeline.prepare import prepare

        self._preparation = prepare(self._config, self._factory or default_transport, purpose="worker",
                                    columns=self._columns)
        self._ctx = await self._preparation.__aenter__()

    async def enrich(self, rows: list[dict[str, Any]], start: int) -> list[Enriched]:
        from connector.answers.records import Enriched
        from connector.pipeline.input_groups import grouped
        from connector.pipeline.ordered import ordered_map
        from connector.pipeline.row_packs import packed

        items = iter(enumerate(rows, start))
        ctx = self._ctx
        assert ctx is not None, "set up in __init__"
        groups = grouped(ctx) or packed(ctx)  # several rows of the batch to a request, as in a read
        enrich = ctx.tasks or ctx.enricher  # with tasks, a row's tasks in one pass, as in a read
        results = groups(items) if groups is not None else ordered_map(items, enrich, ctx.parts.run.concurrency)
        out: list[Enriched] = []
        async for done in results:
            if done is None:
                raise AssertionError("worker_config refuses the spend guards, the only reason for no record")
            if isinstance(done, Enriched):  # a Note (input_groups gives none today) has nowhere to go here
                out.append(done)
        if ctx.cache is not None:
            ctx.cache.commit()  # durable before the batch goes back to the engine
        return out

    def close(self) -> None:
        async def shut() -> None:
            if self._preparation is not None:
                await self._preparation.__aexit__(None, None, None)  # closes the transport and the cache

        try:
            self.run(shut())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
