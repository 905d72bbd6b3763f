"""An answer judged: the row's :class:`~connector.answers.outcomes.RowOutcome` from its reply.

The status comes from how the answer ended and whether it could be used: ``truncated`` when
cut off by the token limit (never ``ok``), ``error`` of class ``content_filter`` when the
provider withheld it, ``error`` of class ``bad_reply`` when the reply holds no text and no tool
call (``content_filter`` for a refusal), ``error`` of class ``validation`` when a structured
answer could not be read; else ``ok``. Tokens and cost are what this run bought for the row (every attempt that
got an answer); for an answer from the cache, or shared with an identical row, the tokens are
what that answer had used and the cost is 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.answers.extract import CONTENT_PATH, dig
from connector.answers.outcomes import RowOutcome, as_text, model_name
from connector.answers.prices import PriceList, Spend
from connector.dialects.replies import missing_answer
from connector.dialects.usage import TokenUsage, usage_from
from connector.endpoint.client import Completion


def finish_reason(reply: Mapping[str, Any]) -> str | None:
    """Why the answer ended (``stop``, ``length``, ...), as the normalised reply says."""
    value = dig(reply, ("choices", 0, "finish_reason"))
    return as_text(value) if value is not None else None


def content_of(reply: Mapping[str, Any]) -> Any:
    """The answer's text (None when the reply has none)."""
    return dig(reply, CONTENT_PATH)


def charge(outcome: RowOutcome, used: TokenUsage, spend: Spend, prices: PriceList, model: object) -> None:
    """The row's tokens (``used``) and cost (``spend``'s, at ``prices``) into its outcome."""
    outcome.prompt_tokens, outcome.completion_tokens = used.prompt, used.completion
    outcome.cached_tokens, outcome.cache_write_tokens, outcome.reasoning_tokens = used.cached, used.cache_write, \
        used.reasoning
    outcome.cost, outcome.cost_source = spend.row_cost(prices, model)


def judged(reply: Mapping[str, Any], asked_model: object, problem: str | None, *, attempts: int, cached: bool,
           completion: Completion | None, spend: Spend, prices: PriceList, request_id: str | None = None) -> RowOutcome:
    """The outcome of a row answered by ``reply`` (``problem``: why its structured answer cannot be used)."""
    finish = finish_reason(reply)
    outcome = RowOutcome("ok", finish_reason=finish, attempts=attempts, cached=cached,
                         model=model_name(reply.get("model") or asked_model))
    if finish == "length":
        outcome.status, outcome.error = "truncated", "the answer was cut off by the token limit (finish_reason length)"
    elif finish == "content_filter":
        outcome.status, outcome.error_class = "error", "content_filter"
        outcome.error = "the provider's content filter withheld the answer"
    elif (missing := missing_answer(reply)) is not None:  # no text: never ok with an empty answer
        outcome.status, (outcome.error_class, outcome.error) = "error", missing
    elif problem:
        outcome.status, outcome.error_class, outcome.error = "error", "validation", problem
    if problem and outcome.status == "error":  # kept so the unusable answer is not lost
        content = content_of(reply)
        outcome.raw_answer = content if isinstance(content, str) or content is None else str(content)
    # What this run bought for the row, every attempt included (unknown without usage); from the cache or
    # shared with an identical row: what that answer had used.
    charge(outcome, spend.usage() if spend.paid else usage_from(reply), spend, prices, asked_model)
    outcome.request_id = request_id
    if completion is not None:
        outcome.latency_ms = round(completion.latency_ms, 1)
        outcome.ttft_ms = None if completion.ttft_ms is None else round(completion.ttft_ms, 1)
    return outcome
