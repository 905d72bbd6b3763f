"""A config saved by AI Squared's "OpenAI Compatible Endpoint" source works as it was saved.

The shape is the one AI Squared stores (its generic_open_ai spec: url, api_key,
is_stream, config.timeout as text, request_format and response_format as JSON
text), plus the ``input`` this connector needs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from connector.config.load import load_config
from connector.errors import ConfigError
from tests.conftest import Server, catalog_for, run_connector

# AI Squared's own defaults for the two formats, as its form stores them (JSON text).
SAMPLE_REPLY = ('{"choices":[{"index": 0, "delta":{"role": "assistant", "content": "APIs, or Application Programming '
                'Interfaces, are tools that allow different software applications to communicate with each other."}, '
                '"finish_reason": "stop"}]}')


def saved(server: Server, *, stream: bool = False, content: str = "Review: {{review}}") -> dict[str, Any]:
    request = {"model": "fake-model", "messages": [{"role": "user", "content": content}], "stream": False}
    return {
        "url": server.base_url + "/chat/completions",
        "api_key": server.api_key,
        "is_stream": stream,
        "config": {"timeout": "30"},
        "request_format": json.dumps(request),
        "response_format": SAMPLE_REPLY,
        "input": {"rows": [{"review": "great"}, {"review": "awful"}]},
    }


def test_check_accepts_the_saved_config_and_says_what_it_set_aside(fake_server: Server, write_json) -> None:
    run = run_connector(["check", "--config", write_json("c.json", saved(fake_server))])
    (status,) = run.of_type("CONNECTION_STATUS")
    assert status["connectionStatus"]["status"] == "SUCCEEDED", status
    assert ("Note: response_format (AI Squared's sample reply) is not used: output columns come from "
            "response_template (not set: the answer column takes choices.0.message.content).") \
        in status["connectionStatus"]["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "is_stream"])
def test_read_enriches_every_row_with_the_saved_config(fake_server: Server, write_json, stream: bool) -> None:
    run = run_connector(["read", "--config", write_json("c.json", saved(fake_server, stream=stream)),
                         "--catalog", write_json("cat.json", catalog_for())])
    assert run.code == 0, run.stdout[-2000:]
    assert [r["answer"] for r in run.records] == ["echo: Review: great", "echo: Review: awful"]
    assert all(r["_status"] == "ok" for r in run.records)
    assert all((r["_ttft_ms"] is not None) is stream for r in run.records)  # is_stream became stream
    warnings = [m["log"]["message"] for m in run.of_type("LOG") if m["log"]["level"] == "WARN"]
    assert any(w.startswith("response_format (AI Squared's sample reply) is not used") for w in warnings)


def test_the_saved_default_request_warns_that_every_row_sends_the_same(fake_server: Server, write_json) -> None:
    config = saved(fake_server, content="What do you know about APIs?")
    run = run_connector(["check", "--config", write_json("c.json", config)])
    message = run.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["message"]
    assert "no {{column}} placeholder: every row sends the same request" in message


def test_names_are_mapped_to_ours() -> None:
    notes: list[str] = []
    raw = {"url": "http://llm.internal/v1", "api_key": "k", "is_stream": True, "config": {"timeout": "12.5"},
           "request_format": '{"messages": [{"role": "user", "content": "{{t}}"}]}',
           "response_format": '{"columns": {"out": "choices.0.message.content"}}', "input": {"rows": [{"t": 1}]}}
    config = load_config(raw, notes.append)
    assert config.stream is True and config.timeout == 12.5
    assert config.request_template == {"messages": [{"role": "user", "content": "{{t}}"}]}
    assert config.response_template.columns == {"out": "choices.0.message.content"}  # already our form: used
    assert notes == []


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"is_stream": True, "stream": False}, "is_stream (AI Squared's name) and stream are both set; keep stream"),
        ({"config": {"timeout": "30", "retries": 3}},
         "config: unknown field 'retries'; AI Squared's config object carries only timeout"),
        ({"config": "30"}, "config: must be a JSON object"),
        ({"config": {"timeout": "0"}}, "timeout: must be > 0"),
        ({"config": {"timeout": "soon"}}, "timeout: must be a number of seconds such as 30 (got 'soon')"),
        ({"request_format": "{not json"}, "request_template: is not valid JSON"),
    ],
)
def test_mistakes_in_the_saved_form_name_the_field(extra: dict[str, Any], fragment: str) -> None:
    raw = {"url": "http://llm.internal/v1", "api_key": "k", "request_format": '{"messages": "{{t}}"}',
           "input": {"rows": [{"t": 1}]}, **extra}
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    assert fragment in str(info.value)
