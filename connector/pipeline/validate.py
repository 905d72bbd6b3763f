"""An answer checked against what the config asks of it, and the request that asks again.

The response template's columns, the output schema and the tool-call column are read from the
reply (:class:`~connector.answers.extract.ResponseExtractor`); when a structured answer cannot be
used, the row is asked again ``validation_retries`` times with the answer and the problem appended
to the conversation, in the API shape's own turns (:meth:`~connector.dialects.base.Dialect.with_feedback`).
An answer cut off by the token limit is not asked again: it is ``truncated``, whatever it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.answers.extract import ResponseExtractor
from connector.answers.judge import content_of, finish_reason
from connector.dialects import Dialect

Body = dict[str, Any]


class AnswerCheck:
    """Reads a reply into output columns, and words the request that asks again."""

    def __init__(self, extractor: ResponseExtractor, dialect: Dialect, retries: int) -> None:
        self._extractor, self._dialect = extractor, dialect
        self.retries = retries  # validation_retries: how many times a row may be asked again

    @property
    def column_names(self) -> list[str]:
        return self._extractor.column_names

    def check(self, reply: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The reply's output columns, and why its structured answer cannot be used (None: it can)."""
        return self._extractor.extract(reply)

    def ask_again(self, body: Mapping[str, Any], reply: Mapping[str, Any], problem: str | None,
                  retries_left: int) -> Body | None:
        """The request that asks again: the conversation so far, the unusable answer and what was wrong
        with it; None when there is no problem, no retry left, the answer was cut by the token limit,
        or the body has no conversation to extend."""
        if not problem or retries_left <= 0 or finish_reason(reply) == "length":
            return None
        said = content_of(reply)
        ask = f"That answer could not be used: {problem}. Reply again with only the corrected JSON object."
        return self._dialect.with_feedback(body, said if isinstance(said, str) else "", ask)
