"""Token usage: the normalised ``usage`` every dialect builds, read back as one :class:`TokenUsage`,
and what each provider publishes for the price of prompt-cache tokens.

The normalised ``usage`` (see :mod:`connector.dialects.base`) follows chat completions::

    {"prompt_tokens", "completion_tokens", "total_tokens",
     "prompt_tokens_details"?: {"cached_tokens"?, "cache_write_tokens"?, "cache_write_1h_tokens"?},
     "completion_tokens_details"?: {"reasoning_tokens"?}}

``prompt_tokens`` counts every input token of the request however it is priced (cache reads and
writes included, as OpenAI counts them; Anthropic reports them apart and its dialect adds them
up); ``completion_tokens`` counts every output token, reasoning included (Gemini reports thoughts
apart and its dialect adds them). The details say which part of each was a cache read, a cache
write (``cache_write_1h_tokens``: the part written for an hour, where the API says so) or reasoning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeGuard

from connector.digits import ascii_int


@dataclass(frozen=True, slots=True)
class CachePricing:
    """What a provider publishes for prompt-cache tokens, as fractions of its input price: used where
    ``prices`` gives a model's input and output price but not its cache rates."""

    read: float
    write: float
    write_1h: float
    said: str  # the published rule, for the dry run and the docs


# OpenAI bills cache writes as plain input, and cached input at 0.5x (gpt-4o), 0.25x (gpt-4.1) or 0.1x
# (gpt-5) depending on the model: 0.5 is the highest of them, so an unknown model is not under-priced.
OPENAI_CACHE = CachePricing(0.5, 1.0, 1.0, "OpenAI: cached input at most 0.5x input (the model's own "
                                        "cached-input price where known), cache writes at the input price")


def token_count(value: Any) -> int | None:
    """A token count as the integer it should be, or None when it cannot be read as one."""
    if value is None:  # the two common cases first: every reply reads several of them per row
        return None
    if type(value) is int:
        return value if value >= 0 else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and value >= 0 else None
    if isinstance(value, str):
        return ascii_int(value.strip())
    return None


def detail(usage: Mapping[str, Any], group: str, name: str) -> Any:
    """``usage[group][name]``, or None where the group is absent or not an object."""
    found = usage.get(group)
    return found.get(name) if isinstance(found, Mapping) else None


def known(**counts: int | None) -> dict[str, int]:
    return {name: value for name, value in counts.items() if isinstance(value, int)}



def usage_block(prompt: int | None, completion: int | None, total: int | None, *, cached_tokens: int | None = None,
                cache_write_tokens: int | None = None, cache_write_1h_tokens: int | None = None,
                reasoning_tokens: int | None = None) -> dict[str, Any]:
    """The normalised ``usage`` of these counts; a detail only where the API reported it."""
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}
    prompt_details = known(cached_tokens=cached_tokens, cache_write_tokens=cache_write_tokens,
                           cache_write_1h_tokens=cache_write_1h_tokens)
    if prompt_details:
        usage["prompt_tokens_details"] = prompt_details
    if isinstance(reasoning_tokens, int):
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return usage


class TokenUsage(NamedTuple):  # a NamedTuple: immutable, and built per row ~3x faster than a frozen dataclass
    """What one answer used, from its normalised ``usage`` (see :mod:`connector.dialects.base`).

    ``prompt`` counts every input token however priced; ``cached`` and ``cache_write`` are the parts
    of it read from and written to the provider's prompt cache (``cache_write_1h``: the part of the
    writes kept for an hour). ``completion`` counts every output token; ``reasoning`` is the part the
    model spent thinking. ``reported_cost`` is what the endpoint said it charged, when it says so.
    None: not reported. ``estimated``: some counts are an offline estimate, not the server's (an
    attempt cut before its usage arrived, :meth:`connector.endpoint.streaming.Reception.billed`).
    """

    prompt: int | None = None
    completion: int | None = None
    cached: int | None = None
    cache_write: int | None = None
    cache_write_1h: int | None = None
    reasoning: int | None = None
    reported_cost: float | None = None
    estimated: bool = False

    @property
    def reported(self) -> bool:
        """The server said what the answer used."""
        return self.prompt is not None or self.completion is not None


# Where chat-completions servers put the cache parts when not in prompt_tokens_details: LiteLLM passes
# Anthropic's names through, DeepSeek has its own; llama.cpp reports the prompt tokens it took from its
# KV cache in timings.cache_n.
_CACHED_ELSEWHERE = ("cache_read_input_tokens", "prompt_cache_hit_tokens")


def usage_from(reply: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> TokenUsage:
    """The token usage of a normalised reply; the cost a gateway reported (OpenRouter's ``usage.cost``,
    LiteLLM's ``x-litellm-response-cost`` header) included."""
    usage = reply.get("usage")
    cost = _cost(headers.get("x-litellm-response-cost")) if headers else None
    if not _is_mapping(usage):
        return TokenUsage(reported_cost=cost)
    prompt_details = _group(usage, "prompt_tokens_details")
    cached = token_count(prompt_details.get("cached_tokens"))
    for name in _CACHED_ELSEWHERE:
        cached = cached if cached is not None else token_count(usage.get(name))
    if cached is None and _is_mapping(timings := reply.get("timings")):
        cached = token_count(timings.get("cache_n"))
    write = token_count(prompt_details.get("cache_write_tokens"))
    if write is None:
        write = token_count(usage.get("cache_creation_input_tokens"))
    if cost is None:
        cost = _cost(usage.get("cost"))
    return TokenUsage(
        prompt=token_count(usage.get("prompt_tokens")), completion=token_count(usage.get("completion_tokens")),
        cached=cached, cache_write=write, cache_write_1h=token_count(prompt_details.get("cache_write_1h_tokens")),
        reasoning=token_count(_group(usage, "completion_tokens_details").get("reasoning_tokens")),
        reported_cost=cost)


_NO_GROUP: Mapping[str, Any] = {}


def _is_mapping(value: Any) -> TypeGuard[Mapping[str, Any]]:
    # A plain dict (every parsed reply) without isinstance(value, Mapping): an ABC check is a Python-level
    # __instancecheck__ call, several per row.
    return type(value) is dict or (value is not None and isinstance(value, Mapping))


def _group(usage: Mapping[str, Any], group: str) -> Mapping[str, Any]:
    """``usage[group]``, or an empty mapping where it is absent or not an object (as :func:`detail` reads it)."""
    found = usage.get(group)
    return found if _is_mapping(found) else _NO_GROUP


def _cost(value: Any) -> float | None:
    """A reported cost as a number, or None when it is absent or not a finite, non-negative number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if 0 <= number < float("inf") else None
