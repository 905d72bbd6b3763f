"""Row values back into Arrow arrays of the input's own types: the inverse of :mod:`connector.rows.arrow_values`.

A record holds each input value in its JSON form (a ns timestamp as ISO text, a
duration as ``PT1.5S``, binary as base64, a map as an object, a decimal as a
``Decimal``); an output file (or a Spark/Ray batch) gets the column back in the
type the input had, with every digit. :func:`build_array` compiles one converter
per Arrow type, like the request templates compile once per template.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connector.jsonbytes import dumps

Convert = Callable[[Any], Any]
_EPOCH = datetime(1970, 1, 1)
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?")
_DURATION = re.compile(r"(-?)PT(\d+)(?:\.(\d{1,9}))?S")
_CLOCK = re.compile(r"(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?")
_INTERVAL = re.compile(r"P(-?\d+)M(-?\d+)DT(-?)(\d+)(?:\.(\d{1,9}))?S")


def _nanos(fraction: str | None) -> int:
    return int((fraction or "").ljust(9, "0")) if fraction else 0


def _in_unit(nanos: int, unit: str, text: Any) -> int:
    count, rest = divmod(nanos, 1_000_000_000 // _PER_SECOND[unit])
    if rest:
        raise ValueError(f"{text!r} has more digits than a {unit} column holds")
    return count


def _counted(unit: str, nanos_of: Callable[[Any], int]) -> Convert:
    """A converter to a count of ``unit`` (what ``pa.array`` takes for timestamps, durations, times)."""
    def convert(value: Any) -> Any:
        if value is None or isinstance(value, int):
            return value
        return _in_unit(nanos_of(value), unit, value)
    return convert


def _timestamp_nanos(value: Any) -> int:
    """Nanoseconds since 1970 (UTC when the text has an offset)."""
    text = value.isoformat() if isinstance(value, datetime) else value
    match = _TIMESTAMP.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not an ISO 8601 date-time")
    day, hour, minute, second, fraction, zone = match.groups()
    moment = datetime.combine(date.fromisoformat(day), time(int(hour), int(minute), int(second or 0)))
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    if zone and zone != "Z":
        digits = zone.replace(":", "")
        offset = int(digits[1:3]) * 3600 + int(digits[3:5]) * 60
        seconds -= offset if digits[0] == "+" else -offset
    return seconds * 1_000_000_000 + _nanos(fraction)


def _duration_nanos(value: Any) -> int:
    if isinstance(value, timedelta):
        return (value // timedelta(microseconds=1)) * 1000
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a duration (PT<seconds>S)")
    nanos = int(match[2]) * 1_000_000_000 + _nanos(match[3])
    return -nanos if match[1] else nanos


def _clock_nanos(value: Any) -> int:
    text = value.isoformat() if isinstance(value, time) else value
    match = _CLOCK.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a time of day")
    seconds = int(match[1]) * 3600 + int(match[2]) * 60 + int(match[3] or 0)
    return seconds * 1_000_000_000 + _nanos(match[4])


def _interval(value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    match = _INTERVAL.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not an interval (P<m>M<d>DT<s>S)")
    nanos = int(match[4]) * 1_000_000_000 + _nanos(match[5])
    return pa.MonthDayNano([int(match[1]), int(match[2]), -nanos if match[3] else nanos])


def _text(value: Any) -> Any:
    return value if value is None or isinstance(value, str) else dumps(value).decode()


def _binary(value: Any) -> Any:
    return base64.b64decode(value, validate=True) if isinstance(value, str) else value


def _decimal(value: Any) -> Any:
    if value is None or isinstance(value, Decimal):
        return value
    return Decimal(repr(value) if isinstance(value, float) else str(value))


def _date(value: Any) -> Any:
    return date.fromisoformat(value) if isinstance(value, str) else value


def _uuid(value: Any) -> Any:
    return uuid.UUID(value).bytes if isinstance(value, str) else value


def _same(value: Any) -> Any:
    return value


def _key(kind: pa.DataType) -> Convert:
    """Map keys arrive as object keys (text): back to the key type."""
    inner = converter_for(kind)
    t = pa.types
    if t.is_integer(kind):
        return int
    if t.is_floating(kind):
        return float
    if t.is_boolean(kind):
        return lambda text: text == "true"
    return inner or _same


def converter_for(kind: pa.DataType) -> Convert | None:
    """How one row value becomes a value ``pa.array`` takes for ``kind``; None when it already is one."""
    t = pa.types
    if t.is_timestamp(kind):
        return _counted(kind.unit, _timestamp_nanos)
    if t.is_duration(kind):
        return _counted(kind.unit, _duration_nanos)
    if t.is_time(kind):
        return _counted(kind.unit, _clock_nanos)
    if t.is_interval(kind):
        return _interval
    if t.is_string(kind) or t.is_large_string(kind) or t.is_string_view(kind):
        return _text
    if t.is_binary(kind) or t.is_large_binary(kind) or t.is_fixed_size_binary(kind) or t.is_binary_view(kind):
        return _binary
    if t.is_decimal(kind):
        return _decimal
    if t.is_date(kind):
        return _date
    if t.is_list(kind) or t.is_large_list(kind) or t.is_fixed_size_list(kind) or t.is_list_view(kind) \
            or t.is_large_list_view(kind):
        each = converter_for(kind.value_type)
        if each is None:
            return None
        return lambda v: v if v is None else [each(x) for x in v]
    if t.is_struct(kind):
        fields = [(kind.field(i).name, converter_for(kind.field(i).type) or _same) for i in range(kind.num_fields)]
        if all(c is _same for _, c in fields):
            return None
        return lambda v: v if v is None else {name: c(v.get(name)) for name, c in fields}
    if t.is_map(kind):
        key, item = _key(kind.key_type), converter_for(kind.item_type) or _same
        return lambda v: v if not isinstance(v, dict) else [(key(k), item(x)) for k, x in v.items()]
    return None


def build_array(values: list[Any], kind: pa.DataType) -> pa.Array:
    """An Arrow array of ``kind`` from row values; ValueError or an Arrow error when one does not fit."""
    if isinstance(kind, pa.BaseExtensionType):
        storage = [_uuid(v) for v in values] if kind.extension_name == "arrow.uuid" else values
        return pa.ExtensionArray.from_storage(kind, build_array(storage, kind.storage_type))
    if pa.types.is_dictionary(kind):
        plain = build_array(values, kind.value_type)
        return pc.cast(plain.dictionary_encode(), kind)
    if pa.types.is_run_end_encoded(kind):
        return pc.run_end_encode(build_array(values, kind.value_type), run_end_type=kind.run_end_type)
    convert = converter_for(kind)
    if convert is not None:
        values = [None if v is None else convert(v) for v in values]
    return pa.array(values, type=kind)
