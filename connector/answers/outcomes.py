"""The per-row result contract: statuses and error classes.

These names are a public contract (downstream SQL filters on them); add, never rename.

Statuses: ``ok``, ``error``, ``truncated`` (the answer was cut off by the token
limit), ``skipped_null`` (a cell the template uses is null or empty and
``null_policy`` is ``skip``), ``skipped_too_long`` (the prompt does not fit the
context window and ``too_long_policy`` is ``skip``).

Error classes: ``rate_limit``, ``quota``, ``auth``, ``timeout``, ``connection``,
``server``, ``bad_request``, ``not_found``, ``context_length``,
``content_filter``, ``bad_reply``, ``validation``, ``unanswered`` (a provider batch, or an
imported results file, has no answer for the row), ``bad_input`` (a value of the
input row does not fit its column's type; nothing was sent).
"""

from __future__ import annotations

STATUSES = ("ok", "error", "truncated", "skipped_null", "skipped_too_long")
# The endpoint's classes (connector.endpoint.classify) and the answer's own (content_filter, validation).
ERROR_CLASSES = (
    "rate_limit", "quota", "auth", "timeout", "connection", "server", "bad_request",
    "not_found", "context_length", "content_filter", "bad_reply", "validation", "unanswered", "bad_input",
)
