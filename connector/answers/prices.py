"""What answers cost: the one price formula, used by the row enricher, the dry run and the batch path.

A price is per million tokens (``prices`` in the config, by model name or ``"*"``); an answer
from a provider batch, or from OpenAI's ``flex`` tier (billed at batch rates), is priced at the
batch price (:meth:`connector.config.sections.Price.rates`).
"""

from __future__ import annotations

from collections.abc import Mapping

from connector.config.sections import Price

Prices = Mapping[str, Price]


def price_for(prices: Prices, model: object) -> Price | None:
    """The price of ``model``: its own, else the ``"*"`` one, else None."""
    return prices.get(str(model)) or prices.get("*")


def cost_of(price: Price, prompt_tokens: int | None, completion_tokens: int | None, batch: bool = False) -> float:
    """What ``prompt_tokens`` in and ``completion_tokens`` out cost at ``price`` (the batch price when ``batch``)."""
    per_input, per_output = price.rates(batch)
    return ((prompt_tokens or 0) * per_input + (completion_tokens or 0) * per_output) / 1_000_000


def billed_as_batch(tier: object, batch: bool = False) -> bool:
    """An answer billed at the batch price: from a provider batch, or asked on OpenAI's ``flex`` tier."""
    return batch or tier == "flex"


class Spend:
    """What the answers bought for one row cost, summed over every attempt that got one."""

    __slots__ = ("completion_tokens", "cost", "paid", "prompt_tokens", "reported")

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost = 0.0
        self.paid = 0  # answers bought (not from the cache, not shared with an identical row)
        self.reported = 0  # of those, the answers whose usage said what they cost

    def add(self, prices: Prices, model: object, tier: object, prompt: int | None, output: int | None,
            batch: bool = False) -> None:
        """One answer bought, with the usage its reply reported (None: not said)."""
        self.paid += 1
        self.reported += prompt is not None or output is not None
        self.prompt_tokens += prompt or 0
        self.completion_tokens += output or 0
        price = price_for(prices, model)
        if price is not None:
            self.cost += cost_of(price, prompt, output, billed_as_batch(tier, batch))

    def row_cost(self, prices: Prices, model: object) -> float | None:
        """The row's ``_cost``: what this run paid for it (0 for a cached answer), None without prices."""
        if not prices or (str(model) not in prices and "*" not in prices and not self.cost):
            return None
        if self.paid and not self.reported:
            return None  # bought, but the server did not say what it used: unknown, not free
        return self.cost
