"""PyAirbyte accepts every config form people use today, validated against our published spec.

PyAirbyte checks a config against the connector's spec (jsonschema) before ``check`` or
``read``; the spec passes Airbyte's acceptance tests (tests/test_cat_spec.py), so it is
lenient, and the connector's own validation is what refuses typos. Runs PyAirbyte in
``.venv-compat`` against the fake OpenAI server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server
from tests.test_cat_spec import FORMS
from tests.test_compat import _connector_executable, _last_json, _run_compat

pytestmark = pytest.mark.compat


def _for(server: Server, form: dict[str, Any]) -> dict[str, Any]:
    config = {"url": server.base_url, "model": "fake-model", "input": {"rows": [{"text": "great"}]}, **form,
              "api_key": server.api_key}
    if "request_format" in form:  # AI Squared's form: its URL is the chat-completions URL, its model in the body
        config.pop("model")
        config["url"] = server.base_url + "/chat/completions"
        config["request_format"] = config["request_format"].replace('"model": "m"', '"model": "fake-model"')
    return config


def test_pyairbyte_validates_and_checks_every_form(fake_server: Server, tmp_path: Path) -> None:
    forms = {name: _for(fake_server, form) for name, form in FORMS.items()}
    forms["typo"] = {**_for(fake_server, {"prompt": "{{text}}"}), "tiemout": 30}
    path = tmp_path / "forms.json"
    path.write_text(json.dumps(forms))
    verdicts = _last_json(_run_compat("pyairbyte_config_forms.py", [str(path), str(_connector_executable())],
                                      tmp_path), "pyairbyte_config_forms.py")
    for name in FORMS:
        assert verdicts[name] == {"valid": True, "check": True, "error": None}, (name, verdicts[name])
    typo = verdicts["typo"]  # the spec lets it through; the connector's check names it
    assert typo["valid"] is True and typo["check"] is False
    assert "unknown field 'tiemout' (did you mean 'timeout'?)" in typo["error"]
