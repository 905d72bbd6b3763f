"""``input.cursor``: a column whose value says which rows a sync has enriched, compared in its own type.

A cursor sync keeps, in the STATE, the highest cursor value it enriched and the keys of the rows
AT that value (the primary key's text, or a SHA-256 of the row without one). The next sync reads
the rows whose cursor is ``>=`` that value and drops those keys: a row inserted or updated since
with the same value as the boundary is read, one already enriched is not, whatever the split.

Values are compared in the column's type, never as text unless the column is text:

=============  =========================================  ==================================
kind           column (Arrow type or declared JSON type)  compared as
=============  =========================================  ==================================
``integer``    integers                                   int
``number``     floats, decimals (``numeric``)             exact Decimal
``string``     text (uuid, time text too)                 code points (SQL: the database's
                                                          collation, the query orders)
``date``       date32/64, ``format: date``                datetime.date
``timestamp``  timestamps, ``format: date-time``          the instant (offsets applied) and
                                                          its nanoseconds
=============  =========================================  ==================================

A column mixing timestamps with and without an offset cannot be ordered: that row's error.
The stream state's ``cursor`` key (:class:`CursorState`) is what this module reads and writes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

import orjson
import pyarrow as pa

from connector import jsonbytes
from connector.config.input import InputConfig
from connector.errors import ConfigError, StateError
from connector.rows.columns import SCHEMA_KEY
from connector.rows.fingerprint import row_bytes
from connector.rows.kinds import TIMESTAMP_TEXT
from connector.rows.table import Row

KINDS = ("integer", "number", "string", "date", "timestamp")
ROW_HASH = "row_sha256"  # the boundary's keys are row hashes (no input.primary_key)


class CursorValueError(ValueError):
    """A cursor value that cannot be read as the column's kind."""


def cursor_kind(schema: pa.Schema, column: str) -> str:
    """The kind of ``column`` (see the module doc); ConfigError when it is missing or cannot order rows."""
    if column not in schema.names:
        raise ConfigError(f"input.cursor: column {column!r} is not in the input; its columns are: "
                          f"{', '.join(schema.names) or '(none)'}")
    meta = schema.field(column).metadata or {}
    declared = orjson.loads(meta[SCHEMA_KEY]) if SCHEMA_KEY in meta else {}
    kinds = declared.get("type", [])
    found = {kinds} if isinstance(kinds, str) else set(kinds)
    found.discard("null")
    if found == {"integer"}:
        return "integer"
    if found and found <= {"integer", "number"}:
        return "number"
    form = str(declared.get("format") or "")
    if found == {"string"} and form in ("", "uuid", "time", "date", "date-time"):
        return {"date": "date", "date-time": "timestamp"}.get(form, "string")
    raise ConfigError(f"input.cursor: column {column!r} holds {form or '/'.join(sorted(found))} "
                      "values, which cannot order rows; a cursor is an integer, number, text, date or timestamp "
                      "column (an updated_at, or an id that only grows)")


def sort_key(kind: str, value: Any) -> Any:
    """``value`` (as a row holds it) as a Python value that compares in the column's type; None stays None."""
    if value is None:
        return None
    try:
        if kind == "integer":
            if isinstance(value, bool):
                raise CursorValueError(f"{value!r} is not an integer")
            return int(value)
        if kind == "number":
            return value if isinstance(value, Decimal) else Decimal(str(value))
        if kind == "string":
            return value if isinstance(value, str) else jsonbytes.dumps(value).decode()
        if kind == "date":
            return date.fromisoformat(str(value)) if len(str(value)) == 10 else _bad(value, "a date")
        return _instant(str(value))
    except (ValueError, InvalidOperation, TypeError) as exc:
        if isinstance(exc, CursorValueError):
            raise
        raise CursorValueError(f"{str(value)[:40]!r} is not {'an' if kind == 'integer' else 'a'} {kind}") from None


def _bad(value: Any, what: str) -> NoReturn:
    raise CursorValueError(f"{str(value)[:40]!r} is not {what}")


def _instant(text: str) -> tuple[datetime, int]:
    """An ISO 8601 timestamp as (second, nanoseconds): in UTC when it has an offset, else as written."""
    match = TIMESTAMP_TEXT.fullmatch(text)
    if not match:
        _bad(text, "an ISO 8601 timestamp")
    day, hour, minute, _, second, fraction, zone = match.groups()
    moment = datetime.fromisoformat(f"{day}T{hour}:{minute}:{second or '00'}")
    if zone:
        offset = timedelta() if zone == "Z" else timedelta(hours=int(zone[1:3]), minutes=int(zone[-2:]))
        moment = moment.replace(tzinfo=timezone(-offset if zone[0] == "-" else offset)).astimezone(timezone.utc)
    return moment, int((fraction or ".")[1:].ljust(9, "0"))


def stored(kind: str, value: Any) -> Any:
    """A cursor value as the STATE keeps it: as the row held it, a number as its exact text."""
    return str(sort_key(kind, value)) if kind == "number" and value is not None else value


def bind_value(kind: str, key: Any) -> Any:
    """A sort key as a query parameter of the column's type (a timestamp to the microsecond)."""
    if kind == "timestamp":
        moment, nanos = key
        return moment + timedelta(microseconds=nanos // 1000)
    return key


def row_key(row: Row, key_column: str | None) -> str:
    """What tells a row at the boundary from another: its primary key as text, else a hash of the row."""
    if key_column is None:
        return hashlib.sha256(row_bytes(row)).hexdigest()[:32]
    value = row.get(key_column)
    return value if isinstance(value, str) else jsonbytes.dumps(value).decode()


def source_of(config: InputConfig) -> str:
    """A digest of where the rows come from (path, or query and database; never a credential): a
    cursor saved for one input is refused for another."""
    where: list[Any] = [config.path, config.sql, config.database.shown() if config.database else None,
                        "inline rows" if config.rows is not None else None]
    return hashlib.sha256(orjson.dumps(where)).hexdigest()[:32]


@dataclass(frozen=True)
class Mark:
    """The highest cursor value enriched (None: no row with a value yet) and the keys of the rows at it."""

    value: Any = None  # as the row held it (a number kept as its exact text)
    keys: frozenset[str] = frozenset()

    def as_state(self) -> dict[str, Any]:
        return {"value": self.value, "keys_at_value": sorted(self.keys)}

    @classmethod
    def from_state(cls, raw: Any, where: str) -> Mark:
        keys = raw.get("keys_at_value") if isinstance(raw, dict) else None
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or "value" not in raw:
            raise StateError(f"{where} must hold 'value' and 'keys_at_value' (a list of text); pass the state "
                             "this source emitted, or none to start over")
        return cls(raw["value"], frozenset(keys))


@dataclass(frozen=True)
class CursorState:
    """The stream state's ``cursor`` key: the column, its kind, what keys the boundary rows, the input's
    digest, the mark reached; and, while a file input's sync is under way, the mark it selected rows
    after (the STATE's ``position`` then counts that selection's rows done)."""

    column: str
    kind: str
    keyed_by: str  # input.primary_key, or ROW_HASH
    source: str
    mark: Mark
    selected_from: Mark | None = None

    def as_state(self) -> dict[str, Any]:
        out = {"column": self.column, "type": self.kind, "keyed_by": self.keyed_by, "input": self.source,
               **self.mark.as_state()}
        if self.selected_from is not None:
            out["selected_from"] = self.selected_from.as_state()
        return out

    @classmethod
    def from_state(cls, raw: Any, where: str) -> CursorState:
        texts = [raw.get(k) if isinstance(raw, dict) else None for k in ("column", "type", "keyed_by", "input")]
        if not all(isinstance(t, str) for t in texts) or texts[1] not in KINDS:
            raise StateError(f"{where} must hold 'column', 'type' (one of {', '.join(KINDS)}), 'keyed_by' and "
                             "'input'; pass the state this source emitted, or none to start over")
        selected = raw.get("selected_from")
        column, kind, keyed_by, source = (str(t) for t in texts)
        return cls(column, kind, keyed_by, source, Mark.from_state(raw, where),
                   None if selected is None else Mark.from_state(selected, f"{where}.selected_from"))
