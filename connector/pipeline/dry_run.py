"""``--dry-run``: what a read would send and what it would cost, with nothing sent.

Every row goes through the same steps as in a real read (null policy, template,
context-window fit) up to the request body; then, instead of sending it:

- the request is counted, and rows the read would skip are counted by status;
- its input tokens are estimated offline (characters per token, no tokenizer
  download: :class:`~connector.endpoint.limits.TokenEstimator`), its output tokens are the
  body's ``max_tokens`` (an upper bound) or a default when it sets none;
- with ``prices`` it is priced, both as normal requests and through the provider's batch API (the
  batch price, or the normal one where ``prices`` gives none); an answer in the answer cache is free;
- the first few requests are kept as they would go on the wire (URL, headers,
  body), with every secret masked.

Retries, validation retries and fallbacks can only add requests; the report says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from connector.answers.prices import CONFIG, PriceList, Rates, billed_as_batch, cost_of, rates_of
from connector.config.batch import BATCH_SHAPES
from connector.config.packing_rules import AUTO_MAX_ROWS
from connector.dialects.embeddings import EmbeddingsDialect
from connector.dialects.usage import TokenUsage
from connector.endpoint.limits import TokenEstimator
from connector.errors import RowTooLong
from connector.jsonbytes import dumps
from connector.pipeline.context import RunContext
from connector.pipeline.enrich import Ask, RowEnricher
from connector.pipeline.pack_size import AutoSize
from connector.pipeline.resume import RowHasher, verified_rows
from connector.pipeline.row_packs import PackPlan
from connector.secrets import MASK, is_auth_header

SAMPLES = 3
_SAMPLE_CHARS = 4000


@dataclass
class Sample:
    """One request as it would be sent, secrets masked."""

    row_number: int
    method: str
    url: str
    headers: dict[str, str]
    body: str

    def text(self) -> str:
        headers = "; ".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.method} {self.url}\n  headers: {headers}\n  body: {self.body}"


@dataclass
class TaskPlan:
    """One task's share of a dry run (a config with ``tasks``)."""

    requests: int = 0
    cached: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    batch_cost: float = 0.0
    skipped: Counter[str] = field(default_factory=Counter)

    def add(self, prompt: int, output: int, cached: bool, cost: float, batch_cost: float) -> None:
        self.requests += 1
        self.cached += cached
        self.input_tokens += prompt
        self.output_tokens += output
        self.cost += cost
        self.batch_cost += batch_cost

    def line(self, name: str, priced: bool) -> str:
        skipped = ", ".join(f"{n} {status}" for status, n in sorted(self.skipped.items()))
        cost = f", ~{self.cost:.4f} as normal requests (~{self.batch_cost:.4f} batch)" if priced else ""
        return (f"task {name}: {self.requests:,} requests ({self.cached:,} in the answer cache), input tokens "
                f"~{self.input_tokens:,}, output tokens ~{self.output_tokens:,}{cost}"
                + (f"; skipped: {skipped}" if skipped else ""))


@dataclass
class DryRun:
    """What a read would do."""

    stream: str
    rows: int = 0
    requests: int = 0
    cached: int = 0  # requests whose answer is already in the answer cache (free)
    skipped: Counter[str] = field(default_factory=Counter)
    would_fail_at: int | None = None  # too_long_policy fail: the row that would stop the sync
    input_tokens: int = 0
    output_tokens: int = 0
    output_capped: int = 0  # requests whose output estimate is their max_tokens
    default_output: int = TokenEstimator().default_output
    cost: float = 0.0
    batch_cost: float = 0.0  # the same requests through the provider's batch API
    no_batch_price: set[str] = field(default_factory=set)  # models priced without a batch price
    priced: Counter[str] = field(default_factory=Counter)  # model -> requests priced
    price_sources: dict[str, str] = field(default_factory=dict)  # model -> where its price came from
    shared_tokens: int = 0  # the estimated tokens every prompt starts with (a provider's prompt cache can hold)
    cache_saving: float = 0.0  # per shared token: what reading it from the prompt cache saves, all requests
    caches: bool = True  # the endpoint caches a repeated prefix (Anthropic: only with prompt_cache)
    unpriced: Counter[str] = field(default_factory=Counter)  # model -> requests without a price
    chars_per_token: float = TokenEstimator().chars_per_token
    samples: list[Sample] = field(default_factory=list)
    rows_per_request: int = 1  # embeddings.inputs_per_request or rows_per_request: rows merged into one request
    batch_api: bool = True  # the API shape has a batch mode here (config.batch.BATCH_SHAPES)
    packing: PackPlan | None = None  # rows_per_request above 1: what packing saves
    auto: str | None = None  # rows_per_request auto: the rows per request it chose, and from what
    tasks: dict[str, TaskPlan] = field(default_factory=dict)  # with tasks: each task's share, in dependency order

    def lines(self) -> list[str]:
        """The report, one line per fact."""
        skipped = ", ".join(f"{n} {status}" for status, n in sorted(self.skipped.items())) or "none skipped"
        requests = f"{self.requests:,}"
        if self.rows_per_request > 1:  # at least this many: a group also ends where a limit or the model does
            least = -(-self.requests // self.rows_per_request)
            requests = f"{least:,} or more (up to {self.rows_per_request} rows each)"
        out = [f"dry run of {self.stream}: no request was sent",
               f"rows: {self.rows:,}; requests: {requests}; skipped: {skipped}"]
        if self.cached:
            out.append(f"already answered in the answer cache (free): {self.cached:,} of the requests")
        out.append(f"input tokens: ~{self.input_tokens:,} (offline estimate: {self.chars_per_token:g} characters "
                   "per token of the prompt's JSON; the server's tokenizer decides)")
        if self.requests:
            capped = self.output_capped
            if capped == self.requests and not self.output_tokens:
                how = "the API shape generates none: embeddings"
            elif capped == self.requests:
                how = "max_tokens of each request: an upper bound"
            elif capped == 0:
                how = f"no max_tokens: {self.default_output} per request assumed"
            else:
                how = f"max_tokens where set, else {self.default_output} per request assumed"
            out.append(f"output tokens: ~{self.output_tokens:,} ({how})")
        if self.priced:
            models = ", ".join(f"{m} from {_said(self.price_sources.get(m))}" for m in sorted(self.priced))
            batch = f", ~{self.batch_cost:.4f} through the provider's batch API" if self.batch_api else ""
            out.append(f"estimated cost: ~{self.cost:.4f} as normal requests{batch} (prices of {models}; answers in "
                       "the cache cost 0; every input token at the input price: prompt-cache hits can only lower it)")
            out.extend(self._cache_lines())
            if self.no_batch_price and self.batch_api:
                out.append(f"no batch price for: {', '.join(sorted(self.no_batch_price))} (its batch cost is shown at "
                           "the normal price); set batch_discount (0.5 at OpenAI, Anthropic, Gemini) or "
                           "batch_input_per_million and batch_output_per_million")
        if self.unpriced:
            models = ", ".join(f"{m} ({n} requests)" for m, n in self.unpriced.most_common())
            out.append(f"no price for: {models}; add them to prices (or \"*\") to estimate the cost")
        if self.would_fail_at is not None:
            out.append(f"row {self.would_fail_at} does not fit context_window and too_long_policy is fail: "
                       "a real read stops there")
        out.extend(self._task_lines())
        if self.auto is not None:
            out.append(self.auto)
        if self.packing is not None:
            out.append(self.packing.line(self.rows_per_request))
        out.append("retries, validation retries and fallback models can add requests beyond these")
        return out

    def _task_lines(self) -> list[str]:
        if not self.tasks:
            return []
        lines = [plan.line(name, bool(self.priced)) for name, plan in self.tasks.items()]
        return [*lines, "a task using another's answer is estimated with that answer as long as its output "
                        "estimate (max_tokens, or the default), in characters at the estimate's characters per "
                        "token, unless the answer is in the answer cache; the figures above are all tasks' total"]

    def _cache_lines(self) -> list[str]:
        if self.shared_tokens < _WORTH_CACHING or not self.cache_saving:
            return []
        if not self.caches:
            return [f"every prompt starts with the same ~{self.shared_tokens:,} tokens: set prompt_cache so that "
                    "Anthropic caches them (cache reads cost 0.1x input)"]
        low = self.cost - self.shared_tokens * self.cache_saving
        return [f"with prompt caching: every prompt starts with the same ~{self.shared_tokens:,} tokens; read from "
                f"the provider's prompt cache after the first request they bring the estimate to ~{low:.4f}: the "
                f"cost lies between ~{low:.4f} and ~{self.cost:.4f}, as far as the token estimate holds (hosted "
                "providers cache only prefixes of 1,024 tokens or more)"]

    def log_lines(self) -> Iterator[str]:
        """The report as log lines: the facts, then each sample request."""
        yield from self.lines()
        for i, sample in enumerate(self.samples, 1):
            yield f"dry run request {i} (row {sample.row_number}): {sample.text()}"

    def text(self) -> str:
        """The report for a person."""
        parts = ["\n".join(self.lines())]
        for i, sample in enumerate(self.samples, 1):
            parts.append(f"request {i} (row {sample.row_number}):\n  {sample.text()}")
        return "\n\n".join(parts) + "\n"


def _said(source: str | None) -> str:
    return "config prices" if source in (None, CONFIG) else f"{source}'s price table"


_WORTH_CACHING = 128  # shared tokens below which the dry run does not speak of caching (little to save)


def _common_prefix(first: str, text: str, limit: int) -> int:
    """The length of the common start of ``first`` and ``text``, at most ``limit``."""
    end = min(limit, len(text))
    if first[:end] == text[:end]:
        return end
    low, high = 0, end  # binary search on the longest equal start
    while low < high:
        middle = (low + high + 1) // 2
        if first[:middle] == text[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _model(body: dict[str, Any]) -> str:
    return str(body.get("model") or "")


class Planner:
    """Renders rows into requests and adds them up, sending nothing."""

    def __init__(self, ctx: RunContext, samples: int = SAMPLES) -> None:
        self._prices = PriceList.at(ctx.parts.rows.prices, ctx.client.url)
        self._enricher = ctx.enricher
        self._tasks = ctx.tasks  # with tasks: each row's requests are its tasks' (dependency order)
        self._dialect = ctx.client.dialect
        self._url = ctx.client.url
        self._redact = ctx.redact
        self._samples = samples
        self._estimator = TokenEstimator()
        self._cache = ctx.cache  # only a cache file that exists: a dry run creates nothing
        dialect = self._dialect  # a shape that merges rows into one request (embeddings) says how many
        packing = ctx.parts.run.rows_per_request
        # auto: measured on the rows to ask as the run measures them, chosen when all rows are counted (finished)
        self._auto = AutoSize.for_window(ctx.parts.rows.context_window, self._estimator) if packing == "auto" else None
        packing = AUTO_MAX_ROWS if packing == "auto" else packing
        merged = dialect.limits.inputs if isinstance(dialect, EmbeddingsDialect) else packing
        self.result = DryRun(ctx.parts.run.stream_name, chars_per_token=self._estimator.chars_per_token,
                             default_output=self._estimator.default_output, rows_per_request=merged,
                             packing=PackPlan() if packing > 1 else None,
                             caches=self._dialect.name != "anthropic_messages" or ctx.parts.request.prompt_cache,
                             batch_api=dialect.name in BATCH_SHAPES)
        self._first_prompt: str | None = None  # the first request's prompt text, to find the shared prefix
        self._shared_chars = 0

    def finished(self) -> DryRun:
        """The report, once every row is counted (with auto: the rows per request it chose)."""
        if self._auto is not None:
            result = self.result
            result.rows_per_request, result.auto = self._auto.rows(), self._auto.line()
            if result.rows_per_request < 2:
                result.packing = None
        return self.result

    async def add(self, item: tuple[int, dict[str, Any]]) -> None:
        self.result.rows += 1
        if self._tasks is None:
            await self._request(self._enricher, item)
            return
        answers: dict[str, dict[str, Any] | None] = {}  # a task's answer columns, real or estimated
        for task in self._tasks.tasks:  # dependency order: what a task uses is known when it comes
            tally = self.result.tasks.setdefault(task.name, TaskPlan())
            if any(answers[name] is None for name in task.needs):
                tally.skipped["skipped_upstream"] += 1
                answers[task.name] = None
                continue
            used = {f"{name}.{column}": value for name in task.needs for column, value in (answers[name] or {}).items()}
            answers[task.name] = await self._request(task.enricher, (item[0], {**item[1], **used}), tally)

    async def _request(self, enricher: RowEnricher, item: tuple[int, dict[str, Any]],
                       tally: TaskPlan | None = None) -> dict[str, Any] | None:
        """Count the request of ``item`` (also into a task's ``tally``); the answer's columns as a task using
        them sees them: the cached answer's, or each its output estimate long (None: no request)."""
        result = self.result
        try:
            planned = enricher.plan(item)
        except RowTooLong:
            if result.would_fail_at is None:
                result.would_fail_at = item[0] + 1
            result.skipped["too_long_fail"] += 1
            if tally is not None:
                tally.skipped["too_long_fail"] += 1
            return None
        if not isinstance(planned, Ask):
            outcome = planned.outcome
            result.skipped[outcome.error_class or outcome.status] += 1  # bad_input: a value that does not fit
            if tally is not None:
                tally.skipped[outcome.error_class or outcome.status] += 1
            return None
        body = planned.body
        result.requests += 1
        # As the context-window fit counts: the text, and the estimate of the row's images and documents.
        prompt = self._estimator.prompt_tokens(self._dialect.prompt_chars(body)) + planned.media_tokens
        cap = self._dialect.max_output_tokens(body)  # in the API shape's own field
        cap = cap if cap is not None and cap >= 0 else None  # 0: the shape generates nothing (embeddings)
        output = cap if cap is not None else self._estimator.default_output
        result.output_capped += cap is not None
        reply = self._cached(enricher, body)
        result.cached += reply is not None
        if result.packing is not None and reply is None:
            result.packing.add(self._estimator, body, prompt)
            if self._auto is not None:
                self._auto.add_body(self._dialect, self._estimator, body)
        result.input_tokens += prompt
        result.output_tokens += output
        cost, batch_cost = result.cost, result.batch_cost
        self._price(_model(body), body, TokenUsage(prompt, output), reply is not None)
        if tally is not None:
            tally.add(prompt, output, reply is not None, result.cost - cost, result.batch_cost - batch_cost)
        if len(result.samples) < self._samples:
            result.samples.append(await self._sample(item[0] + 1, body))
        columns = enricher.columns_of(reply) if reply is not None else None
        # Not answered yet: each column as long as the answer may be (its output estimate in characters).
        return columns or dict.fromkeys(enricher.output_columns, "x" * int(output * self._estimator.chars_per_token))

    def _price(self, model: str, body: dict[str, Any], usage: TokenUsage, cached: bool) -> None:
        """Add the request's estimated cost, as a normal request and through the batch API."""
        result = self.result
        found = self._prices.lookup(model)
        if found is None:
            if self._prices.configured or model:
                result.unpriced[model or "(no model)"] += 1
            return
        price, result.price_sources[model or "*"] = found
        result.priced[model or "*"] += 1
        if not price.has_batch_price:
            result.no_batch_price.add(model or "*")
        if not cached:
            tier, cache = body.get("service_tier"), self._dialect.CACHE_PRICING  # flex is billed at the batch price
            result.cost += cost_of(price, usage, cache, billed_as_batch(tier))
            result.batch_cost += cost_of(price, usage, cache, billed_as_batch(tier, batch=True))
            self._share(body, rates_of(price, cache, billed_as_batch(tier)))

    def _share(self, body: dict[str, Any], rates: Rates) -> None:
        """Narrow the prefix every prompt shares to this one's; after the first request, what reading
        that prefix from the prompt cache would save (less the first request's write premium)."""
        text = dumps([body.get(self._dialect.system_key or ""), body.get(self._dialect.conversation_key)]).decode()
        if self._first_prompt is None:
            self._first_prompt, self._shared_chars = text, len(text)
            self.result.cache_saving -= (rates.cache_write - rates.input) / 1_000_000  # writing it costs extra
        else:
            self._shared_chars = _common_prefix(self._first_prompt, text, self._shared_chars)
            self.result.cache_saving += (rates.input - rates.cached_input) / 1_000_000
        self.result.shared_tokens = int(self._shared_chars / self._estimator.chars_per_token)

    def _cached(self, enricher: RowEnricher, body: dict[str, Any]) -> dict[str, Any] | None:
        """The answer to ``body`` in the answer cache, if any (one bought under a smaller max_tokens too)."""
        if self._cache is None:
            return None
        return enricher.cached_answer(body)

    async def _sample(self, row_number: int, body: dict[str, Any]) -> Sample:
        prepared = self._dialect.prepare(body)
        payload = dumps(prepared.body)
        try:
            headers = dict(await self._dialect.headers("POST", prepared.url, payload))
        except Exception:  # e.g. SigV4 without credentials: signing happens at send time
            headers = {"(auth)": "signed when sent"}
        shown = {}
        for name, value in headers.items():
            if is_auth_header(name):
                scheme = value.split(" ", 1)[0] if " " in value else ""
                value = f"{scheme} {MASK}".strip()
            shown[name] = self._redact(value)
        text = payload.decode()
        if len(text) > _SAMPLE_CHARS:
            text = text[:_SAMPLE_CHARS] + f"... ({len(text):,} characters in all)"
        return Sample(row_number, "POST", self._redact(prepared.url), shown, self._redact(text))


async def plan(rows: Iterator[tuple[int, dict[str, Any]]] | AsyncIterator[tuple[int, dict[str, Any]]],
               planner: Planner) -> DryRun:
    """Add up every row; returns the report."""
    if isinstance(rows, AsyncIterator):
        async for item in rows:
            await planner.add(item)
    else:
        for item in rows:
            await planner.add(item)
    return planner.finished()


async def dry_run_report(ctx: RunContext) -> list[str]:
    """The dry-run report's lines for the context's table from its start on, secrets masked. Rows 1..start
    are read first and checked against the STATE's fingerprint, as a read checks them: a state that does
    not belong to this input is the read's StateError here too, so the dry run does not price the wrong rows."""
    table = ctx.input
    rows = await verified_rows(table, RowHasher(table.files), ctx.start, ctx.saved_input, ctx.parts.run.stream_name,
                               lambda: False, ctx.parts.input.limit)
    report = await plan(rows, Planner(ctx))
    return [ctx.redact(line) for line in report.log_lines()]
