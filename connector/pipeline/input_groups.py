"""Several rows in one request, for the API shapes that take several inputs (embeddings).

The run loop's records come from here instead of one request per row when the dialect can
merge rows (:class:`~connector.dialects.embeddings.EmbeddingsDialect`) and
``embeddings.inputs_per_request`` is above 1. Consecutive rows form a group; a group is cut
at ``inputs_per_request`` rows to ask, at the provider's limits (inputs, estimated tokens per
request), where a row's request would differ in more than its input (another model), and
before a row whose planning stopped the run. Groups run ``concurrency`` at a time and their
records come out in input order, so the run loop, its checkpoints and resume are unchanged.

Each row keeps the per-row contract:

- a row is planned alone (null policy, context window, bad input), and looked up in the
  answer cache under the key of the request it would send alone, so ``inputs_per_request``
  may change between runs without buying an answer again; each new answer is stored under
  that key before its record exists;
- rows of a group with the same text are sent once (the others are ``_cached``, as
  identical rows are in a normal run);
- a row's ``_prompt_tokens`` is its share of the request's tokens (the rule is
  :func:`~connector.dialects.embeddings.shares`), its ``_cost`` the price of that share;
  ``_attempts`` and ``_latency_ms`` are the shared request's;
- an attempt of the shared request cut before its answer (the deadline, a reset) was billed all
  the same: its tokens (reported or estimated, see :mod:`connector.endpoint.streaming`) are shared
  out by the same rule and counted in each row's ``_prompt_tokens`` and ``_cost``, whether the
  request then succeeded or failed (its rows asked alone carry them);
- a spend guard that refuses the shared request refuses each of its rows (the run stops
  before the first; what its cut attempts were billed is in the run's summary);
- when the shared request fails (after its retries) with an error no later row would
  escape (key, quota, URL, model), the run ends as always; any other failure sends each of
  its rows alone, so one row the server refuses (too long for the model, say) fails alone
  and the others are answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from connector import errors
from connector.answers.cache import AnswerCache
from connector.answers.records import Enriched
from connector.dialects.embeddings import EmbeddingsDialect, shares
from connector.dialects.usage import TokenUsage
from connector.endpoint.classify import fatal, is_fatal
from connector.endpoint.client import Completion, EndpointClient
from connector.endpoint.limits import TokenEstimator
from connector.pipeline.context import RunContext
from connector.pipeline.enrich import Ask, RowEnricher
from connector.pipeline.ordered import as_async, ordered_map
from connector.pipeline.run_loop import Note, Rows

# A group also ends after this many rows in all (skipped and cached ones included): memory stays
# bounded and records keep flowing when most rows need no request.
MAX_ROWS_PER_GROUP = 4096


@dataclass(slots=True)
class Planned:
    """One row of a shared request: done without a request, or its request (with the answer cache's reply)."""

    planned: Enriched | Ask
    key: str = ""
    reply: dict[str, Any] | None = None  # from the answer cache

    @property
    def asks(self) -> Ask | None:
        """The request still to buy for this row, or None."""
        return self.planned if isinstance(self.planned, Ask) and self.reply is None else None


def plan_row(enricher: RowEnricher, item: tuple[int, dict[str, Any]]) -> Planned:
    """The row planned alone, and looked up in the answer cache under the key of the request it would send
    alone (so the rows per request may change between runs without buying an answer again)."""
    planned = enricher.plan(item)
    if isinstance(planned, Enriched):
        return Planned(planned)
    key = enricher.answer_key(planned.body)
    return Planned(planned, key, enricher.cached_answer(planned.body, key))


async def answered_alone(enricher: RowEnricher, row: Planned, prior: Sequence[TokenUsage] = ()) -> Enriched | None:
    """The row done without its shared request: as planned, from the cache, or asked alone (``prior``: its
    share of a shared request's usage that gave it no usable answer)."""
    planned = row.planned
    if isinstance(planned, Enriched):
        return planned
    if row.reply is not None:
        return await enricher.finish_shared(planned, row.reply, None)
    return await enricher.ask(planned, prior=prior)


def cut_shares(keys: Iterable[str], weights: Sequence[int], cut: Sequence[TokenUsage]) -> dict[str, list[TokenUsage]]:
    """Each request's share (by key) of a shared request's attempts ``cut`` before their answer, in proportion
    to ``weights`` (each request's part of the prompt), by the rule of :func:`shares`."""
    billed: dict[str, list[TokenUsage]] = {key: [] for key in keys}
    for usage in cut:
        parts = zip(shares(usage.prompt or 0, weights), shares(usage.completion or 0, weights), strict=True)
        for key, (prompt, output) in zip(billed, parts, strict=True):
            billed[key].append(TokenUsage(prompt, output, estimated=usage.estimated))
    return billed


@dataclass(slots=True)
class _Bought:
    """What one shared request brought: each distinct request's reply by cache key."""

    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    completion: Completion | None = None
    refused: bool = False  # a spend guard refused it: nothing was sent
    failed: bool = False  # it failed in a way its rows alone may not
    given: set[str] = field(default_factory=set)  # keys whose answer a record already carries
    billed: dict[str, list[TokenUsage]] = field(default_factory=dict)  # by key: shares of attempts cut short


@dataclass(slots=True)
class _Group:
    rows: list[Planned] = field(default_factory=list)
    asked: int = 0  # distinct requests to merge
    tokens: int = 0
    shape: tuple[Any, ...] | None = None
    stop: errors.ConnectorError | None = None  # planning this row stopped the run (too_long_policy fail)


def grouped(ctx: RunContext) -> InputGroups | None:
    """Rows several to a request, when the API shape takes several inputs (embeddings); else None (one
    request a row). ``read``, ``run`` and the Spark/Ray workers all ask here."""
    dialect = ctx.dialect
    if not isinstance(dialect, EmbeddingsDialect) or dialect.limits.inputs < 2:
        return None
    return InputGroups(ctx.enricher, ctx.client, dialect, ctx.cache, ctx.parts.run.concurrency)


class InputGroups:
    """The run loop's answer source when rows share requests (see the module doc)."""

    def __init__(self, enricher: RowEnricher, client: EndpointClient, dialect: EmbeddingsDialect,
                 cache: AnswerCache | None, concurrency: int) -> None:
        self._enricher = enricher
        self._client = client
        self._dialect = dialect
        self._cache = cache if cache is not None and cache.enabled else None
        self._concurrency = concurrency
        self._estimate = TokenEstimator()

    async def __call__(self, rows: Rows) -> AsyncIterator[Enriched | Note | None]:
        async for records in ordered_map(self._groups(rows), self._answer, self._concurrency):
            for record in records:
                yield record

    async def _groups(self, rows: Rows) -> AsyncIterator[_Group]:
        group = _Group()
        async for item in as_async(rows):
            try:
                row = plan_row(self._enricher, item)
            except errors.ConnectorError as exc:
                if group.rows:
                    yield group
                yield _Group(stop=exc)
                return
            if (ask := row.asks) is not None and self._full(group, ask.body):
                yield group
                group = _Group()
            self._add(group, row)
            if len(group.rows) >= MAX_ROWS_PER_GROUP:
                yield group
                group = _Group()
        if group.rows:
            yield group

    def _full(self, group: _Group, body: dict[str, Any]) -> bool:
        """Whether ``body`` cannot join ``group``'s request."""
        if not group.asked:
            return False
        limits = self._dialect.limits
        tokens = self._estimate.prompt_tokens(self._dialect.prompt_chars(body))
        return group.asked >= limits.inputs or self._dialect.group_key(body) != group.shape or \
            (limits.tokens is not None and group.tokens + tokens > limits.tokens)

    def _add(self, group: _Group, row: Planned) -> None:
        group.rows.append(row)
        ask = row.asks
        if ask is not None and not any(other.key == row.key for other in group.rows[:-1]):
            group.asked += 1
            group.tokens += self._estimate.prompt_tokens(self._dialect.prompt_chars(ask.body))
            group.shape = self._dialect.group_key(ask.body)

    async def _answer(self, group: _Group) -> list[Enriched | None]:
        if group.stop is not None:
            raise group.stop
        asked = {row.key: ask.body for row in group.rows if (ask := row.asks) is not None}
        bought = await self._buy(asked) if asked else _Bought()
        if bought.failed:  # each row alone: one row the server refuses fails alone (a share of cut attempts once)
            return list(await asyncio.gather(*(answered_alone(self._enricher, row, bought.billed.pop(row.key, []))
                                               for row in group.rows)))
        return [await self._record(row, bought) for row in group.rows]

    async def _buy(self, asked: dict[str, dict[str, Any]]) -> _Bought:
        """The replies of the distinct requests ``asked`` (by cache key), bought in one request."""
        bodies = list(asked.values())
        merged, cut = self._dialect.merge(bodies), list[TokenUsage]()
        weights = [self._dialect.prompt_chars(b) for b in bodies]  # the rule that shares the tokens out
        try:
            completion = await self._client.complete(merged, cut.append)
            replies = self._dialect.split(completion.reply, weights)
        except errors.SpendLimitReached:
            self._enricher.refused_after(merged, cut)  # the summary counts what its cut attempts were billed
            return _Bought(refused=True)
        except errors.EndpointError as exc:
            if is_fatal(exc):
                raise fatal(exc) from exc
            return _Bought(failed=True, billed=cut_shares(asked, weights, cut))
        for key, reply in zip(asked, replies, strict=True):
            if self._cache is not None:
                self._cache.put(key, reply)  # stored before the record exists: never paid twice
        return _Bought(dict(zip(asked, replies, strict=True)), completion, billed=cut_shares(asked, weights, cut))

    async def _record(self, row: Planned, bought: _Bought) -> Enriched | None:
        planned = row.asks
        if planned is None:
            return await answered_alone(self._enricher, row)
        if bought.refused:
            return None  # a spend guard refused the shared request: the run stops before this row
        first = row.key not in bought.given  # an identical row later in the group shares the answer
        bought.given.add(row.key)
        return await self._enricher.finish_shared(planned, bought.replies[row.key],
                                                  bought.completion if first else None,
                                                  bought.billed.get(row.key, []) if first else [])
