"""The shape of JSON values seen in a column: which JSON types, and for objects and arrays what inside.

A JSONL file, inline rows and undeclared stdin columns are typed by what their values
are, never by converting them: a column whose values are all JSON integers is an
``integer`` column, integers and fractions make a ``number`` column (each value
kept as written), and a column holding more than one JSON type is declared with
all of them (``["null", "integer", "string"]``) and written to output files as
JSON text. Objects are declared with the properties seen in any of them, arrays
with the shape of every item seen.

Memory is bounded: an object shape stops tracking properties after
:data:`MAX_PROPERTIES` distinct keys (it is then declared as a plain object), and
nesting is followed :data:`MAX_DEPTH` levels deep.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

MAX_PROPERTIES = 1000
MAX_DEPTH = 8

_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object", list: "array",
               type(None): "null"}
_ORDER = ("boolean", "integer", "number", "string", "object", "array")


def json_type(value: Any) -> str:
    """The JSON type of a parsed JSON value ("other" for what JSON cannot hold)."""
    return _JSON_TYPES.get(type(value)) or _fallback_type(value)


def _fallback_type(value: Any) -> str:
    for cls, name in _JSON_TYPES.items():
        if isinstance(value, cls):
            return name
    return "other"


class Shape:
    """JSON types seen in one place (a column, a property, array items), and what was inside."""

    __slots__ = ("depth", "items", "loose", "props", "types")

    def __init__(self, depth: int = 0) -> None:
        self.types: set[str] = set()
        self.props: dict[str, Shape] = {}
        self.items: Shape | None = None
        self.loose = depth >= MAX_DEPTH  # objects and arrays here are not looked into
        self.depth = depth

    def observe(self, value: Any) -> None:
        kind = json_type(value)
        self.types.add(kind)
        if self.loose:
            return
        if kind == "object":
            for key, inner in value.items():
                shape = self.props.get(key)
                if shape is None:
                    if len(self.props) >= MAX_PROPERTIES:
                        self.loose, self.props = True, {}
                        return
                    shape = self.props[key] = Shape(self.depth + 1)
                shape.observe(inner)
            missing = self.props.keys() - value.keys()
            for key in missing:
                self.props[key].types.add("null")
        elif kind == "array":
            if self.items is None:
                self.items = Shape(self.depth + 1)
            for inner in value:
                self.items.observe(inner)

    def merge(self, other: Shape) -> None:
        """Fold in the shape of the same place seen elsewhere (another file, another chunk)."""
        self.types |= other.types
        self.loose = self.loose or other.loose
        if self.loose:
            self.props, self.items = {}, None
            return
        for key, shape in other.props.items():
            if key in self.props:
                self.props[key].merge(shape)
            else:
                self.props[key] = shape
        if other.items is not None:
            if self.items is None:
                self.items = other.items
            else:
                self.items.merge(other.items)

    @property
    def kinds(self) -> list[str]:
        """The non-null JSON types, integer folded into number when both were seen."""
        kinds = [k for k in _ORDER if k in self.types]
        if "integer" in kinds and "number" in kinds:
            kinds.remove("integer")
        return kinds

    def json_schema(self) -> dict[str, Any]:
        """The declared JSON schema (always nullable)."""
        kinds = self.kinds
        if "other" in self.types:
            return {}
        if not kinds:
            return {"type": ["null", "string"]}
        if len(kinds) > 1:
            return {"type": ["null", *kinds]}
        kind = kinds[0]
        schema: dict[str, Any] = {"type": ["null", kind]}
        if kind == "object" and not self.loose and self.props:
            schema["properties"] = {key: shape.json_schema() for key, shape in self.props.items()}
        elif kind == "array" and not self.loose and self.items is not None and self.items.types:
            schema["items"] = self.items.json_schema()
        return schema

    def arrow_type(self) -> pa.DataType:
        """The Arrow type output files write this column with (JSON text where JSON types mix)."""
        kinds = self.kinds
        if len(kinds) != 1 or "other" in self.types:
            return pa.string()
        kind = kinds[0]
        if kind == "object":
            if self.loose or not self.props:
                return pa.string()
            return pa.struct([pa.field(key, shape.arrow_type()) for key, shape in self.props.items()])
        if kind == "array":
            if self.loose or self.items is None or not self.items.types:
                return pa.string()
            return pa.list_(self.items.arrow_type())
        return {"boolean": pa.bool_(), "integer": pa.int64(), "number": pa.float64()}.get(kind, pa.string())

    def fits(self, value: Any) -> bool:
        """Whether a value seen later (on stdin, after the columns were fixed) fits this shape's top level.

        Null fits everything; an integer fits a number column; a column seen only as null
        takes any value.
        """
        if value is None or not self.kinds:
            return True
        kind = json_type(value)
        return kind in self.types or (kind == "integer" and "number" in self.types)
