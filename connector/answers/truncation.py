"""Prompts a server cut without saying so: Ollama reads at most ``num_ctx`` tokens of a prompt (2,048
or 4,096 by default) and answers about what was left, with status 200 and ``finish_reason: stop``.

The sign is in the usage: the prompt tokens the server reports are far fewer than the prompt's
size suggests, and exactly at (or just under) a round context size. Such an answer is about a
truncated row, so it is not ``ok``: the row is an error of class ``context_length`` that names
``num_ctx``.
"""

from __future__ import annotations

from collections.abc import Callable

from connector.answers.outcomes import RowOutcome

# Context sizes a server is configured with: powers of two from 1,024 to 131,072 tokens.
ROUND_CAPS = tuple(1 << n for n in range(10, 18))
# The reported prompt is at most this far below a cap (some servers keep a few tokens for the answer).
_SLACK = 1 / 64
_LOWEST = ROUND_CAPS[0] * (1 - _SLACK)  # no count below this is near a cap
# The prompt's offline estimate (JSON characters over 4) must exceed the reported tokens this much:
# a prompt truly of a cap's size is not flagged.
_MARGIN = 1.5
CHARS_PER_TOKEN = 4.0


def cut_at(reported: int | None, prompt_chars: int) -> int | None:
    """The round cap ``reported`` prompt tokens were cut to, when the prompt (``prompt_chars`` JSON
    characters) is far longer; None when nothing says the prompt was cut."""
    cap = round_cap_near(reported)
    if cap is None or reported is None:
        return None
    return cap if prompt_chars / CHARS_PER_TOKEN >= reported * _MARGIN else None


def round_cap_near(reported: int | None) -> int | None:
    """The round cap ``reported`` prompt tokens sit just under, if any: a cheap test on a count, so the
    prompt's size is measured only for the few rows it could concern."""
    if reported is None or reported < _LOWEST:  # nearly every row: a prompt below every cap's slack
        return None
    for cap in ROUND_CAPS:
        if cap * (1 - _SLACK) <= reported <= cap:
            return cap
    return None


def explained(reported: int, prompt_chars: int, cap: int) -> str:
    """Why the row is not ok, and what to do."""
    return (f"the server read only {reported:,} prompt tokens of a prompt of ~{int(prompt_chars / CHARS_PER_TOKEN):,} "
            f"(the prompt is cut at a context size of {cap:,}): the answer is about a truncated row. Ollama cuts "
            "prompts to num_ctx (2,048 or 4,096 by default): raise it on the server (OLLAMA_CONTEXT_LENGTH, or "
            "PARAMETER num_ctx in a Modelfile), or shorten the rows (context_window with too_long_policy)")


def flag_cut_prompt(outcome: RowOutcome, prompt_chars: Callable[[], int]) -> None:
    """An ``ok`` outcome whose prompt the server cut without saying so (Ollama's num_ctx) made an error;
    ``prompt_chars`` is asked only when the reported tokens sit near a round cap (nearly never)."""
    reported = outcome.prompt_tokens
    if round_cap_near(reported) is None or reported is None:
        return  # nearly every row: its prompt is not measured (a serialisation per row saved)
    chars = prompt_chars()
    cap = cut_at(reported, chars)
    if cap is not None:
        outcome.status, outcome.error_class = "error", "context_length"
        outcome.error = explained(reported, chars, cap)
