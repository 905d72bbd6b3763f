"""Arrow columns as row values, exactly; the JSON schema each Arrow type is declared with.

Every Arrow type a Parquet file (or a Spark or Ray batch) can hold either becomes
values that keep every bit of information, declared truthfully, or is refused by
:func:`unsupported` before any row is read:

=====================================  ==============================================  ============================
Arrow type                             row value (and record)                          declared as
=====================================  ==============================================  ============================
integers, floats, bool, strings        the value; a float NaN or infinity is null      integer, number, boolean,
(large, view), null                    (JSON has no NaN; pandas writes NaN for null)   string
decimal32/64/128/256                   ``Decimal``: a JSON number with every digit     number
date32, date64                         ``datetime.date`` (``2025-01-31``)              string, format date
timestamp (s to ns, with or without    ISO 8601 text, every digit of the unit:         string, format date-time
zone)                                  ``2023-11-14T22:13:20.000000001+00:00``
time32, time64                         ``22:13:20.000000001``                          string, format time
duration, month_day_nano interval      ISO 8601 duration: ``PT1.500000001S``           string, format duration
binary (large, fixed-size, view)       base64 text                                     string, contentEncoding
                                                                                       base64
list (large, fixed-size, view)         a list                                          array of the item schema
struct                                 an object                                       object with properties
map                                    an object (keys as text)                        object, additionalProperties
uuid extension                         ``30313233-3435-...``                           string, format uuid
dictionary, run-end encoded, other     as their value (storage) type                   as that type
extensions
union                                  refused at check and discover, naming the column
=====================================  ==============================================  ============================

A value Python and JSON cannot show (a date beyond year 9999, a map with the same
key twice) is that row's ``bad_input`` error, never a crash.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
from pyarrow._compute import call_function  # pyarrow.compute's kernels without its import (see rows/kinds.py)

Problems = dict[int, str]  # row index in the array -> what is wrong with its value
_EPOCH = datetime(1970, 1, 1)
UTC = timezone.utc
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}


class Unrepresentable(ValueError):
    """One value cannot be shown exactly; the message says which and why."""


def _storage(kind: pa.DataType) -> pa.DataType:
    while isinstance(kind, pa.BaseExtensionType) and not _is_uuid(kind):
        kind = kind.storage_type
    if pa.types.is_dictionary(kind):
        return _storage(kind.value_type)
    if pa.types.is_run_end_encoded(kind):
        return _storage(kind.value_type)
    return kind


def unsupported(kind: pa.DataType) -> str | None:
    """Why a column of this Arrow type cannot flow exactly, or None when it can."""
    kind = _storage(kind)
    t = pa.types
    if t.is_union(kind):
        return "a union type (values of several types in one column)"
    if t.is_list(kind) or t.is_large_list(kind) or t.is_fixed_size_list(kind) or t.is_list_view(kind) \
            or t.is_large_list_view(kind):
        return unsupported(kind.value_type)
    if t.is_map(kind):
        return unsupported(kind.key_type) or unsupported(kind.item_type)
    if t.is_struct(kind):
        for i in range(kind.num_fields):
            why = unsupported(kind.field(i).type)
            if why:
                return why
    return None


def json_schema_for(kind: pa.DataType) -> dict[str, Any]:
    """The JSON schema of one Arrow column (always nullable)."""
    kind = _storage(kind)
    t = pa.types
    if _is_uuid(kind):
        return {"type": ["null", "string"], "format": "uuid"}
    if t.is_boolean(kind):
        return {"type": ["null", "boolean"]}
    if t.is_integer(kind):
        return {"type": ["null", "integer"]}
    if t.is_floating(kind) or t.is_decimal(kind):
        return {"type": ["null", "number"]}
    if t.is_timestamp(kind):
        tz = "timestamp_with_timezone" if kind.tz else "timestamp_without_timezone"
        return {"type": ["null", "string"], "format": "date-time", "airbyte_type": tz}
    if t.is_date(kind):
        return {"type": ["null", "string"], "format": "date"}
    if t.is_time(kind):
        return {"type": ["null", "string"], "format": "time", "airbyte_type": "time_without_timezone"}
    if t.is_duration(kind) or t.is_interval(kind):
        return {"type": ["null", "string"], "format": "duration"}
    if _is_binary(kind):
        return {"type": ["null", "string"], "contentEncoding": "base64"}
    if _is_list(kind):
        return {"type": ["null", "array"], "items": json_schema_for(kind.value_type)}
    if t.is_struct(kind):
        props = {kind.field(i).name: json_schema_for(kind.field(i).type) for i in range(kind.num_fields)}
        return {"type": ["null", "object"], "properties": props}
    if t.is_map(kind):
        return {"type": ["null", "object"], "additionalProperties": json_schema_for(kind.item_type)}
    return {"type": ["null", "string"]}


def _is_uuid(kind: pa.DataType) -> bool:
    return isinstance(kind, pa.BaseExtensionType) and kind.extension_name == "arrow.uuid"


def _is_binary(kind: pa.DataType) -> bool:
    t = pa.types
    return bool(t.is_binary(kind) or t.is_large_binary(kind) or t.is_fixed_size_binary(kind)
                or t.is_binary_view(kind))


def _is_list(kind: pa.DataType) -> bool:
    t = pa.types
    return bool(t.is_list(kind) or t.is_large_list(kind) or t.is_fixed_size_list(kind) or t.is_list_view(kind)
                or t.is_large_list_view(kind))


# Arrow array -> Python values ----------------------------------------------------------------


def column_values(array: pa.Array) -> tuple[list[Any], Problems]:
    """The values of one column in row order, and the rows whose value cannot be shown."""
    try:
        return _values(array), {}
    except Unrepresentable:
        pass
    # Find the rows one by one: only when some value is wrong, so the fast path stays vectorised.
    values: list[Any] = []
    problems: Problems = {}
    for i in range(len(array)):
        try:
            values.append(_values(array.slice(i, 1))[0])
        except Unrepresentable as exc:
            values.append(None)
            problems[i] = str(exc)
    return values, problems


def _values(array: pa.Array) -> list[Any]:
    kind = array.type
    t = pa.types
    if _is_uuid(kind):
        return [None if v is None else str(v) for v in array.to_pylist()]
    if isinstance(kind, pa.BaseExtensionType):
        return _values(array.storage)
    if t.is_dictionary(kind):
        return _values(array.dictionary_decode())
    if t.is_run_end_encoded(kind):
        return _values(call_function("run_end_decode", [array]))
    if t.is_floating(kind):
        return _floats(array)
    if t.is_timestamp(kind):
        return _timestamps(array)
    if t.is_time(kind):
        return _scaled(array, kind.unit, _clock)
    if t.is_duration(kind):
        return _scaled(array, kind.unit, _duration)
    if t.is_interval(kind):
        return [None if v is None else _interval(v) for v in array.to_pylist()]
    if _is_binary(kind):
        return [None if v is None else base64.b64encode(v).decode("ascii") for v in array.to_pylist()]
    if t.is_date(kind):
        return _dates(array)
    if _is_list(kind):
        return _lists(array)
    if t.is_struct(kind):
        return _structs(array)
    if t.is_map(kind):
        return _maps(array)
    if t.is_union(kind):
        raise Unrepresentable("a union value cannot be shown exactly")
    values: list[Any] = array.to_pylist()
    return values


def _floats(array: pa.Array) -> list[Any]:
    values: list[Any] = array.to_pylist()
    if call_function("any", [call_function("invert", [call_function("is_finite", [array])])]).as_py():
        return [v if v is None or v - v == 0 else None for v in values]  # NaN, inf: null in JSON
    return values


def _ints(array: pa.Array) -> list[int | None]:
    """The raw counts of a temporal array (its unit since the epoch or midnight)."""
    values: list[int | None] = array.view(pa.int64() if array.type.bit_width == 64 else pa.int32()).to_pylist()
    return values


def _scaled(array: pa.Array, unit: str, show: Callable[[int, str], str]) -> list[Any]:
    return [None if v is None else show(v, unit) for v in _ints(array)]


def _fraction(sub: int, unit: str) -> str:
    """``.123`` for ``sub`` units below the second, in the unit's digits; empty for none."""
    return f".{sub:0{_DIGITS[unit]}d}" if sub else ""


def _timestamps(array: pa.Array) -> list[Any]:
    kind = array.type
    zone = _zone(kind.tz) if kind.tz else None
    per_second = _PER_SECOND[kind.unit]
    out: list[Any] = []
    for v in _ints(array):
        if v is None:
            out.append(None)
            continue
        seconds, sub = divmod(v, per_second)
        try:
            moment = _EPOCH + timedelta(seconds=seconds)
            if zone is not None:
                moment = moment.replace(tzinfo=UTC).astimezone(zone)
        except OverflowError:
            raise Unrepresentable(f"timestamp {v} {kind.unit} since 1970 is outside years 1-9999, which a "
                                  "JSON date-time cannot show") from None
        text = moment.isoformat()
        out.append(text[:19] + _fraction(sub, kind.unit) + text[19:])
    return out


def _zone(name: str) -> Any:
    if name in ("UTC", "Z", "utc"):
        return UTC
    if name[:1] in "+-" and len(name) in (5, 6):
        hours, minutes = int(name[1:3]), int(name[-2:])
        offset = timedelta(hours=hours, minutes=minutes)
        return timezone(-offset if name[0] == "-" else offset)
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Unrepresentable(f"time zone {name!r} is not known on this machine") from None


def _clock(v: int, unit: str) -> str:
    seconds, sub = divmod(v, _PER_SECOND[unit])
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}{_fraction(sub, unit)}"


def _duration(v: int, unit: str) -> str:
    sign = "-" if v < 0 else ""
    seconds, sub = divmod(abs(v), _PER_SECOND[unit])
    return f"{sign}PT{seconds}{_fraction(sub, unit)}S"


def _interval(v: Any) -> str:
    """A month_day_nano interval: each part keeps its own sign (``P1M-2DT0.5S``)."""
    months, days, nanos = v
    sign = "-" if nanos < 0 else ""
    seconds, sub = divmod(abs(nanos), 1_000_000_000)
    return f"P{months}M{days}DT{sign}{seconds}{_fraction(sub, 'ns')}S"


def _dates(array: pa.Array) -> list[Any]:
    try:
        values: list[Any] = array.to_pylist()
    except (ValueError, OverflowError):
        raise Unrepresentable("the date is outside years 1-9999, which a JSON date cannot show") from None
    return values


def _lists(array: Any) -> list[Any]:
    inner = _values(array.flatten())  # the items of this slice's lists, nulls' left out
    lengths = call_function("list_value_length", [array]).to_pylist()
    out: list[Any] = []
    at = 0
    for length in lengths:
        if length is None:
            out.append(None)
        else:
            out.append(inner[at: at + length])
            at += length
    return out


def _structs(array: pa.StructArray) -> list[Any]:
    kind = array.type
    names = [kind.field(i).name for i in range(kind.num_fields)]
    columns = [_values(child) for child in array.flatten()]
    nulls = array.is_null().to_pylist()
    return [None if null else dict(zip(names, row, strict=True))
            for null, row in zip(nulls, zip(*columns, strict=True) if columns else [()] * len(array), strict=True)]


def _maps(array: pa.MapArray) -> list[Any]:
    starts = array.offsets.to_pylist()
    first = starts[0] if starts else 0
    span = (starts[-1] - first) if starts else 0
    keys = [_key_text(k) for k in _values(array.keys.slice(first, span))]  # this slice's entries only
    items = _values(array.items.slice(first, span))
    out: list[Any] = []
    for i, null in enumerate(array.is_null().to_pylist()):
        if null:
            out.append(None)
            continue
        a, b = starts[i] - first, starts[i + 1] - first
        entry = dict(zip(keys[a:b], items[a:b], strict=True))
        if len(entry) != b - a:
            raise Unrepresentable("the map holds the same key twice, which a JSON object cannot")
        out.append(entry)
    return out


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, date):
        return key.isoformat()
    return str(key)
