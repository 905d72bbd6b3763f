"""Which class an endpoint failure belongs to: the error knowledge of the endpoint stage.

The class names are the public ``_error_class`` values listed in
:mod:`connector.answers.outcomes`; the client uses :func:`is_quota` to stop retrying a
429 that means "out of credit", and the run uses :func:`classify` to fill the record
and to decide on fallbacks, and :func:`is_fatal` / :func:`fatal` to end the sync on a
failure no other row can get past (a rejected key, a wrong URL or model, no quota).
"""

from __future__ import annotations

import re

from connector import errors

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
# A model the endpoint does not serve. OpenAI, vLLM, Ollama answer 404; gateways answer 400
# (LiteLLM: "Invalid model name passed in model=...", OpenRouter: "... is not a valid model ID").
_UNKNOWN_MODEL = re.compile(
    r"invalid model|not a valid model|unknown model|model_not_found|no such model|"
    r"model\W+\S*\W*(?:does not exist|not found|is not supported by this (?:server|endpoint))",
    re.IGNORECASE,
)
_CONTENT_FILTER = re.compile(r"content[_ ]filter|content management policy|safety|responsible ?ai", re.IGNORECASE)
# A key refused with a 400 (docs/COMPATIBILITY.md): LiteLLM's proxy with a master_key and no
# database answers every other key with 400 "No connected db." (type no_db_connection).
_REJECTED_KEY_400 = re.compile(r"no_db_connection|No connected db")


def classify(exc: errors.EndpointError) -> errors.ErrorClass:
    """The error class of an endpoint failure."""
    if isinstance(exc, errors.HTTPStatusError):
        body = exc.body or exc.message
        status = exc.status
        if rejects_key(status, body):
            return "auth"
        if _QUOTA.search(body) and status in (402, 403, 429):
            return "quota"
        if status == 429:
            return "rate_limit"
        if status in (400, 413, 422) and _CONTEXT.search(body):
            return "context_length"
        if status == 400 and _CONTENT_FILTER.search(body):
            return "content_filter"
        if status == 404 or is_unknown_model(exc):
            return "not_found"
        if status == 408 or status >= 500:
            return "server"
        return "bad_request"
    if isinstance(exc, errors.BatchItemUnfinished):
        return "unanswered"
    if isinstance(exc, (errors.ReadTimeout, errors.ConnectTimeout)):
        return "timeout"
    if isinstance(exc, errors.TransportError):
        return "connection"
    return "bad_reply"


def rejects_key(status: int, body: str) -> bool:
    """A non-2xx answer that refuses the key: 401/403, or a gateway's 400 that says so."""
    return status in (401, 403) or (status == 400 and bool(_REJECTED_KEY_400.search(body)))


def is_rejected_key(exc: errors.EndpointError) -> bool:
    """The endpoint refused the key, whatever status it says so with."""
    return isinstance(exc, errors.HTTPStatusError) and rejects_key(exc.status, exc.body or exc.message)


def is_unknown_model(exc: errors.EndpointError) -> bool:
    """The endpoint does not serve the model asked for, whatever status it says so with
    (404 from OpenAI-style servers, 400 or 422 from gateways)."""
    if not isinstance(exc, errors.HTTPStatusError) or exc.status not in (400, 404, 422):
        return False
    return bool(_UNKNOWN_MODEL.search(exc.body or exc.message))


def is_quota(exc: errors.EndpointError) -> bool:
    """Out of money or quota: no retry will help, and neither will the next row."""
    return classify(exc) == "quota"


def fatal(cause: errors.EndpointError) -> errors.FatalEndpointError:
    """The error that ends the sync for ``cause``, worded for what the user can do."""
    if is_quota(cause):
        return errors.FatalEndpointError(
            cause, f"quota or billing limit reached: {cause.message}. Add credit or raise the limit, "
                   "then run again from the last state: rows already emitted are not redone.")
    if is_unknown_model(cause):  # a gateway says so with a 400: name it for what it is
        return errors.FatalEndpointError(
            cause, f"model not found: {cause.message}. Set model to one the endpoint offers "
                   "(check lists them), then run again from the last state.")
    return errors.FatalEndpointError(cause)


def is_fatal(exc: errors.EndpointError) -> bool:
    """3xx (URL moved), a rejected key (401/403, a gateway's 400), 404 (URL or model), a gateway's
    unknown-model 400, quota: retrying other rows cannot help."""
    if not isinstance(exc, errors.HTTPStatusError):
        return False
    return (exc.status == 404 or 300 <= exc.status < 400 or is_rejected_key(exc) or is_quota(exc)
            or is_unknown_model(exc))
