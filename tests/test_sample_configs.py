"""Every example config in sample_configs/ is valid, renders for the sample input and has a schema.

All offline: nothing here calls an endpoint. ``catalog.json`` is the configured catalog the
demo reads with, checked against the streams the demo config offers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector.airbyte.catalog import SYNC_MODES, enriched_stream, selected_streams
from connector.config.load import load_config
from connector.config.parts import parts_of
from connector.rows.files import InputTable
from tests.conftest import template_for

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_configs"
CONFIGS = sorted(p for p in SAMPLES.glob("*.json") if p.name != "catalog.json")


def test_the_expected_examples_exist() -> None:
    names = {p.name for p in CONFIGS}
    assert {"demo_config.json", "openai.json", "vllm.json", "ollama.json", "llamacpp.json"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_sample_config_is_valid(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # input paths in the examples are relative to the repository root
    config = load_config(json.loads(path.read_text()))
    table = InputTable(config.input)
    template = template_for(config)
    template.check_columns(table.columns)
    first = table.first_row()
    assert first is not None
    assert template.render(first)["messages"]
    schema = enriched_stream(config.stream_name, parts_of(config).output, table.schema)["json_schema"]
    for column in config.response_template.json_columns:
        assert column in schema["properties"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_sample_config_holds_no_real_key(path: Path) -> None:
    key = json.loads(path.read_text()).get("api_key") or ""
    assert key in ("", "ollama", "sk-local-test") or "REPLACE" in key


def test_catalog_selects_the_enriched_stream() -> None:
    config = load_config(json.loads((SAMPLES / "demo_config.json").read_text()))
    catalog = json.loads((SAMPLES / "catalog.json").read_text())
    [stream] = selected_streams(catalog, {config.stream_name: SYNC_MODES})
    assert (stream.name, stream.sync_mode) == ("enriched_rows", "full_refresh")
