"""The strict schema's precheck (connector/config/schema_precheck.py) against jsonschema itself.

load_config skips jsonschema when the precheck says a config certainly passes, so the precheck
must never say so of a config jsonschema's Draft 7 validator finds an error in. Each field of the
strict schema, at every depth, is given values of every JSON type, its bounds and around them,
its enum values and defaults, and unknown fields are added and required ones removed; on JSON
values the two verdicts are the same, and on Python values a JSON config cannot hold the
precheck only ever defers.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from fractions import Fraction
from typing import Any

import jsonschema
import pytest

from connector.config.load import load_config
from connector.config.schema_precheck import certainly_valid
from connector.config.specification import validation_schema

SCHEMA = validation_schema()
BASE = {"url": "http://127.0.0.1:9/v1", "api_key": "sk-test-0123456789", "model": "m", "prompt": "Rate: {{text}}",
        "input": {"path": "rows.csv"}, "cache": {"enabled": False}}
_PROBES: list[Any] = [None, True, False, 0, 1, -1, 0.5, 1.0, -2.5, 2**70, 1e300, "", "x", "30", " 30s", "0.5",
                      "http://h/v1", [], [1], ["a"], [None], {}, {"a": 1}, {"a": "b"}]


def _fields(node: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    out = []
    for name, sub in node.get("properties", {}).items():
        out.append(((*path, name), sub))
        if isinstance(sub, dict) and "properties" in sub:
            out.extend(_fields(sub, (*path, name)))
    return out


def _values(field: dict[str, Any]) -> list[Any]:
    values = list(_PROBES) + list(field.get("enum", [])) + list(field.get("examples", []))
    if "default" in field:
        values.append(field["default"])
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if key in field:
            bound = field[key]
            values += [bound, bound - 1, bound + 1, bound - 0.5, bound + 0.5, float(bound)]
    for key in ("minLength", "maxLength", "minItems"):
        if key in field:
            values += ["y" * field[key], "y" * max(field[key] - 1, 0), ["z"] * field[key]]
    return values


def _with(config: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(config)
    node = out
    for step in path[:-1]:
        if not isinstance(node.get(step), dict):
            node[step] = {}
        node = node[step]
    node[path[-1]] = value
    return out


def _cases() -> list[dict[str, Any]]:
    cases = [BASE]
    for path, field in _fields(SCHEMA):
        cases += [_with(BASE, path, value) for value in _values(field)]
        cases.append(_with(BASE, (*path[:-1], "no_such_field"), 1))
        if field.get("type") == "object":
            cases.append(_with(BASE, path, {"no_such_field": 1}))
    for name in SCHEMA.get("required", []):
        cases.append({k: v for k, v in BASE.items() if k != name})
    return cases


def _jsonschema_passes(config: Any) -> bool:
    return not list(jsonschema.Draft7Validator(SCHEMA).iter_errors(config))


def test_the_precheck_and_jsonschema_agree_on_every_field_and_value() -> None:
    cases = _cases()
    disagree = [c for c in cases if certainly_valid(SCHEMA, c) != _jsonschema_passes(c)]
    assert not disagree, disagree[:3]
    passing = sum(map(_jsonschema_passes, cases))
    assert 500 < passing < len(cases)  # both verdicts well represented


@pytest.mark.parametrize("value", [Decimal("1.5"), Fraction(1, 2), (1, 2), 1 + 0j])
def test_a_value_no_json_holds_is_left_to_jsonschema(value: Any) -> None:
    for path, _field in _fields(SCHEMA):
        config = _with(BASE, path, value)
        assert not certainly_valid(SCHEMA, config) or _jsonschema_passes(config), path


def test_what_the_precheck_passes_is_still_checked_by_the_model() -> None:
    """A config the schema allows but a model rule refuses is refused as before."""
    with pytest.raises(Exception, match="concurrency"):
        load_config({**BASE, "concurrency": 4, "min_concurrency": 8})
