"""A config that certainly passes the strict schema, known without importing ``jsonschema``.

``load_config`` validates every config against the strict schema (spec/spec.json's) with
``jsonschema``'s Draft 7 validator, whose import alone costs ~33 ms of CPU here, in every ``check``
and ``discover`` (issue 25, cold start). :func:`certainly_valid` answers the common case, a config
that passes, with the keywords that schema uses, each applied as ``jsonschema`` applies it
(``jsonschema/_keywords.py``: a keyword only to an instance of its type, ``format`` not checked
without a format checker, ``integer`` a float with no fraction too). It is one-sided: True only when
the Draft 7 validator finds no error; any keyword or value it does not know for certain (a
``$ref``, ``anyOf``, a Decimal, an ``enum`` of objects) makes it False, and ``load_config`` then
asks ``jsonschema``, whose errors make the messages, exactly as before.
tests/test_config_precheck.py holds it to that against the validator on many configs.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Sized
from typing import Any

# One keyword's test: (its value in the schema, the instance, the schema node) -> no error for certain.
Check = Callable[[Any, Any, dict[str, Any]], bool]

# Keywords that only annotate (Draft 7, and the spec's own): they never make an error.
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "order", "airbyte_secret",
                          "writeOnly", "readOnly", "format", "group", "always_show", "airbyte_hidden"})
_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: _is_number(v),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (type(v) is float and v.is_integer()),
}
_SCALARS = (str, int, float, bool, type(None))


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)  # a Decimal or a Fraction is a number too, but not one known here


def certainly_valid(schema: Any, instance: Any) -> bool:
    """True only if ``jsonschema.Draft7Validator(schema)`` finds no error in ``instance`` (see the module doc)."""
    if schema is True or schema == {}:
        return True
    if not isinstance(schema, dict):
        return False
    for keyword, expected in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        check = _KEYWORDS.get(keyword)
        if check is None or not check(expected, instance, schema):
            return False
    return True


def _type(expected: Any, instance: Any, _schema: Any) -> bool:
    kinds = [expected] if isinstance(expected, str) else expected
    return isinstance(kinds, list) and any(kind in _TYPES and _TYPES[kind](instance) for kind in kinds)


def _properties(expected: Any, instance: Any, schema: Any) -> bool:
    if not isinstance(instance, dict):
        return True
    extra = schema.get("additionalProperties", True)
    if not isinstance(expected, dict) or "patternProperties" in schema:
        return False
    for key, value in instance.items():
        if key in expected:
            if not certainly_valid(expected[key], value):
                return False
        elif extra is not True and not (isinstance(extra, dict) and certainly_valid(extra, value)):
            return False
    return True


def _additional(expected: Any, instance: Any, schema: Any) -> bool:
    if "properties" in schema or not isinstance(instance, dict):  # with properties: checked there
        return True
    return expected is True or (isinstance(expected, dict) and all(certainly_valid(expected, v)
                                                                   for v in instance.values()))


def _required(expected: Any, instance: Any, _schema: Any) -> bool:
    return not isinstance(instance, dict) or all(key in instance for key in expected)


def _enum(expected: Any, instance: Any, _schema: Any) -> bool:
    # Same type and equal: what jsonschema's equality says too (it tells True from 1, and 1 from 1.0 not).
    return isinstance(instance, _SCALARS) and any(type(each) is type(instance) and each == instance
                                                  for each in expected)


def _numeric(test: Callable[[Any, Any], bool]) -> Check:
    def check(expected: Any, instance: Any, _schema: Any) -> bool:
        if isinstance(instance, bool) or not isinstance(instance, numbers.Number):
            return True  # not a number (jsonschema's "number" is not a bool): the keyword does not apply
        return _is_number(instance) and _is_number(expected) and bool(test(instance, expected))
    return check


def _sized(kind: type[Sized], test: Callable[[int, Any], bool]) -> Check:
    def check(expected: Any, instance: Any, _schema: Any) -> bool:
        return not isinstance(instance, kind) or bool(test(len(instance), expected))
    return check


def _pattern(expected: Any, instance: Any, _schema: Any) -> bool:
    return not isinstance(instance, str) or re.search(expected, instance) is not None


def _items(expected: Any, instance: Any, _schema: Any) -> bool:
    if not isinstance(instance, list):
        return True
    return isinstance(expected, dict) and all(certainly_valid(expected, item) for item in instance)


_KEYWORDS: dict[str, Check] = {
    "type": _type,
    "properties": _properties,
    "additionalProperties": _additional,
    "required": _required,
    "enum": _enum,
    "minimum": _numeric(lambda value, bound: value >= bound),
    "maximum": _numeric(lambda value, bound: value <= bound),
    "exclusiveMinimum": _numeric(lambda value, bound: value > bound),
    "exclusiveMaximum": _numeric(lambda value, bound: value < bound),
    "minLength": _sized(str, lambda length, bound: length >= bound),
    "maxLength": _sized(str, lambda length, bound: length <= bound),
    "minItems": _sized(list, lambda length, bound: length >= bound),
    "pattern": _pattern,
    "items": _items,
}
