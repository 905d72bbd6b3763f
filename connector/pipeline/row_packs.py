"""Several chat rows in one request (``rows_per_request`` above 1): packed, answered by id, mapped back.

The run loop's records come from here instead of one request per row when ``rows_per_request`` is above 1
(:func:`packed`). Consecutive rows form a pack of at most ``rows_per_request`` distinct requests whose bodies
differ only in the last user message (:func:`~connector.dialects.packed_chat.pack_key`); a pack is also cut where
the next row would take its estimate (prompt and summed output caps, offline) past ``context_window`` when one is
set, before a row whose planning stopped the run, and after :data:`MAX_ROWS_PER_PACK` rows in all. With
``rows_per_request: "auto"`` the first rows are held until :mod:`connector.pipeline.pack_size` has measured enough
of them to choose the rows per request (said in an INFO note), and the window is the one it assumed. Packs run
``concurrency`` at a time and their records come out in input order, so the run loop, its checkpoints and
resume are unchanged. The packed request and its answer are :mod:`connector.dialects.packed_chat`'s.

Each row keeps the per-row contract:

- a row is planned alone (null policy, context window, bad input) and looked up in the answer cache under the
  key of the request it would send alone, so ``rows_per_request`` may change between runs without buying an
  answer again; each answer taken from a pack is stored under that key before its record exists;
- rows of a pack with the same request are asked once (the others are ``_cached``), and a row whose request an
  earlier pack not yet answered asks is left out of its own pack and waits for that answer (``_cached`` too);
- a row whose id is missing from the packed answer, given twice, or whose answer does not pass the row's own
  check (its columns, its output schema) is asked again alone, as if packing were off; so is every row of a
  pack whose request failed in a way its rows alone may not (after its retries). A failure no later row
  would escape (key, quota, URL, model) ends the run as always; a spend guard that refuses a pack refuses its
  rows (the run stops before the first). A pack the endpoint refuses outright (a 4xx that is no rate limit),
  or :data:`USELESS_PACKS` packed answers in a row that give no row a usable answer, turn packing off for the
  rest of the run, said in a WARN;
- a row's tokens and cost are its share of the packed request's (the rule is
  :mod:`connector.dialects.packed_chat`'s), added to its own request's when it was asked again alone;
  ``_attempts`` and ``_latency_ms`` are the packed request's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from connector import errors
from connector.answers.cache import AnswerCache
from connector.answers.judge import finish_reason
from connector.answers.records import Enriched
from connector.config.packing_rules import AUTO_MAX_ROWS
from connector.dialects.base import max_tokens_of
from connector.dialects.packed_chat import INSTRUCTION, Unpacked, pack, pack_key, prompt_weights, unpack
from connector.dialects.usage import TokenUsage, usage_from
from connector.endpoint.classify import fatal, is_fatal
from connector.endpoint.client import Completion, EndpointClient
from connector.endpoint.limits import TokenEstimator
from connector.pipeline.context import RunContext
from connector.pipeline.enrich import Ask, RowEnricher
from connector.pipeline.input_groups import Planned, answered_alone, cut_shares, plan_row
from connector.pipeline.ordered import as_async, ordered_map
from connector.pipeline.pack_size import AutoSize
from connector.pipeline.run_loop import Note, Rows

# Packed answers in a row with no usable answer for any row (a model that cannot answer by id, or runs past the
# token limit) after which packing is off: each of them cost its rows a second request.
USELESS_PACKS = 3
MAX_ROWS_PER_PACK = 4096  # rows in all (skipped and cached ones included): memory bounded, records flowing


@dataclass(slots=True)
class _Pack:
    rows: list[Planned] = field(default_factory=list)
    asked: dict[str, Ask] = field(default_factory=dict)  # distinct requests by answer-cache key
    shape: tuple[str, ...] | None = None
    tokens: int = 0  # the packed request's estimate: prompt and output cap
    stop: errors.ConnectorError | None = None
    note: Note | None = None  # said before the pack's records (rows_per_request auto's choice)
    # Rows whose request an earlier pack asks (by answer-cache key): they wait for its answer, not buy it again.
    waits: dict[str, asyncio.Future[dict[str, Any] | None]] = field(default_factory=dict)


@dataclass(slots=True)
class _Bought:
    parts: dict[str, Unpacked] = field(default_factory=dict)  # by answer-cache key
    completion: Completion | None = None
    refused: bool = False
    failed: bool = False
    note: Note | None = None
    given: set[str] = field(default_factory=set)
    billed: dict[str, list[TokenUsage]] = field(default_factory=dict)  # by key: shares of attempts cut short


def packed(ctx: RunContext) -> RowPacks | None:
    """The answer source when ``rows_per_request`` is above 1; None otherwise (one request a row)."""
    n, window = ctx.parts.run.rows_per_request, ctx.parts.rows.context_window
    if n == "auto":
        auto = AutoSize.for_window(window, TokenEstimator())
        return RowPacks(ctx.enricher, ctx.client, ctx.cache, AUTO_MAX_ROWS, ctx.parts.run.concurrency, auto.window,
                        auto)
    if n < 2:
        return None
    return RowPacks(ctx.enricher, ctx.client, ctx.cache, n, ctx.parts.run.concurrency, window)


class RowPacks:
    """The run loop's answer source when rows are packed (see the module doc)."""

    def __init__(self, enricher: RowEnricher, client: EndpointClient, cache: AnswerCache | None, rows: int,
                 concurrency: int, window: int | None = None, auto: AutoSize | None = None) -> None:
        self._enricher = enricher
        self._client = client
        self._cache = cache if cache is not None and cache.enabled else None
        self._rows = rows
        self._concurrency = concurrency
        self._off = False  # the endpoint refused a packed request: every row alone from then on
        self._useless = 0  # packed answers in a row that gave no row an answer
        self._window = window  # context_window: a packed request is cut to fit it, as estimated offline
        self._estimate = TokenEstimator()
        self._auto = auto  # rows_per_request auto, until it has chosen the rows per request
        # The requests of the packs formed and not yet answered (by answer-cache key), each resolved to its reply
        # from the pack (None: the row was asked alone, and its answer is in the cache): no answer bought twice.
        self._flying: dict[str, asyncio.Future[dict[str, Any] | None]] = {}

    async def __call__(self, rows: Rows) -> AsyncIterator[Enriched | Note | None]:
        async for records in ordered_map(self._packs(rows), self._answer, self._concurrency):
            for record in records:
                yield record

    async def _planned(self, rows: Rows) -> AsyncIterator[Planned | errors.ConnectorError | Note]:
        """Each row planned alone, in order; a planning error that stops the run last. With auto, the first rows
        held until the rows per request are chosen (see :meth:`_sized`), the choice said before them."""
        held: list[Planned | errors.ConnectorError] = []
        async for item in as_async(rows):
            try:
                row: Planned | errors.ConnectorError = plan_row(self._enricher, item)
            except errors.ConnectorError as exc:
                row = exc
            outs: list[Planned | errors.ConnectorError | Note] = [row]
            if self._auto is not None:
                if isinstance(row, Planned) and row.asks is not None:
                    self._auto.add_body(self._client.dialect, self._estimate, row.asks.body)
                held.append(row)
                outs = self._sized(held, ended=isinstance(row, errors.ConnectorError))
            for out in outs:
                yield out
            if isinstance(row, errors.ConnectorError):
                return
        for out in self._sized(held, ended=True):
            yield out

    def _sized(self, held: list[Planned | errors.ConnectorError],
               ended: bool) -> list[Planned | errors.ConnectorError | Note]:
        """The rows ``held`` to let go (emptying it): none until auto has measured enough rows to ask, or the
        input ended, or a pack's worth of rows is held (then the rows per request is chosen, if any row was
        measured, and said first)."""
        auto = self._auto
        if auto is None:
            return []
        if not (ended or auto.enough or len(held) >= MAX_ROWS_PER_PACK):
            return []
        out: list[Planned | errors.ConnectorError | Note] = []
        if auto.measured:
            self._rows, self._auto = auto.rows(), None
            out.append(Note(auto.line()))
        out += held
        held.clear()
        return out

    async def _packs(self, rows: Rows) -> AsyncIterator[_Pack]:
        pack_ = _Pack()
        async for row in self._planned(rows):
            if isinstance(row, Note):
                yield _Pack(note=row)
                continue
            if isinstance(row, errors.ConnectorError):
                if pack_.rows:
                    yield pack_
                yield _Pack(stop=row)
                return
            ask = row.asks
            if ask is not None and row.key not in pack_.asked and row.key in self._flying:
                pack_.waits[row.key], ask = self._flying[row.key], None  # another pack asks it: shared
            elif ask is not None and row.key not in pack_.asked:
                shape = pack_key(ask.body)
                if pack_.asked and (shape is None or shape != pack_.shape or len(pack_.asked) >= self._rows
                                    or self._overflows(pack_, ask.body)):
                    yield pack_
                    pack_ = _Pack()
                pack_.tokens += self._tokens(ask.body, first=not pack_.asked)
                pack_.asked[row.key], pack_.shape = ask, shape
                self._flying[row.key] = asyncio.get_running_loop().create_future()
            pack_.rows.append(row)
            if len(pack_.rows) >= MAX_ROWS_PER_PACK or (ask is not None and pack_.shape is None):
                yield pack_  # a row that cannot be packed goes alone
                pack_ = _Pack()
        if pack_.rows:
            yield pack_

    def _tokens(self, body: dict[str, Any], first: bool) -> int:
        """What a row adds to a packed request's estimate: the whole prompt and the ask for the first row, its
        own text for the others; and its output cap."""
        cap = max_tokens_of(body) or 0
        if first:
            chars = self._client.dialect.prompt_chars(body) + len(INSTRUCTION)
            return self._estimate.prompt_tokens(chars) + cap
        return self._estimate.prompt_tokens(prompt_weights([body], ["0"])[0]) + cap

    def _overflows(self, pack_: _Pack, body: dict[str, Any]) -> bool:
        """Whether ``body`` would take the packed request past the context window (when one is set)."""
        return self._window is not None and pack_.tokens + self._tokens(body, first=False) > self._window

    async def _answer(self, pack_: _Pack) -> list[Enriched | Note | None]:
        if pack_.stop is not None:
            raise pack_.stop
        if pack_.note is not None:
            return [pack_.note]
        bought = _Bought()
        try:
            if len(pack_.asked) > 1 and not self._off:
                bought = await self._buy(pack_.asked)
            if bought.failed:  # each row alone: one row the server refuses fails alone
                records = list(await asyncio.gather(*(self._alone(row, pack_, bought.billed.pop(row.key, []))
                                                      for row in pack_.rows)))
            else:
                records = [await self._record(row, pack_, bought) for row in pack_.rows]
        finally:  # the rows of later packs waiting for these requests: the reply, or None (then in the cache)
            for key in pack_.asked:
                part, flying = bought.parts.get(key), self._flying.pop(key, None)
                if flying is not None and not flying.done():
                    flying.set_result(part.reply if part is not None else None)
        return [bought.note, *records] if bought.note is not None else list(records)

    async def _alone(self, row: Planned, pack_: _Pack, prior: list[TokenUsage]) -> Enriched | None:
        """The row done without its pack's answer: as planned, with the answer an earlier pack bought, from the
        cache, or asked alone."""
        waited = pack_.waits.get(row.key)
        if waited is None or isinstance(row.planned, Enriched):
            return await answered_alone(self._enricher, row, prior)
        reply = await asyncio.shield(waited)
        if reply is None:  # the earlier pack's row was asked alone: its answer is in the cache (when on)
            return await answered_alone(self._enricher, row)
        return await self._enricher.finish_shared(row.planned, reply, None)

    async def _buy(self, asked: dict[str, Ask]) -> _Bought:
        """The packed request for ``asked``, and each row's part of its answer (by answer-cache key)."""
        keys, asks = list(asked), list(asked.values())
        ids = [str(a.number) for a in asks]  # the row numbers: the ids the answer must come back under
        bodies = [a.body for a in asks]
        packed_body, cut, weights = pack(bodies, ids), list[TokenUsage](), prompt_weights(bodies, ids)
        try:
            completion = await self._client.complete(packed_body, cut.append)
        except errors.SpendLimitReached:
            self._enricher.refused_after(packed_body, cut)  # the summary counts what its cut attempts were billed
            return _Bought(refused=True)
        except errors.EndpointError as exc:
            if is_fatal(exc):
                raise fatal(exc) from exc
            failed = self._refused(exc)
            failed.billed = cut_shares(keys, weights, cut)  # its rows asked alone carry them
            return failed
        schema = "response_format" in bodies[0] and bodies[0]["response_format"].get("type") == "json_schema"
        parts = unpack(completion.reply, ids, weights, schema, completion.headers)
        for key, part in zip(keys, parts, strict=True):
            if part.reply is not None and self._enricher.columns_of(part.reply) is None:
                part.reply = None  # an answer the row's own check refuses: asked again alone
            if part.reply is not None and self._cache is not None:
                self._cache.put(key, part.reply)  # stored before the record exists: never paid twice
        bought = _Bought(dict(zip(keys, parts, strict=True)), completion, billed=cut_shares(keys, weights, cut))
        self._useless = 0 if any(part.reply is not None for part in parts) else self._useless + 1
        if self._useless == USELESS_PACKS and not self._off:
            self._off = True
            reason = finish_reason(completion.reply)
            bought.note = Note(f"rows_per_request: {USELESS_PACKS} packed answers in a row gave no row a usable answer "
                               f"(the last ended with finish_reason {reason}); every row is sent alone from now on",
                               "WARN")
        return bought

    def _refused(self, exc: errors.EndpointError) -> _Bought:
        """A packed request that failed: its rows alone; packing off when the endpoint refused the request."""
        if isinstance(exc, errors.HTTPStatusError) and 400 <= exc.status < 500 and not exc.retryable:
            self._off = True
            return _Bought(failed=True, note=Note(
                f"rows_per_request: the endpoint refused a packed request ({self._enricher.redact(exc.message)}); "
                "every row is sent alone from now on", "WARN"))
        return _Bought(failed=True)

    async def _record(self, row: Planned, pack_: _Pack, bought: _Bought) -> Enriched | None:
        planned = row.asks
        if bought.refused and planned is not None:
            return None  # a spend guard refused the packed request: the run stops before this row
        if planned is None or row.key in pack_.waits:
            return await self._alone(row, pack_, [])
        part = bought.parts.get(row.key)
        first = row.key not in bought.given  # an identical row later in the pack shares the answer
        bought.given.add(row.key)
        billed = bought.billed.get(row.key, []) if first else []  # the pack's shares counted once
        if part is None or part.reply is None or bought.completion is None:
            prior = [usage_from({"usage": part.usage})] if part is not None and part.usage is not None and first else []
            return await answered_alone(self._enricher, row, [*prior, *billed])
        return await self._enricher.finish_shared(planned, part.reply, bought.completion if first else None, billed)


@dataclass
class PackPlan:
    """What ``rows_per_request`` saves: the rows still to ask, alone and packed (offline estimates)."""

    rows: int = 0  # rows to ask that can be packed (not in the cache)
    alone_tokens: int = 0  # their input tokens, one request a row
    text_tokens: int = 0  # their own parts of a packed prompt
    shared_tokens: int = 0  # what a packed request sends once: the shared part and the ask to answer by id

    def add(self, estimator: TokenEstimator, body: dict[str, Any], prompt: int) -> None:
        """Count a row to ask (its request ``body``, estimated at ``prompt`` tokens alone), if it can be packed."""
        if pack_key(body) is None:
            return
        text = estimator.prompt_tokens(prompt_weights([body], ["1"])[0])
        self.rows += 1
        self.alone_tokens += prompt
        self.text_tokens += text
        self.shared_tokens = max(self.shared_tokens, prompt - text + estimator.prompt_tokens(len(INSTRUCTION)))

    def line(self, n: int) -> str:
        packs = -(-self.rows // n)
        packed = self.text_tokens + packs * self.shared_tokens
        return (f"rows_per_request {n}: the {self.rows:,} rows to ask go in ~{packs:,} requests instead of "
                f"{self.rows:,}, input tokens ~{packed:,} instead of ~{self.alone_tokens:,} (the shared part sent "
                "once a request; fewer when rows of a request differ in more than their last message)")
