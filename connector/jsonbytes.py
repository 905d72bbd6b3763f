"""JSON bytes for anything a row or a reply can hold: the one serialiser every stage shares.

Rows carry what Arrow and JSON readers give (decimals, bytes, dates, sets); replies
and request bodies are plain JSON. Airbyte messages, request bodies, cache keys,
prompt-size estimates and output files all serialise through here, so a value is
written the same way wherever it goes.
"""

from __future__ import annotations

import base64
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS
MAX_DEPTH = 255  # orjson refuses arrays and objects nested deeper (TypeError: Recursion limit reached)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):  # every digit, as a JSON number (a float would round past 15-17)
        return orjson.Fragment(format(value, "f"))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """JSON bytes for anything a row or a reply can hold."""
    return orjson.dumps(value, default=_default, option=_OPTIONS)


def dumps_line(value: Any) -> bytes:
    """The same, as one line (with the newline): one Airbyte message, one JSONL row."""
    return orjson.dumps(value, default=_default, option=_OPTIONS | orjson.OPT_APPEND_NEWLINE)
