"""The record contract: metadata columns every enriched record carries, a row's record, and the run tally.

Names and meanings here are public (documented in docs/PROMISES.md, filtered on in
downstream SQL): add columns, never rename them. Status and error-class values, and the
typed outcome behind the metadata columns, are in :mod:`connector.answers.outcomes`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from connector.answers.outcomes import ERROR_CLASSES, STATUSES, RowOutcome

Record = dict[str, Any]

ROW_NUMBER = "_row_number"

META_COLUMNS: dict[str, dict[str, Any]] = {
    ROW_NUMBER: {"type": "integer", "description": "1-based position of the row in the input"},
    "_status": {"type": "string", "enum": list(STATUSES), "description": "what happened to the row"},
    "_error_class": {"type": ["null", "string"], "enum": [None, *ERROR_CLASSES],
                     "description": "why the row failed, as a stable class"},
    "_error": {"type": ["null", "string"], "description": "why the row failed or was skipped, in words"},
    "_finish_reason": {"type": ["null", "string"]},
    "_model": {"type": ["null", "string"], "description": "model that answered, as the server reports it; "
                                                   "when every model failed, the last one asked"},
    "_attempts": {"type": "integer", "description": "HTTP attempts for this row (0: from cache or skipped)"},
    "_cached": {"type": "boolean", "description": "the answer came from the answer cache (paid for earlier)"},
    "_prompt_tokens": {"type": ["null", "integer"],
                       "description": "input tokens of every answer bought for the row, however priced (cache "
                                      "reads and writes included; cached: what it used)"},
    "_completion_tokens": {"type": ["null", "integer"],
                           "description": "output tokens of every answer bought for the row, reasoning included "
                                          "(cached: what it used)"},
    "_cached_tokens": {"type": ["null", "integer"],
                       "description": "the part of _prompt_tokens read from the provider's prompt cache "
                                      "(null: not reported)"},
    "_cache_write_tokens": {"type": ["null", "integer"],
                            "description": "the part of _prompt_tokens written to the provider's prompt cache "
                                           "(null: not reported)"},
    "_reasoning_tokens": {"type": ["null", "integer"],
                          "description": "the part of _completion_tokens the model spent reasoning "
                                         "(null: not reported)"},
    "_cost": {"type": ["null", "number"],
              "description": "what this run paid for the row, every attempt included; null when unknown "
                             "(no price for the model, or no usage)"},
    "_cost_source": {"type": ["null", "string"],
                     "description": "where _cost came from: config (prices), endpoint (the cost it reported), "
                                    "genai-prices <version> (the public price table)"},
    "_request_id": {"type": ["null", "string"],
                    "description": "the provider's id of the request that got the answer (its request-id "
                                   "header), for a support ticket; null from the cache or when not sent"},
    "_latency_ms": {"type": ["null", "number"], "description": "request to full answer, last attempt"},
    "_ttft_ms": {"type": ["null", "number"], "description": "time to first token (streaming only)"},
    "_raw_answer": {"type": ["null", "string"],
                    "description": "the last answer, kept when a structured answer could not be used"},
    "_batch_id": {"type": ["null", "string"],
                  "description": "the provider batch that answered the row (batch mode); null for a normal request"},
    "_input_truncated": {"type": ["null", "string"],
                         "description": "too_long_policy truncate cut a cell to fit the context window: the column "
                                        "and how many of its characters were sent; null when the prompt was whole"},
}


@dataclass(slots=True)
class Enriched:
    """One row done: its values so far (the input row's, ``_row_number``, the output columns) and its outcome."""

    number: int  # 1-based position in the input
    values: Record
    outcome: RowOutcome

    def record(self) -> Record:
        """The record: the values, then the metadata columns of the outcome (the one place they are made)."""
        self.values.update(self.outcome.columns())
        return self.values


@dataclass
class Tally:
    """Counts for the run summary, observed in input order from the records."""

    by_status: Counter[str] = field(default_factory=Counter)
    by_error_class: Counter[str] = field(default_factory=Counter)
    skipped: int = 0  # failed rows left out by on_row_error skip
    cached: int = 0
    batched: int = 0  # a usable answer from a batch (batch mode, --import-batch); failed batch items are errors
    retried: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of prompt_tokens, read from the provider's prompt cache
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float = 0.0
    priced: bool = False
    cost_sources: Counter[str] = field(default_factory=Counter)  # rows by where their cost came from
    unpriced: Counter[str] = field(default_factory=Counter)  # model -> rows bought without a known cost
    first_failures: dict[str, list[str]] = field(default_factory=dict)
    # Bought for rows a spend guard stopped the run before (not emitted): an answer kept in the answer
    # cache for a row after the stop, an attempt of the refused row cut before its answer.
    unemitted_tokens: tuple[int, int] = (0, 0)  # in, out
    unemitted_cost: float | None = 0.0  # None: some of it has no known cost

    def observe_unemitted(self, outcome: RowOutcome) -> None:
        """A row's outcome bought in this run but not emitted (the spend guard stopped before it)."""
        if outcome.cached or not outcome.attempts:
            return
        tokens_in, tokens_out = self.unemitted_tokens
        self.unemitted_tokens = (tokens_in + (outcome.prompt_tokens or 0),
                                 tokens_out + (outcome.completion_tokens or 0))
        cost = self.unemitted_cost
        self.unemitted_cost = None if cost is None or outcome.cost is None else cost + outcome.cost

    def _unemitted_text(self) -> str:
        if self.unemitted_tokens == (0, 0):
            return ""
        cost = self.unemitted_cost
        priced = f", cost {cost:.4f}" if cost is not None else ", cost unknown" if self.priced else ""
        return (f"; bought for rows not emitted (the spend guard stopped before them: answers kept in the answer "
                f"cache, attempts cut before their answer), not counted above: tokens in {self.unemitted_tokens[0]}, "
                f"out {self.unemitted_tokens[1]}{priced}")

    @property
    def ok(self) -> int:
        return self.by_status["ok"]

    @property
    def failed(self) -> int:
        return self.by_status["error"]

    @property
    def rows(self) -> int:
        return sum(self.by_status.values())

    @property
    def answered(self) -> int:
        """Rows that got an answer (ok or truncated)."""
        return self.by_status["ok"] + self.by_status["truncated"]

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def first_errors(self) -> list[str]:
        return [line for lines in self.first_failures.values() for line in lines]

    def observe(self, row: Enriched) -> None:
        outcome = row.outcome
        self.by_status[outcome.status] += 1
        if outcome.error_class:
            self.by_error_class[outcome.error_class] += 1
            examples = self.first_failures.setdefault(outcome.error_class, [])
            if len(examples) < 3:
                examples.append(f"row {row.number}: {outcome.error}")
        if outcome.batch_id and outcome.status in ("ok", "truncated"):
            self.batched += 1
        if outcome.cached:
            self.cached += 1
        elif outcome.attempts > max(outcome.requests, 1):
            self.retried += 1
        if not outcome.cached:
            self._add_tokens(outcome)
        if outcome.cost is not None:
            self.priced = True
            self.cost += outcome.cost
            if outcome.cost_source:
                self.cost_sources[outcome.cost_source] += 1
        elif not outcome.cached and outcome.attempts and outcome.prompt_tokens is not None:
            self.unpriced[str(outcome.model)] += 1

    def _add_tokens(self, outcome: RowOutcome) -> None:
        self.prompt_tokens += outcome.prompt_tokens or 0
        self.completion_tokens += outcome.completion_tokens or 0
        self.cached_tokens += outcome.cached_tokens or 0
        self.cache_write_tokens += outcome.cache_write_tokens or 0
        self.reasoning_tokens += outcome.reasoning_tokens or 0

    @property
    def cache_hit_ratio(self) -> float | None:
        """The share of the input tokens read from the provider's prompt cache (None: no input)."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else None

    def _cache_text(self) -> str:
        if not (self.cached_tokens or self.cache_write_tokens):
            return ""
        ratio = self.cache_hit_ratio or 0.0
        return (f" (read from the prompt cache {self.cached_tokens}, cache hit ratio {ratio:.1%}; "
                f"written to it {self.cache_write_tokens})")

    def summary(self) -> str:
        # Each count says what it counts: "34 error; 0 failed and skipped" read as a contradiction.
        statuses = ", ".join(f"{self.by_status[s]} {s}" for s in STATUSES if self.by_status[s]) or "no rows"
        batched = f"answered by batches: {self.batched}; " if self.batched else ""
        text = (f"rows by status: {statuses}; left out by on_row_error skip: {self.skipped}; "
                f"answers from cache: {self.cached}; {batched}rows retried: {self.retried}; "
                f"tokens in {self.prompt_tokens}{self._cache_text()}, out {self.completion_tokens}"
                + (f" (reasoning {self.reasoning_tokens})" if self.reasoning_tokens else ""))
        if self.priced:
            sources = ", ".join(f"{name} {n}" for name, n in sorted(self.cost_sources.items()))
            text += f"; cost {self.cost:.4f}" + (f" (rows priced from: {sources})" if sources else "")
        if self.unpriced:
            models = ", ".join(f"{m} ({n} rows)" for m, n in self.unpriced.most_common())
            text += f"; no price for: {models} (their cost is unknown, not counted)"
        if self.by_error_class:
            text += "; errors by class: " + ", ".join(f"{c} {n}" for c, n in self.by_error_class.most_common())
            text += f"; first errors: {' | '.join(self.first_errors)}"
        return text + self._unemitted_text()
