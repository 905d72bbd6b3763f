"""Reading reply bodies: JSON that tolerates what servers send, and the human part of an error body."""

from __future__ import annotations

import json
from typing import Any

import orjson

from connector.errors import BadReply


def preview(raw: bytes | str, limit: int = 200) -> str:
    """A short, one-line excerpt of a body for error messages."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def loads(raw: bytes | str) -> Any:
    """JSON from a body or a stream event, decoded as the stream path decodes text: invalid UTF-8
    and lone surrogate escapes (``"\\ud800"``) become U+FFFD instead of failing the reply.

    Such a body is the same on every attempt, so refusing it would only buy it again. Raises
    ValueError for text that is not JSON at all.
    """
    try:
        return orjson.loads(raw)  # the fast path: well-formed UTF-8 JSON
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        return _scrub(json.loads(text))  # the stdlib accepts lone surrogates; _scrub replaces them


def _scrub(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings replaced (orjson cannot write them)."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    return value


def load_object(raw: bytes | str, what: str = "the endpoint returned") -> dict[str, Any]:
    """A JSON object from a body, or BadReply saying what was wrong."""
    try:
        value = loads(raw)
    except ValueError:
        raise BadReply(f"{what} a body that is not JSON: {preview(raw)}") from None
    if not isinstance(value, dict):
        raise BadReply(f"{what} JSON that is not an object: {preview(raw)}")
    return value


def generic_error_message(body: Any) -> str:
    """The human part of an error body, whichever of the common shapes it has."""
    if isinstance(body, (bytes, str)):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            return preview(body)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            message = err.get("message") or err.get("detail") or err.get("msg")
            code = err.get("status") or err.get("code") or err.get("type")
            if message:
                return f"{message} ({code})" if code and str(code) not in str(message) else str(message)
        elif isinstance(err, str):
            return err
        if isinstance(body.get("detail"), str):
            return str(body["detail"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return preview(orjson.dumps(body))
