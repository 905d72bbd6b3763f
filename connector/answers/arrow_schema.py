"""Enriched records as Arrow: the Arrow schema decided from the records' JSON schema, and batches of it.

Used by ``run``'s files (:mod:`connector.standalone.writers`) and the Spark and Ray workers
(:mod:`connector.scaleout.worker`): input columns keep the input's own Arrow types, every other
column gets the Arrow type of its JSON schema type (see the writers' module doc).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from connector.answers.arrow_build import build_array
from connector.errors import OutputError


def _non_null_types(prop: Mapping[str, Any]) -> list[str]:
    kind = prop.get("type")
    kinds = [kind] if isinstance(kind, str) else list(kind or [])
    return [k for k in kinds if k != "null"]


def arrow_type_for(prop: Mapping[str, Any]) -> pa.DataType | None:
    """The Arrow type of one JSON schema property, or None when it is written as JSON text."""
    kinds = _non_null_types(prop)
    if len(kinds) != 1:
        return None
    kind = kinds[0]
    if kind == "string":
        fmt = prop.get("format")
        if fmt == "date":
            return pa.date32()
        if fmt == "date-time":
            return pa.timestamp("us", tz="UTC" if prop.get("airbyte_type") == "timestamp_with_timezone" else None)
        if fmt == "time":
            return pa.time64("us")
        return pa.string()
    if kind == "integer":
        return pa.int64()
    if kind == "number":
        return pa.float32() if prop.get("format") == "float" else pa.float64()  # OpenAPI's 32-bit float
    if kind == "boolean":
        return pa.bool_()
    if kind == "array":
        items = prop.get("items")
        inner = arrow_type_for(items) if isinstance(items, Mapping) else None
        size = prop.get("minItems")
        if inner is not None and isinstance(size, int) and size > 0 and prop.get("maxItems") == size:
            return pa.list_(inner, size)  # a fixed-size list: a vector of known length
        return pa.list_(inner) if inner is not None else None
    if kind == "object":
        props = prop.get("properties")
        if not isinstance(props, Mapping) or not props:
            return None
        fields = []
        for name, sub in props.items():
            sub_type = arrow_type_for(sub) if isinstance(sub, Mapping) else None
            if sub_type is None:
                return None
            fields.append(pa.field(name, sub_type))
        return pa.struct(fields)
    return None


def _is_vector(kind: pa.DataType) -> bool:
    """A variable-length list of float32: a vector column whose length is not known yet."""
    return bool(pa.types.is_list(kind) and pa.types.is_float32(kind.value_type))


def _csv_native(kind: pa.DataType) -> bool:
    """Types a CSV cell shows exactly as the record does; the rest are written as the record's text."""
    t = pa.types
    return bool(t.is_boolean(kind) or t.is_integer(kind) or t.is_floating(kind) or t.is_string(kind)
                or t.is_large_string(kind) or t.is_date32(kind))  # Arrow writes a decimal 1E-9: not as the record


class Columns:
    """The output schema, and which columns hold JSON text."""

    def __init__(self, json_schema: Mapping[str, Any], input_schema: pa.Schema | None, fmt: str) -> None:
        fields: list[pa.Field] = []
        self.as_text: set[str] = set()
        given = {f.name: f.type for f in input_schema} if input_schema is not None else {}
        for name, prop in (json_schema.get("properties") or {}).items():
            kind = given.get(name)
            if kind is None or pa.types.is_null(kind):
                kind = arrow_type_for(prop)
            if kind is None or (fmt == "csv" and not _csv_native(kind)):
                kind = pa.string()
                self.as_text.add(name)
            fields.append(pa.field(name, kind))
        self.schema = pa.schema(fields)
        # Vectors whose length the config does not fix get it from the first one written (Parquet).
        self.unsized = {f.name for f in fields if fmt == "parquet" and _is_vector(f.type)}

    def settle(self, rows: list[dict[str, Any]]) -> bool:
        """Fix each unsized vector column's length from the first vector in ``rows``; whether every
        column's type is now known."""
        for name in list(self.unsized):
            vector = next((v for v in (row.get(name) for row in rows) if isinstance(v, list) and v), None)
            if vector is not None:
                index = self.schema.get_field_index(name)
                sized = pa.list_(self.schema.field(index).type.value_type, len(vector))
                self.schema = self.schema.set(index, pa.field(name, sized))
                self.unsized.discard(name)
        return not self.unsized

    def batch(self, rows: list[dict[str, Any]]) -> pa.RecordBatch:
        arrays = []
        for field in self.schema:
            name = field.name
            values = [row.get(name) for row in rows]
            try:
                arrays.append(build_array(values, field.type))  # text columns take any value as JSON text
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError,
                    ValueError) as exc:
                bad = next((v for v in values if v is not None), None)
                raise OutputError(f"column '{name}' ({field.type}): a value does not fit ({exc}); e.g. "
                                  f"{str(bad)[:80]!r}. Declare the column's type (input.columns) or fix the "
                                  "input") from None
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)
