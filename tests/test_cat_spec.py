"""Airbyte's connector acceptance tests (CAT) for the spec, re-implemented against our executable.

Each check below follows ``TestSpec`` in airbytehq/airbyte's
``connector-acceptance-test/connector_acceptance_test/tests/test_core.py``: the same
paths searched (dpath globs), the same rules. The spec comes from running the
installed console script, as CAT runs the image. Beside them: the configs people
have today (object and text templates, maps of headers and prices, the AI Squared
form) validate against the published spec as PyAirbyte validates them before
``read``, and typos the published spec lets through are still refused, at ``check``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from connector.config.load import load_config
from connector.config.specification import SPEC_PATH
from connector.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SECRET_NAMES = ("client_token", "access_token", "api_token", "token", "secret", "client_secret", "password", "key",
                "service_account_info", "service_account", "tenant_id", "certificate", "jwt", "credentials",
                "app_id", "appid", "refresh_token")
FORBIDDEN = ("not", "anyOf", "patternProperties", "prefixItems", "allOf", "if", "then", "else",
             "dependentSchemas", "dependentRequired")
DATE_PATTERN = "^[0-9]{2}-[0-9]{2}-[0-9]{4}$"
DATETIME_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2})?$"

Path_ = tuple[str, ...]


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    """The SPEC message's body, from the installed executable (the console script of the package)."""
    script = shutil.which("source-openai-compatible", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "connector"]
    out = subprocess.run([*command, "spec"], capture_output=True, text=True, timeout=60, check=True).stdout
    (message,) = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert message["type"] == "SPEC"
    return dict(message["spec"])


@pytest.fixture(scope="module")
def connection(spec: dict[str, Any]) -> dict[str, Any]:
    return dict(spec["connectionSpecification"])


# dpath.util.search(obj, glob, yielded=True), for the globs CAT uses ------------------------------


def _walk(node: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        here = (*path, str(key))
        yield here, value
        yield from _walk(value, here)


def _matches(path: Path_, glob: Path_) -> bool:
    if not glob:
        return not path
    if glob[0] == "**":
        return any(_matches(path[i:], glob[1:]) for i in range(len(path) + 1))
    return bool(path) and fnmatchcase(path[0], glob[0]) and _matches(path[1:], glob[1:])


def search(node: Any, glob: str) -> list[tuple[str, Any]]:
    parts = tuple(glob.strip("/").split("/"))
    return [("/".join(path), value) for path, value in _walk(node) if _matches(path, parts)]


def get(node: Any, path: str) -> Any:
    for step in filter(None, path.split("/")):
        node = node[int(step)] if isinstance(node, list) else node[step]
    return node


def parent(node: Any, path: str) -> Any:
    return get(node, path.rsplit("/", 1)[0] if "/" in path else "")


# TestSpec's checks ---------------------------------------------------------------------------


def test_match_expected(spec: dict[str, Any]) -> None:
    assert spec == json.loads(SPEC_PATH.read_text())


def test_enum_usage(connection: dict[str, Any]) -> None:
    for path, values in search(connection, "**/enum"):
        assert len(set(map(json.dumps, values))) == len(values), f"duplicate enum values at {path}"


def test_oneof_usage(connection: dict[str, Any]) -> None:
    for path, variants in search(connection, "**/oneOf") + search(connection, "**/anyOf"):
        assert parent(connection, path).get("type") == "object", path
        assert all("properties" in v for v in variants), path
        common = set.intersection(*(set(v["properties"]) for v in variants))
        consts = [c for c in common if all("const" in v["properties"][c] for v in variants)]
        assert len(consts) == 1, path


def _secret_name(path: str) -> tuple[str | None, bool]:
    reserved = ("anyOf", "oneOf", "allOf", "not", "properties", "items", "type", "prefixItems")
    for part in reversed(path.split("/")[:-1]):
        if part.isdigit() or part in reserved:
            continue
        return part, part.lower() in SECRET_NAMES
    return None, False


def _can_store_secret(prop: dict[str, Any]) -> bool:
    kind = prop["type"]
    unsecure = {"string", "integer", "number"}
    possible = (isinstance(kind, str) and kind in unsecure) or (isinstance(kind, list) and bool(set(kind) & unsecure))
    return possible and not prop.get("const")


def test_secret_is_properly_marked(connection: dict[str, Any]) -> None:
    properties = connection["properties"]
    exposed, hidden = [], []
    for path, _ in search(properties, "**/type"):
        if not _secret_name(path)[1]:
            continue
        prop = parent(properties, path)
        marked, possible = prop.get("airbyte_secret", False), _can_store_secret(prop)
        if marked and not possible:
            hidden.append(path)
        if possible and not marked:
            exposed.append(path)
    assert not exposed and not hidden, (exposed, hidden)


def test_property_type_is_not_array(connection: dict[str, Any]) -> None:
    errors = []
    for path, kind in search(connection, "**/properties/*/type"):
        if isinstance(kind, list) and (len(kind) not in (1, 2) or (len(kind) == 2 and kind[1] != "null")):
            errors.append(f"{path}: {kind}")
    assert not errors


def test_object_not_empty(connection: dict[str, Any]) -> None:
    errors = []
    for path, kind in search(connection, "**/type"):
        if path == "type" or kind != "object":
            continue
        node = parent(connection, path)
        if "oneOf" not in node and not node.get("properties"):
            errors.append(path)
    assert not errors


def test_array_type(connection: dict[str, Any]) -> None:
    errors = []
    for path, kind in search(connection, "**/type"):
        items = parent(connection, path).get("items") if kind == "array" else None
        single = isinstance(items, dict) or items is None
        if not single or (items and items.get("type") not in ("object", "string", "number", "integer")
                          and "enum" not in items):
            errors.append(path)
    assert not errors


def test_forbidden_complex_types(connection: dict[str, Any]) -> None:
    found = {path for key in FORBIDDEN for path, _ in search(connection, f"**/{key}")}
    found -= {path for key in FORBIDDEN for path, _ in search(connection, f"**/properties/{key}")}
    assert not found


def test_date_pattern_and_format(connection: dict[str, Any]) -> None:
    # CAT only warns here; nothing of ours is a date, so it is held to the rule outright.
    for path, fmt in search(connection, "**/format"):
        if isinstance(fmt, str) and fmt in ("date", "date-time"):
            expected = DATE_PATTERN if fmt == "date" else DATETIME_PATTERN
            assert parent(connection, path).get("pattern") == expected, path
    for path, pattern in search(connection, "**/pattern"):
        if pattern in (DATE_PATTERN, DATETIME_PATTERN):
            assert parent(connection, path).get("format") in ("date", "date-time"), path


def test_duplicate_order(connection: dict[str, Any]) -> None:
    errors = []
    for path, properties in search(connection, "**/properties"):
        if parent(connection, path).get("type") != "object" or not isinstance(properties, dict):
            continue
        used: dict[str, set[int]] = {}
        for prop in properties.values():
            if isinstance(prop, dict) and "order" in prop:
                orders = used.setdefault(prop.get("group", ""), set())
                if prop["order"] in orders:
                    errors.append(f"{path}: order {prop['order']}")
                orders.add(prop["order"])
    assert not errors


def test_nested_group(connection: dict[str, Any]) -> None:
    errors = []
    for path, _ in search(connection, "properties/**/group"):
        parent_path = path.rsplit("/", 1)[0]
        if not parent_path.endswith("properties") and parent_path.rsplit("/", 1)[0] != "properties":
            errors.append(path)
    assert not errors


def test_display_type(connection: dict[str, Any]) -> None:
    for path, value in search(connection, "properties/**/display_type"):
        if path.rsplit("/", 1)[0].endswith("properties"):
            continue
        assert "oneOf" in parent(connection, path) and value in ("dropdown", "radio"), path


def test_defined_refs_exist_in_json_spec_file(spec: dict[str, Any]) -> None:
    assert not search(spec, "**/$ref")


def test_additional_properties_is_true(connection: dict[str, Any]) -> None:
    values = [value for _, value in search(connection, "**/additionalProperties")]
    assert all(value is True for value in values)


def test_oauth_flow_parameters(spec: dict[str, Any]) -> None:
    assert "advanced_auth" not in spec  # no OAuth: CAT's two OAuth checks have nothing to check


# What the published shape must keep --------------------------------------------------------

TEMPLATE = {"messages": [{"role": "user", "content": "Classify: {{text}}"}]}
AI_SQUARED = {
    "url": "http://localhost:8000/v1/chat/completions", "api_key": "sk-x", "is_stream": False,
    "config": {"timeout": "30"},
    "request_format": json.dumps({"model": "m", "messages": [{"role": "user", "content": "{{text}}"}]}),
    "response_format": '{"choices": [{"index": 0, "delta": {"role": "assistant", "content": "..."}}]}',
}
INPUT = {"rows": [{"text": "great"}]}
TASKS = [{"name": "summary", "prompt": "Sum {{text}}", "parameters": {"max_tokens": 20}},
         {"name": "mood", "prompt": "Mood of {{summary.answer}}", "model": "other-model",
          "output_schema": {"type": "object", "properties": {"sentiment": {"type": "string"}}}}]
FORMS = {
    "template-object": {"request_template": TEMPLATE, "response_template": {"columns": {"a": "model"}}},
    "template-text": {"request_template": json.dumps(TEMPLATE),
                      "response_template": '{"json_columns": {"label": "string"}}'},
    "headers-map": {"prompt": "{{text}}", "headers": {"X-Tenant": "acme"}},
    "headers-text": {"prompt": "{{text}}", "headers": '{"X-Tenant": "acme"}'},
    "prices-map": {"prompt": "{{text}}", "prices": {"m": {"input_per_million": 0.15, "output_per_million": 0.6}}},
    "prices-text": {"prompt": "{{text}}", "prices": '{"*": {"input_per_million": 1, "output_per_million": 2}}'},
    "maps-text": {"prompt": "{{text}}", "extra_body": '{"top_k": 20}', "model_mapping": '{"a": "b"}',
                  "context_windows": '{"m": 8192}', "parameters": {"response_format": '{"type": "json_object"}',
                                                                 "metadata": '{"run": "7"}',
                                                                 "tool_choice": "auto", "stop": "\\n"}},
    "timeout-text": {"prompt": "{{text}}", "timeout": "30"},
    "stop-list": {"prompt": "{{text}}", "parameters": {"stop": ["a", "b"]}},
    "ai-squared": AI_SQUARED,
    # tasks, as a list (a config file) and as its JSON text (the form's text area); one using another's answer
    "tasks-list": {"tasks": TASKS},
    "tasks-text": {"tasks": json.dumps(TASKS)},
}


def _config(form: dict[str, Any]) -> dict[str, Any]:
    base = {"url": "http://localhost:8000/v1", "model": "m", "input": INPUT}
    return {**base, **form} if "request_format" not in form else {**form, "input": INPUT}


@pytest.mark.parametrize("name", list(FORMS))
def test_todays_configs_pass_the_published_spec_and_load(connection: dict[str, Any], name: str) -> None:
    config = _config(FORMS[name])
    jsonschema.validate(config, connection)  # what PyAirbyte (and CAT's test_config_match_spec) does
    load_config(config)


def test_sample_configs_pass_the_published_spec(connection: dict[str, Any]) -> None:
    for path in sorted((ROOT / "sample_configs").glob("*.json")):
        if path.name != "catalog.json":
            jsonschema.validate(json.loads(path.read_text()), connection)


def test_json_text_from_a_form_reads_as_the_object() -> None:
    raw = _config({**FORMS["maps-text"], **FORMS["headers-text"], **FORMS["prices-text"],
                   "input": {"rows": '[{"text": "from a form"}]'}})
    config = load_config(raw)
    assert raw["input"]["rows"] == '[{"text": "from a form"}]'  # the caller's config is left as it was
    assert config.headers == {"X-Tenant": "acme"}
    assert config.extra_body == {"top_k": 20} and config.model_mapping == {"a": "b"}
    assert config.context_windows == {"m": 8192} and config.prices["*"].output_per_million == 2
    assert config.parameters.response_format == {"type": "json_object"} and config.parameters.metadata == {"run": "7"}
    assert config.parameters.tool_choice == "auto" and config.input.rows == [{"text": "from a form"}]


def test_bad_json_text_names_the_field_without_the_value() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config({"prompt": "{{text}}", "headers": '{"Authorization": "Bearer sk-secret-1"'}))
    assert "headers: is not valid JSON" in str(info.value) and "sk-secret-1" not in str(info.value)


@pytest.mark.parametrize(
    ("typo", "expected"),
    [({"tiemout": 30}, "unknown field 'tiemout' (did you mean 'timeout'?)"),
     ({"parameters": {"temprature": 0}}, "parameters: unknown field 'temprature' (did you mean 'temperature'?)"),
     ({"input": {"rows": [{"text": "x"}], "primary_kye": "id"}}, "(did you mean 'primary_key'?)")],
)
def test_typos_pass_the_published_spec_but_fail_check(connection: dict[str, Any], typo: dict[str, Any],
                                                      expected: str) -> None:
    from connector.airbyte import commands

    config = {**_config({"prompt": "{{text}}"}), **typo}
    jsonschema.validate(config, connection)  # a platform lets it through ...

    async def collect() -> list[dict[str, Any]]:
        return [m async for m in commands.check(config)]

    (message,) = asyncio.run(collect())  # ... and check refuses it before any request
    assert message["connectionStatus"]["status"] == "FAILED"
    assert expected in message["connectionStatus"]["message"]


def test_the_form_is_grouped_and_ordered(connection: dict[str, Any]) -> None:
    from connector.config.airbyte_form import GROUPS

    groups = [g["id"] for g in connection["groups"]]
    assert groups == ["endpoint", "request", "input", "reliability", "cost"]
    placed = {field for _, _, fields in GROUPS for field in fields}
    unplaced = sorted(set(connection["properties"]) - placed)
    assert not unplaced, f"give {unplaced} a group and a place in connector/config/airbyte_form.py GROUPS"
    endpoint = sorted((p["order"], n) for n, p in connection["properties"].items() if p["group"] == "endpoint")
    assert [name for _, name in endpoint][:3] == ["url", "api_key", "model"]
    assert connection["properties"]["request_template"]["multiline"] is True
    assert connection["properties"]["headers"]["multiline"] is True
