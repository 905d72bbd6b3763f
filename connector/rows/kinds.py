"""Column types of text inputs: what a declared type accepts, and the one rule for undeclared CSV columns.

A cell reaches the prompt and the record exactly as the file holds it unless a
type is declared for its column (``input.columns``, name -> one of :data:`KINDS`).

Declared: every value is converted to the type once, as it is read; a value that
does not fit (``abc`` for ``integer``) is not guessed at: :class:`Unfit` says why,
and the reader makes it that row's ``bad_input`` error. ``date`` and ``timestamp``
values are checked and kept as written (JSON has no date type, and rewriting
``2025-01-02 10:00`` as ``2025-01-02T10:00:00`` would change the text).

Undeclared CSV columns are text, unless every cell of the column in the whole
file (empty cells aside, which are null) is written the one way the inferred
type writes it back (:class:`TextKinds`): ``integer`` for ``-?[1-9][0-9]*`` up to
18 digits or ``0``; ``number`` for those and decimals without exponent, leading
zeros or trailing fractional zeros and at most 15 significant digits (what a
double holds exactly); ``boolean`` for ``true``/``false``; ``date`` for valid
``YYYY-MM-DD``; ``timestamp`` for ISO 8601 date-times all with or all without a
zone offset. So ``02134``, ``007``, ``1e3``, ``1.50``, ``NaN`` and ``TRUE``
keep their columns text.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa

# pyarrow.compute's own kernels, called as its wrappers call them (no options where the wrapper is given
# none; CastOptions.safe for cast, TakeOptions(boundscheck=True) for take): importing pyarrow.compute
# generates a Python wrapper for each of its ~400 kernels, ~27 ms of CPU here, more than a 5-row CSV
# scan costs in all (issue 25, cold start); its C++ module, which it imports these names from, takes ~9.
from pyarrow._compute import CastOptions, MatchSubstringOptions, SliceOptions, TakeOptions, call_function

KINDS = ("string", "integer", "number", "boolean", "date", "timestamp", "decimal", "object", "array")
INT64 = (-(2**63), 2**63 - 1)

Convert = Callable[[Any], Any]


class Unfit(ValueError):
    """A value does not fit its column's type; the message says how (without the position)."""


# The JSON schema a column of each kind is declared with in discover.
_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": ["null", "string"]},
    "integer": {"type": ["null", "integer"]},
    "number": {"type": ["null", "number"]},
    "boolean": {"type": ["null", "boolean"]},
    "date": {"type": ["null", "string"], "format": "date"},
    "timestamp": {"type": ["null", "string"], "format": "date-time"},
    "decimal": {"type": ["null", "number"], "description": "exact decimal: a JSON number with every digit"},
    "object": {"type": ["null", "object"]},
    "array": {"type": ["null", "array"]},
}
# The Arrow type a column of each kind is written with to a Parquet or CSV output file.
_ARROW: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),  # YYYY-MM-DD, exactly what a date32 writes back
}


def json_schema(kind: str, zoned: bool | None = None) -> dict[str, Any]:
    """The declared JSON schema of a column of ``kind``; ``zoned`` tells timestamps with or without offsets."""
    schema = dict(_SCHEMAS[kind])
    if kind == "timestamp" and zoned is not None:
        schema["airbyte_type"] = "timestamp_with_timezone" if zoned else "timestamp_without_timezone"
    return schema


def arrow_type(kind: str) -> pa.DataType:
    """The Arrow type of a column of ``kind`` in output files; timestamps and decimals stay the text
    they were written as (a timestamp type would rewrite ``2025-01-02 10:00`` and bound the years),
    objects and arrays JSON text."""
    return _ARROW.get(kind, pa.string())


# Declared types: value in (text or JSON), value out ------------------------------------------

_INT_TEXT = re.compile(r"\s*[+-]?\d+\s*")
_NUMBER_TEXT = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")
_DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")
TIMESTAMP_TEXT = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}):(\d{2})(:(\d{2})(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?")
_TRUE, _FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})


def _describe(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return repr(text[:80] + ("…" if len(text) > 80 else ""))


def _as_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return orjson.dumps(value, default=str).decode()


def _integral(value: Any) -> bool:
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, Decimal):
        return value.is_finite() and value == value.to_integral_value()
    return isinstance(value, str) and _INT_TEXT.fullmatch(value) is not None


def _as_integer(value: Any) -> int:
    if isinstance(value, bool):
        raise Unfit(f"{_describe(value)} is a boolean, not an integer")
    if isinstance(value, int):
        result = value
    elif _integral(value):
        result = int(value)
    else:
        raise Unfit(f"{_describe(value)} is not an integer")
    if not INT64[0] <= result <= INT64[1]:
        raise Unfit(f"{_describe(value)} is outside the 64-bit integer range")
    return result


def _as_number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise Unfit(f"{_describe(value)} is a boolean, not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, (float, Decimal)):
        number = float(value)
    elif isinstance(value, str) and _NUMBER_TEXT.fullmatch(value):
        stripped = value.strip()
        if _INT_TEXT.fullmatch(stripped):
            return int(stripped)
        number = float(stripped)
    else:
        raise Unfit(f"{_describe(value)} is not a number")
    if number != number or number in (float("inf"), float("-inf")):
        raise Unfit(f"{_describe(value)} is not a number JSON can hold (NaN or infinite)")
    return number


def _as_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise Unfit(f"{_describe(value)} is a boolean, not a decimal")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str) and _NUMBER_TEXT.fullmatch(value):
        result = Decimal(value.strip())
    else:
        raise Unfit(f"{_describe(value)} is not a decimal number")
    if not result.is_finite():
        raise Unfit(f"{_describe(value)} is not a finite decimal")
    return result


def _as_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise Unfit(f"{_describe(value)} is not a boolean (true/false, 1/0)")


def _as_date(value: Any) -> str:
    if isinstance(value, datetime):
        raise Unfit(f"{_describe(value)} is a date-time, not a date")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and _DATE_TEXT.fullmatch(value):
        try:
            date.fromisoformat(value)
        except ValueError:
            raise Unfit(f"{_describe(value)} is not a valid date") from None
        return value
    raise Unfit(f"{_describe(value)} is not a date (YYYY-MM-DD)")


def _as_timestamp(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        match = TIMESTAMP_TEXT.fullmatch(value)
        if match:
            try:
                date.fromisoformat(match[1])
                time(int(match[2]), int(match[3]), int(match[5] or 0))
            except ValueError:
                raise Unfit(f"{_describe(value)} is not a valid date-time") from None
            return value
    raise Unfit(f"{_describe(value)} is not an ISO 8601 date-time (YYYY-MM-DDTHH:MM:SS, optional fraction "
                "and zone)")


def _json_of(kind: type, name: str) -> Convert:
    """A JSON object or array, given as itself or as JSON text (a CSV cell)."""
    def convert(value: Any) -> Any:
        if isinstance(value, str):
            with contextlib.suppress(orjson.JSONDecodeError):
                value = orjson.loads(value)
        if isinstance(value, kind):
            return value
        raise Unfit(f"{_describe(value)} is not a JSON {name}")
    return convert


_CONVERTERS: dict[str, Convert] = {
    "string": _as_string, "integer": _as_integer, "number": _as_number, "boolean": _as_boolean,
    "date": _as_date, "timestamp": _as_timestamp, "decimal": _as_decimal, "object": _json_of(dict, "object"),
    "array": _json_of(list, "array"),
}


def converter(kind: str, from_text: bool) -> Convert:
    """The conversion of one value to a declared ``kind``; None stays None. ``from_text``: the values
    are CSV cells, where an empty cell is null unless the column is text."""
    convert = _CONVERTERS[kind]
    if from_text and kind != "string":
        return lambda value: None if value is None or value == "" else convert(value)
    return lambda value: None if value is None else convert(value)


# Undeclared CSV columns: the inference that cannot lose information --------------------------

_INTEGER_RE = r"0|-?[1-9]\d{0,17}"
# A decimal with a fractional part, <= 15 significant digits, no exponent, no leading or trailing
# zeros, >= 0.0001: exactly the text Python and orjson write for the double it parses to.
_DECIMAL_RE = "|".join(
    [r"-?0\.0{0,3}[1-9](\d{0,13}[1-9])?"] + [rf"-?[1-9]\d{{{k - 1}}}\.\d{{0,{14 - k}}}[1-9]" for k in range(1, 15)]
)
_DATE_RE = r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
_CLOCK_RE = r"[T ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?"
_PATTERNS: dict[str, str] = {
    "integer": rf"^({_INTEGER_RE})?$",
    "number": rf"^({_INTEGER_RE}|{_DECIMAL_RE})?$",
    "boolean": r"^(true|false)?$",
    "date": rf"^({_DATE_RE})?$",
    "naive": rf"^({_DATE_RE}{_CLOCK_RE})?$",
    "zoned": rf"^({_DATE_RE}{_CLOCK_RE}(Z|[+-]([01]\d|2[0-3]):[0-5]\d))?$",
}
_PREFERENCE = ("integer", "number", "boolean", "date", "naive", "zoned")
_DATED = frozenset({"date", "naive", "zoned"})


class TextKinds:
    """The type of one undeclared CSV column, learnt from every batch of the whole file."""

    __slots__ = ("alive", "seen_value")

    def __init__(self) -> None:
        self.alive = set(_PREFERENCE)
        self.seen_value = False

    def observe(self, column: pa.Array) -> None:
        """Rule out the types some cell of ``column`` (a text column, empty cells as "") does not fit."""
        observe_batch([(self, column)])

    def merge(self, other: TextKinds) -> None:
        """The same column in another file (a fresh instance takes the other's types)."""
        self.alive &= other.alive
        self.seen_value |= other.seen_value

    @property
    def kind(self) -> str:
        """string, integer, number, boolean, date or timestamp."""
        if not self.seen_value:
            return "string"
        for kind in _PREFERENCE:
            if kind in self.alive:
                return "timestamp" if kind in ("naive", "zoned") else kind
        return "string"

    def schema(self) -> dict[str, Any]:
        kind = self.kind
        return json_schema(kind, zoned=("zoned" in self.alive) if kind == "timestamp" else None)


def observe_batch(columns: list[tuple[TextKinds, pa.Array]]) -> None:
    """:meth:`TextKinds.observe` for many columns of one batch at once.

    Each test runs once over the cells of every column still in question, joined end to end,
    and is counted back per column: a 10,000-column file costs a handful of calls per batch,
    not tens of thousands (each call compiles its pattern anew).
    """
    unseen = [(kinds, column) for kinds, column in columns if not kinds.seen_value and kinds.alive]
    for (kinds, _), all_empty in zip(unseen, _all_match(unseen, "^$"), strict=True):
        kinds.seen_value = not all_empty
    for kind in _PREFERENCE:
        open_ = [(kinds, column) for kinds, column in columns if kind in kinds.alive]
        for (kinds, column), fits in zip(open_, _all_match(open_, _PATTERNS[kind]), strict=True):
            if not fits or (kind in _DATED and not _valid_dates(column)):
                kinds.alive.discard(kind)  # 2025-02-30 has the shape of a date but is none


def _all_match(columns: list[tuple[TextKinds, pa.Array]], pattern: str) -> list[bool]:
    """For each column, whether all its cells match ``pattern``, from one call over all of them."""
    if not columns:
        return []
    cells = pa.concat_arrays([column for _, column in columns])
    if not len(cells):
        return [True] * len(columns)
    matched = call_function("match_substring_regex", [cells], MatchSubstringOptions(pattern))
    missed = call_function("cast", [call_function("invert", [matched])], CastOptions.safe(pa.int64()))
    misses = call_function("cumulative_sum", [missed])
    ends = list(itertools.accumulate(len(column) for _, column in columns))
    # Typed: pyarrow infers an untyped list's type by trying dateutil and pandas first (~8 ms here, once).
    last = pa.array([max(end - 1, 0) for end in ends], pa.int64())
    counts = call_function("take", [misses, last], TakeOptions(boundscheck=True)).to_pylist()
    totals = [0] + [count if end else 0 for count, end in zip(counts, ends, strict=True)]
    return [after == before for before, after in itertools.pairwise(totals)]


def _valid_dates(column: pa.Array) -> bool:
    empty = call_function("equal", [column, ""])
    written = call_function("drop_null", [call_function("if_else", [empty, None, column])])
    days = call_function("utf8_slice_codeunits", [written], SliceOptions(0, 10))
    try:
        call_function("cast", [days], CastOptions.safe(pa.date32()))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def text_values(kind: str, column: pa.Array) -> list[Any]:
    """The Python values of an undeclared text column the scan found to be of ``kind``."""
    values: list[Any] = column.to_pylist()
    if kind == "string":
        return values
    if kind == "integer":
        return [None if v is None or v == "" else int(v) for v in values]
    if kind == "number":
        return [None if v is None or v == "" else (float(v) if "." in v else int(v)) for v in values]
    if kind == "boolean":
        return [None if v is None or v == "" else v == "true" for v in values]
    return [None if v == "" else v for v in values]  # dates and timestamps as written


def convert_all(values: list[Any], convert: Convert) -> tuple[list[Any], dict[int, str]]:
    """Each value converted, or None with the reason it did not fit, by index."""
    out: list[Any] = []
    unfit: dict[int, str] = {}
    for i, value in enumerate(values):
        try:
            out.append(convert(value))
        except Unfit as exc:
            out.append(None)
            unfit[i] = str(exc)
    return out, unfit
