"""The per-row result contract: statuses, error classes, and how an endpoint error is classified.

These names are a public contract (downstream SQL filters on them); add, never rename.

Statuses: ``ok``, ``error``, ``truncated`` (the answer was cut off by the token
limit), ``skipped_null`` (a cell the template uses is null or empty and
``null_policy`` is ``skip``), ``skipped_too_long`` (the prompt does not fit the
context window and ``too_long_policy`` is ``skip``).

Error classes: ``rate_limit``, ``quota``, ``auth``, ``timeout``, ``connection``,
``server``, ``bad_request``, ``not_found``, ``context_length``,
``content_filter``, ``bad_reply``, ``validation``.
"""

from __future__ import annotations

import re

from connector import errors

STATUSES = ("ok", "error", "truncated", "skipped_null", "skipped_too_long")
ERROR_CLASSES = (
    "rate_limit", "quota", "auth", "timeout", "connection", "server", "bad_request",
    "not_found", "context_length", "content_filter", "bad_reply", "validation",
)

# Each provider words these differently; the patterns cover OpenAI, Azure, Anthropic,
# Gemini, vLLM, llama.cpp, Ollama and TGI error bodies.
_CONTEXT = re.compile(
    r"context[_ ]length|maximum context|context window|prompt is too long|too many tokens|"
    r"exceeds? the (?:available )?context|exceed_context_size|input is too long|"
    r"exceeds the maximum number of tokens|reduce the length of the messages|input too long",
    re.IGNORECASE,
)
_QUOTA = re.compile(r"insufficient_quota|exceeded your current quota|billing|credit balance|quota exceeded",
                    re.IGNORECASE)
_CONTENT_FILTER = re.compile(r"content[_ ]filter|content management policy|safety|responsible ?ai", re.IGNORECASE)


def classify(exc: errors.EndpointError) -> str:
    """The error class of an endpoint failure."""
    if isinstance(exc, errors.HTTPStatusError):
        body = exc.body or exc.message
        status = exc.status
        if status in (401, 403):
            return "auth"
        if _QUOTA.search(body) and status in (402, 403, 429):
            return "quota"
        if status == 429:
            return "rate_limit"
        if status in (400, 413, 422) and _CONTEXT.search(body):
            return "context_length"
        if status == 400 and _CONTENT_FILTER.search(body):
            return "content_filter"
        if status == 404:
            return "not_found"
        if status == 408 or status >= 500:
            return "server"
        return "bad_request"
    if isinstance(exc, (errors.ReadTimeout, errors.ConnectTimeout)):
        return "timeout"
    if isinstance(exc, errors.TransportError):
        return "connection"
    return "bad_reply"


def is_quota(exc: errors.EndpointError) -> bool:
    """Out of money or quota: no retry will help, and neither will the next row."""
    return classify(exc) == "quota"
