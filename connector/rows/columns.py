"""What the rows stage hands on: columns declared once, rows, and rows with a value that did not fit.

Every input (a file, inline rows, stdin) decides its columns before the first row:
each :class:`Column` has the JSON schema ``discover`` declares and the Arrow type
output files write. The table's Arrow schema carries the JSON schema in each
field's metadata (:data:`SCHEMA_KEY`), so later stages that only see the Arrow
schema (the catalog, the output writers, a Spark or Ray worker) declare exactly
what the reader decided.

A row whose value does not fit its column (a declared ``integer`` holding
``abc``, a timestamp beyond year 9999) is still a row: a :class:`FlawedRow`, its
bad cell null, its ``problem`` naming the position, column and value. The
enricher makes it a ``bad_input`` error record without asking the endpoint.

Input columns named like the record's metadata columns (an input that is
itself an enrichment: ``_status``, ``_row_number``, ...) are kept under
``input.metadata_prefix`` (:func:`renames`): ``_status`` becomes ``input_status``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from connector import jsonbytes
from connector.errors import InputError
from connector.rows.arrow_values import column_values, json_schema_for
from connector.rows.table import Row

SCHEMA_KEY = b"json_schema"


class FlawedRow(dict[str, Any]):
    """A row with a value that does not fit its column; ``problem`` says where and why."""

    def __init__(self, values: Mapping[str, Any], problem: str) -> None:
        super().__init__(values)
        self.problem = problem


@dataclass(frozen=True)
class Column:
    """One input column: its name in the input, its declared JSON schema and its Arrow type."""

    name: str
    schema: Mapping[str, Any]
    arrow: pa.DataType
    kind: str | None = None  # the type text cells are read as (CSV): declared or found by the scan


def field_schema(field: pa.Field) -> dict[str, Any]:
    """The JSON schema of one field of a table's Arrow schema (or of any Arrow schema)."""
    meta = field.metadata or {}
    if SCHEMA_KEY in meta:
        schema: dict[str, Any] = orjson.loads(meta[SCHEMA_KEY])
        return schema
    return json_schema_for(field.type)


def arrow_schema(columns: Sequence[Column], names: Mapping[str, str] | None = None) -> pa.Schema:
    """The Arrow schema of these columns (renamed by ``names``), each field carrying its JSON schema."""
    names = names or {}
    return pa.schema([pa.field(names.get(c.name, c.name), c.arrow,
                                metadata={SCHEMA_KEY: orjson.dumps(dict(c.schema))}) for c in columns])


def renames(columns: Sequence[str], reserved: Collection[str], prefix: str) -> dict[str, str]:
    """Input name -> record name, for the input columns whose names the record reserves.

    ``_status`` with prefix ``input`` becomes ``input_status``; a name that does not start with
    ``_`` gets ``prefix_`` (``input_answer``). InputError when the new name is taken too.
    """
    taken = set(columns)
    out: dict[str, str] = {}
    for name in columns:
        if name not in reserved:
            continue
        new = prefix + name if name.startswith("_") else f"{prefix}_{name}"
        if new in taken or new in reserved:
            raise InputError(
                f"input: column {name!r} has the name of a column this connector adds to each record, and "
                f"{new!r}, the name it would be kept under, is taken too; set input.metadata_prefix to "
                "another prefix")
        taken.add(new)
        out[name] = new
    return out


def rename_notes(names: Mapping[str, str]) -> list[str]:
    """What a read says about the input columns it keeps under another name."""
    if not names:
        return []
    kept = ", ".join(f"{old} as {new}" for old, new in names.items())
    return [f"input: column(s) named like this connector's metadata columns are kept under "
            f"input.metadata_prefix: {kept}"]


def duplicates(names: Sequence[str]) -> list[str]:
    """Names that occur more than once (a row keyed by name would lose all but one of their values)."""
    return sorted(name for name, count in Counter(names).items() if count > 1)


def too_deep(column: str, value: Any) -> str | None:
    """Why a JSON value cannot be sent or written (nested deeper than the serialiser goes: 255 levels),
    for a row's ``problem``; None when it can. Only arrays and objects are looked at."""
    if not isinstance(value, (dict, list)):
        return None
    try:
        jsonbytes.dumps(value)
    except TypeError as exc:  # orjson: "Recursion limit reached"
        return (f"column {column!r}: the value cannot be sent or written ({exc}: arrays and objects nested more "
                f"than {jsonbytes.MAX_DEPTH} levels deep); flatten it, or send it as text")
    return None


def unfit_message(column: str, reason: str, declared: str | None) -> str:
    """One cell's trouble, for a row's ``problem``."""
    if declared is None:
        return f"column {column!r}: {reason}"
    return (f"column {column!r}: {reason} (input.columns declares it {declared}); correct the value, or declare "
            "the column string to keep it as written")


def flag(rows: list[Row], unfit: Mapping[int, list[str]], where: Callable[[int], str]) -> None:
    """Turn the rows with unfit cells into :class:`FlawedRow` s; ``where(i)`` names row ``i``'s position."""
    for i, messages in unfit.items():
        rows[i] = FlawedRow(rows[i], f"{where(i)}, {'; '.join(messages)}")


def arrow_rows(batch: pa.RecordBatch | pa.Table, where: Callable[[int], str],
               names: Mapping[str, str] | None = None) -> list[Row]:
    """The rows of an Arrow batch (a Spark or Ray worker's input), every value exact
    (:mod:`arrow_values`); a value that cannot be shown makes its row a :class:`FlawedRow`."""
    names = names or {}
    values: list[list[Any]] = []
    unfit: dict[int, list[str]] = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        got, problems = column_values(array)
        for i, reason in problems.items():
            unfit.setdefault(i, []).append(unfit_message(name, reason, None))
        values.append(got)
    out = [names.get(n, n) for n in batch.schema.names]
    rows: list[Row] = [dict(zip(out, row, strict=True)) for row in zip(*values, strict=True)] if values \
        else [{} for _ in range(batch.num_rows)]
    flag(rows, unfit, where)
    return rows
