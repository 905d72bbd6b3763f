"""Whether a row's prompt fits its model's context window, and the row truncated to fit.

Prompts are measured offline (:class:`~connector.endpoint.limits.TokenEstimator`, corrected from
the replies' usage) against the window minus the answer's room: the output limit in the API
shape's own field. ``too_long_policy`` decides what happens to a row that does not fit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from connector import errors
from connector.dialects import Dialect
from connector.endpoint.limits import TokenEstimator

Body = dict[str, Any]


class ContextFit:
    """Prompt sizes against context windows (``window``: the run's; ``windows``: per model)."""

    def __init__(self, dialect: Dialect, render: Callable[[Mapping[str, Any]], Body], window: int | None,
                 windows: Mapping[str, int], too_long_policy: str, truncate_column: str | None) -> None:
        self._dialect, self._render = dialect, render
        self.window = window
        self.windows = dict(windows)
        self._policy, self._column = too_long_policy, truncate_column
        self.estimator = TokenEstimator()
        # Prompt sizes are estimated (and the estimate corrected from usage) only for context windows.
        self.sizes_prompts = bool(self.windows or window)

    def prompt_tokens(self, body: Mapping[str, Any]) -> int:
        return self.estimator.prompt_tokens(self._dialect.prompt_chars(body))

    def max_output(self, body: Mapping[str, Any]) -> int:
        """The room the answer needs, from the body's own output-limit field (max_output_tokens,
        generationConfig.maxOutputTokens, ...)."""
        return self._dialect.max_output_tokens(body) or 0

    def observe(self, body: Mapping[str, Any], prompt: int | None, output: int | None) -> None:
        """A reply's usage corrects the estimate (only when prompts are sized at all)."""
        if prompt is not None and self.sizes_prompts:
            self.estimator.observe(self._dialect.prompt_chars(body), prompt, output)

    def too_big_for(self, model: object, body: Mapping[str, Any], media_tokens: int = 0) -> int | None:
        """``model``'s context window when ``body`` does not fit it; None when it fits or has no window."""
        window = self.windows.get(str(model)) if model else None
        if window is not None and self.prompt_tokens(body) + media_tokens + self.max_output(body) > window:
            return window
        return None

    def fit(self, row: Mapping[str, Any], body: Body, position: int,
            media_tokens: int = 0) -> tuple[Body, str | None] | str:
        """The body, truncated to fit where the policy says so, with what was cut (None: nothing); a skip
        reason when it cannot fit. ``media_tokens``: the estimate of the row's images and documents, which
        stay whole."""
        window = int(self.window or 0)
        allowed = window - self.max_output(body) - media_tokens
        estimate = self.prompt_tokens(body)
        if estimate <= allowed:
            return body, None
        media = f" (and ~{media_tokens} for its media)" if media_tokens else ""
        reason = (f"the prompt is ~{estimate + media_tokens} tokens{media} and max_tokens {self.max_output(body)}: "
                  f"more than context_window {window}")
        if self._policy == "fail":
            raise errors.RowTooLong(f"row {position + 1}: {reason}; set too_long_policy to skip or truncate")
        column = self._column
        if self._policy == "skip":
            return reason + " (too_long_policy skip)"
        if not column or not isinstance(row.get(column), str):
            return reason + f" and column {column!r} is not text to truncate"
        fitted = self._truncated(row, column, allowed)
        if fitted is None:
            return reason + f" even with column {column!r} emptied"
        kept = fitted[1]
        return fitted[0], f"{column}: {kept:,} of {len(row[column]):,} characters sent (too_long_policy truncate)"

    def _truncated(self, row: Mapping[str, Any], column: str, allowed: int) -> tuple[Body, int] | None:
        """The body with the longest prefix of ``column`` (marked with "…") whose prompt fits in
        ``allowed`` tokens; None when not even the empty cell fits.

        A binary search over the prefix length: the estimate grows with the prefix, whatever
        the API shape, the template (the column may appear twice) and JSON escaping do to it.
        """
        text: str = row[column]

        def body_with(keep: int) -> Body:
            return self._render({**row, column: text[:keep] + "…"})

        shortest = body_with(0)
        if self.prompt_tokens(shortest) > allowed:
            return None
        best, kept, low, high = shortest, 0, 1, len(text) - 1  # the whole text is known not to fit
        while low <= high:
            middle = (low + high) // 2
            candidate = body_with(middle)
            if self.prompt_tokens(candidate) <= allowed:
                best, kept, low = candidate, middle, middle + 1
            else:
                high = middle - 1
        return best, kept
