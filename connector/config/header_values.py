"""What may go into an HTTP header: the checks on ``api_key`` and ``headers`` values.

A value with a line break cannot be sent (HTTP libraries refuse it, and a lenient
one would let it start a second header), so it is refused when the config is
validated, naming the field, instead of failing every request later as an
internal error. One exception users expect to work: a key read from a file with
``cat`` ends with a newline; that single trailing newline is removed, and a
note says so.
"""

from __future__ import annotations

import re

# RFC 9110 field-value: visible characters, spaces and tabs (obs-text allowed); no CR, LF, NUL.
_FORBIDDEN_IN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # a header name


def value_problem(value: str) -> str | None:
    """Why ``value`` cannot be a header value, or None. Never quotes the value (it may be a secret)."""
    found = _FORBIDDEN_IN_VALUE.search(value)
    if found is None:
        return None
    if found.group() in "\r\n":
        return "contains a line break (CR or LF), which an HTTP header cannot carry; remove it"
    return f"contains the control character U+{ord(found.group()):04X}, which an HTTP header cannot carry; remove it"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a header name, or None."""
    if _TOKEN.match(name):
        return None
    return "is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only; no spaces or colons)"


def key_without_line_end(key: str) -> tuple[str, str | None]:
    """``key`` without one trailing newline (``\\n`` or ``\\r\\n``), and the note saying so; or why it
    still cannot be sent, raised as ValueError (pydantic names the field)."""
    bare = key.removesuffix("\n").removesuffix("\r") if key.endswith("\n") else key
    problem = value_problem(bare)
    if problem is not None:
        raise ValueError(problem)
    if bare == key:
        return key, None
    return bare, "api_key ended with a line break (a key read from a file?); it was removed before sending"
