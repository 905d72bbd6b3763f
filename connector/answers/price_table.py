"""Public list prices of well-known models, from pydantic's ``genai-prices`` (its bundled snapshot).

Used for a model that ``prices`` in the config does not price, and only at a provider's own API
address as genai-prices recognises it (api.openai.com, api.anthropic.com,
generativelanguage.googleapis.com, openrouter.ai, ...): a self-hosted server on localhost or a
private address is never priced at a hosted provider's rate. The prices are those of the snapshot
the pinned package version ships, so a run works offline and two runs of one version price alike;
the package's auto-update (which would fetch a newer table) is never started. A tiered price (for
prompts over 200k tokens) is taken at its base tier. The batch price is the table's ``batch``
variant where it has one.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from connector.config.sections import Price

PACKAGE = "genai-prices"


@cache
def source() -> str | None:
    """``genai-prices <version>``, or None when the package is not installed."""
    try:
        return f"{PACKAGE} {version(PACKAGE)}"
    except PackageNotFoundError:
        return None


class PriceTable:
    """The table's prices at one endpoint URL, looked up once per model."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._listed = may_be_listed(url)
        self._found: dict[str, Price | None] = {}

    def price(self, model: str) -> Price | None:
        """``model``'s list price at this endpoint's provider; None when the table has none."""
        if model not in self._found:
            self._found[model] = _lookup(self._url, model) if self._listed and source() is not None else None
        return self._found[model]


def may_be_listed(url: str) -> bool:
    """Whether the table can know the provider at ``url``, decided without loading it: loading it costs
    ~0.2-0.3 s of CPU, paid on a run's first answer, which a local server (``http://localhost``) never
    needs. Every provider of the bundled table answers at an ``https://`` address; Azure's alone also
    admits ``http://``, on host names with ``azure`` in them (tests/test_price_table.py checks the
    table's patterns against this)."""
    lowered = url.lower()
    return lowered.startswith("https://") or "azure" in lowered


def _lookup(url: str, model: str) -> Price | None:
    from genai_prices import data_snapshot  # imported only when a model needs it: ~0.3 s of CPU

    snapshot = data_snapshot.get_snapshot()
    try:
        provider = snapshot.find_provider(None, None, url)
        _provider, info = snapshot.find_provider_model(model, provider, None, None)
    except LookupError:
        return None
    now = datetime.now(timezone.utc)
    return _as_price(info.get_prices(now), info.get_prices(now, {"processing": "batch"}))


def _as_price(standard: Any, batch: Any) -> Price | None:
    rates = {name: _rate(standard, name) for name in ("input_mtok", "output_mtok", "cache_read_mtok",
                                                      "cache_write_mtok")}
    if rates["input_mtok"] is None or rates["output_mtok"] is None:
        return None  # priced per image, per second, ...: not a token price
    batch_input, batch_output = _rate(batch, "input_mtok"), _rate(batch, "output_mtok")
    has_batch = (batch_input, batch_output) != (rates["input_mtok"], rates["output_mtok"])
    return Price(input_per_million=rates["input_mtok"], output_per_million=rates["output_mtok"],
                 cached_input_per_million=rates["cache_read_mtok"], cache_write_per_million=rates["cache_write_mtok"],
                 batch_input_per_million=batch_input if has_batch else None,
                 batch_output_per_million=batch_output if has_batch else None)


def _rate(prices: Any, name: str) -> float | None:
    value = getattr(prices, name, None)
    value = getattr(value, "base", value)  # TieredPrices: the base tier
    return float(value) if isinstance(value, (Decimal, int, float)) else None
