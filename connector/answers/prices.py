"""What answers cost: the one price formula, used by the row enricher, the dry run and the batch path.

A price is per million tokens: ``prices`` in the config (by model name, else ``"*"``), else the
public list price of genai-prices' table at the provider's own address
(:mod:`connector.answers.price_table`), else none (:class:`PriceList`). An answer
from a provider batch, or from OpenAI's ``flex`` tier (billed at batch rates), is priced at the
batch price (:meth:`connector.config.sections.Price.rates`). Prompt-cache tokens are priced at the
entry's cache rates, else at the API shape's published ratio to the input price
(:class:`~connector.dialects.usage.CachePricing`); a batch price scales them as it scales the input.
A cost the endpoint reports for an answer (OpenRouter's ``usage.cost``, LiteLLM's
``x-litellm-response-cost``) is taken as it is. A model without a price has no cost (None), never 0.

Per answer, with ``r`` the rates per million tokens and the counts of
:class:`~connector.dialects.usage.TokenUsage`::

    (fresh * r.input + cached * r.cached_input + write_5m * r.cache_write
     + write_1h * r.cache_write_1h + completion * r.output) / 1e6
    fresh = prompt - cached - cache_write;  write_5m = cache_write - cache_write_1h

This is each provider's own bill: OpenAI and Gemini count cached tokens inside the prompt,
Anthropic apart (its dialect adds them into the prompt, so ``fresh`` is its ``input_tokens``);
reasoning tokens are part of ``completion`` and billed as output everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from connector.answers.price_table import PriceTable, source
from connector.config.sections import Price
from connector.dialects.usage import CachePricing, TokenUsage

Prices = Mapping[str, Price]

CONFIG = "config"  # the price came from `prices`
REPORTED = "endpoint"  # the endpoint reported the cost itself
ESTIMATED = "estimated"  # added to a source: some tokens priced are an estimate (an attempt cut before its usage)


def price_for(prices: Prices, model: object) -> Price | None:
    """The price ``prices`` in the config gives ``model``: its own, else the ``"*"`` one, else None."""
    return prices.get(str(model)) or prices.get("*")


class PriceList:
    """Where a model's price comes from: ``prices`` in the config (the model's own entry, else ``"*"``), else
    the public table at the endpoint's provider (None: no table, as in tests of the config alone)."""

    def __init__(self, configured: Prices, table: PriceTable | None = None) -> None:
        self.configured = configured
        self._table = table
        self._found: dict[str, tuple[Price, str] | None] = {}  # model -> its price: looked up once a run

    @classmethod
    def at(cls, configured: Prices, url: str) -> PriceList:
        """The prices of a run whose endpoint is ``url``."""
        return cls(configured, PriceTable(url))

    def lookup(self, model: object) -> tuple[Price, str] | None:
        """``model``'s price and where it came from (``config``, ``genai-prices <version>``), or None."""
        name = str(model)
        if name not in self._found:
            listed = self._table.price(name) if self._table is not None else None
            price = price_for(self.configured, name)
            self._found[name] = (_cache_ratios_of(price, listed), CONFIG) if price is not None \
                else (listed, source() or "") if listed is not None else None
        return self._found[name]


def billed_as_batch(tier: object, batch: bool = False) -> bool:
    """An answer billed at the batch price: from a provider batch, or asked on OpenAI's ``flex`` tier."""
    return batch or tier == "flex"


class Rates(NamedTuple):  # a NamedTuple: immutable, and built per row ~3x faster than a frozen dataclass
    """One model's prices per million tokens."""

    input: float
    output: float
    cached_input: float
    cache_write: float
    cache_write_1h: float

    def cost(self, usage: TokenUsage) -> float:
        """What ``usage`` costs at these rates (the module docstring's formula)."""
        prompt = usage.prompt or 0
        cached = min(usage.cached or 0, prompt)
        write = min(usage.cache_write or 0, prompt - cached)
        long = min(usage.cache_write_1h or 0, write)
        fresh = prompt - cached - write
        total = (fresh * self.input + cached * self.cached_input + (write - long) * self.cache_write
                 + long * self.cache_write_1h + (usage.completion or 0) * self.output)
        return total / 1_000_000


def rates_of(price: Price, cache: CachePricing, batch: bool = False) -> Rates:
    """``price`` as rates, at the batch price when ``batch``; cache rates the price does not give follow
    the provider's published ratios, and scale with the batch input price."""
    per_input, per_output = price.rates(batch)
    scale = price.input_scale(batch)

    def own(rate: float | None, ratio: float) -> float:
        return (rate if rate is not None else price.input_per_million * ratio) * scale

    # One-hour cache writes (Anthropic's alone) always follow the published ratio: prices has no field for them.
    return Rates(per_input, per_output, own(price.cached_input_per_million, cache.read),
                 own(price.cache_write_per_million, cache.write), own(None, cache.write_1h))


def cost_of(price: Price, usage: TokenUsage, cache: CachePricing, batch: bool = False) -> float:
    """What ``usage`` cost at ``price`` (the batch price when ``batch``), cache tokens at their own rates."""
    return rates_of(price, cache, batch).cost(usage)


class Spend:
    """What the answers bought for one row cost, summed over every attempt that got one."""

    __slots__ = ("cache_write_tokens", "cached_tokens", "completion_tokens", "cost", "estimated", "paid", "priced",
                 "prompt_tokens", "reasoning_tokens", "reported", "sources")

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens: int | None = None  # None: no answer said
        self.cache_write_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        self.cost = 0.0
        self.paid = 0  # answers bought (not from the cache, not shared with an identical row)
        self.reported = 0  # of those, the answers whose usage said what they used
        self.priced = 0  # of those, the answers with a known cost
        self.sources: set[str] = set()  # where their costs came from
        self.estimated = False  # some tokens are an offline estimate (an attempt cut before its usage came)

    def add(self, prices: PriceList, cache: CachePricing, model: object, tier: object, usage: TokenUsage,
            batch: bool = False) -> None:
        """One answer bought, with the usage its reply reported (or, for an attempt cut before its end, what
        it was billed for: ``usage.estimated`` when some counts are estimates)."""
        self.paid += 1
        self.estimated = self.estimated or usage.estimated
        self.reported += usage.reported
        self.prompt_tokens += usage.prompt or 0
        self.completion_tokens += usage.completion or 0
        self.cached_tokens = _plus(self.cached_tokens, usage.cached)
        self.cache_write_tokens = _plus(self.cache_write_tokens, usage.cache_write)
        self.reasoning_tokens = _plus(self.reasoning_tokens, usage.reasoning)
        found = prices.lookup(model)
        if usage.reported_cost is not None:
            self._priced(usage.reported_cost, REPORTED)
        elif found is not None and usage.reported:
            self._priced(cost_of(found[0], usage, cache, billed_as_batch(tier, batch)), found[1])

    def _priced(self, cost: float, source: str) -> None:
        self.priced += 1
        self.cost += cost
        self.sources.add(source)

    def usage(self) -> TokenUsage:
        """The tokens of every answer bought, added up; all None when no answer said what it used."""
        if not self.reported:
            return TokenUsage()
        return TokenUsage(self.prompt_tokens, self.completion_tokens, self.cached_tokens, self.cache_write_tokens,
                          None, self.reasoning_tokens)

    def row_cost(self, prices: PriceList, model: object) -> tuple[float | None, str | None]:
        """The row's ``_cost`` and ``_cost_source``: what this run paid for it (0 for a cached answer of a
        priced model); None when any answer bought for it has no known cost (no price, or no usage). The
        source ends in ``+estimated`` when some of the tokens priced are an offline estimate."""
        if not self.paid:
            found = prices.lookup(model)
            return (0.0, found[1]) if found is not None else (None, None)
        if self.priced < self.paid:
            return None, None  # bought, but not all of it can be priced: unknown, not free
        return self.cost, "+".join([*sorted(self.sources), *([ESTIMATED] if self.estimated else [])])


def _cache_ratios_of(price: Price, listed: Price | None) -> Price:
    """A config price without cache rates takes the listed model's own ratios to its input price (OpenAI's
    cached input is 0.5x, 0.25x or 0.1x input by model), where the table lists the model."""
    if listed is None or not listed.input_per_million:
        return price
    update = {}
    for field in ("cached_input_per_million", "cache_write_per_million"):
        rate = getattr(listed, field)
        if getattr(price, field) is None and rate is not None:
            update[field] = price.input_per_million * rate / listed.input_per_million
    return price.model_copy(update=update) if update else price


def _plus(total: int | None, part: int | None) -> int | None:
    return total if part is None else (total or 0) + part
