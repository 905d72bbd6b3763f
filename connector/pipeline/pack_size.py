"""``rows_per_request: "auto"``: how many rows a packed request takes.

A packed request (:mod:`connector.dialects.packed_chat`) sends its shared part once (the system prompt, the
parameters, the ask to answer by id) and, for each row, the row's own text and room for its answer (its
``max_tokens``). Auto measures the first rows to ask with the offline token estimate
(:class:`~connector.endpoint.limits.TokenEstimator`, as the context-window fit does) and takes the most rows that

- fit the context window: shared part + N × (a row's mean text + its mean output cap) ≤ ``context_window``
  (:data:`~connector.config.packing_rules.AUTO_WINDOW` tokens assumed when it is unset);
- keep the packed ``max_tokens`` (the rows' caps added up) within
  :data:`~connector.config.packing_rules.AUTO_OUTPUT_LIMIT`, a row without ``max_tokens`` counted at the
  estimator's default output;
- and are at most :data:`~connector.config.packing_rules.AUTO_MAX_ROWS`; at least 1.

Packs are still cut where the next row would take one past the window (rows longer than the ones measured).
The run (:mod:`connector.pipeline.row_packs`) and the dry run measure the same first :data:`SAMPLE` rows to ask.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connector.config.packing_rules import AUTO_MAX_ROWS, AUTO_OUTPUT_LIMIT, AUTO_WINDOW
from connector.dialects import Dialect
from connector.dialects.base import max_tokens_of
from connector.dialects.packed_chat import INSTRUCTION, pack_key, prompt_weights
from connector.endpoint.limits import TokenEstimator

SAMPLE = 100  # rows to ask measured before N is chosen (held back from the endpoint until then)


@dataclass(frozen=True, slots=True)
class RowSize:
    """A row's parts of a packed request, in estimated tokens."""

    shared: int  # what the packed request sends once: the row's prompt but its own text, and the ask by id
    text: int  # the row's own text as the packed JSON object carries it (with its id)
    cap: int | None  # its max_tokens (None: unset)


def row_size(dialect: Dialect, estimator: TokenEstimator, body: Mapping[str, Any]) -> RowSize:
    """``body``'s parts of a packed request, estimated offline."""
    whole = estimator.prompt_tokens(dialect.prompt_chars(body) + len(INSTRUCTION))
    text = estimator.prompt_tokens(prompt_weights([body], ["0"])[0])
    return RowSize(max(whole - text, 0), text, max_tokens_of(body))


@dataclass(slots=True)
class AutoSize:
    """The first rows to ask measured, and the rows per request chosen from them (see the module doc)."""

    window: int  # context_window, or AUTO_WINDOW
    assumed: bool  # context_window was unset
    default_output: int  # a row's output when it sets no max_tokens
    shared: int = 0  # the largest shared part measured
    texts: int = 0
    caps: int = 0
    measured: int = 0

    @classmethod
    def for_window(cls, context_window: int | None, estimator: TokenEstimator) -> AutoSize:
        return cls(context_window or AUTO_WINDOW, context_window is None, estimator.default_output)

    def add(self, size: RowSize) -> None:
        """Measure one more row to ask (rows past the first :data:`SAMPLE` are not counted)."""
        if self.enough:
            return
        self.shared = max(self.shared, size.shared)
        self.texts += size.text
        self.caps += size.cap if size.cap is not None else self.default_output
        self.measured += 1

    def add_body(self, dialect: Dialect, estimator: TokenEstimator, body: Mapping[str, Any]) -> None:
        """Measure the row whose request is ``body``, if it can be packed."""
        if pack_key(body) is not None:
            self.add(row_size(dialect, estimator, body))

    @property
    def enough(self) -> bool:
        return self.measured >= SAMPLE

    def rows(self) -> int:
        """The rows per request chosen: 1 when no row was measured."""
        if not self.measured:
            return 1
        per_row = -(-(self.texts + self.caps) // self.measured)
        by_window = (self.window - self.shared) // max(per_row, 1)
        mean_cap = self.caps / self.measured
        by_output = int(AUTO_OUTPUT_LIMIT // mean_cap) if mean_cap else AUTO_MAX_ROWS
        return max(1, min(AUTO_MAX_ROWS, by_window, by_output))

    def line(self) -> str:
        """The choice, said once (a LOG line of the run, a line of the dry run)."""
        n, m = self.rows(), max(self.measured, 1)
        window = f"context_window {self.window:,}" + (" (assumed: context_window unset)" if self.assumed else "")
        return (f"rows_per_request auto: {n} rows a request, from {window}, the first {self.measured:,} rows to ask "
                f"(~{-(-self.texts // m):,} tokens of text and ~{-(-self.caps // m):,} of output each, a shared "
                f"part of ~{self.shared:,}), at most {AUTO_OUTPUT_LIMIT:,} output tokens and {AUTO_MAX_ROWS} rows "
                "a request")
