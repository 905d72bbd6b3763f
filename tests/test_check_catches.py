"""Mistakes caught before money is spent: template typos, paths that select nothing, the model.

Each runs the connector in-process against the project's fake OpenAI server and
counts what reached it: a refused config sends no completion.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Run, Server, catalog_for, run_connector


def config_for(server: Server, **extra: Any) -> dict[str, Any]:
    return {"url": server.base_url, "api_key": server.api_key, "model": "fake-model",
            "prompt": "Say {{text}}", "input": {"rows": [{"text": "hi", "a": {"b": 1}}, {"text": "ho", "a": None}]},
            **extra}


def check(write_json: Callable[[str, Any], str], config: dict[str, Any]) -> dict[str, Any]:
    run = run_connector(["check", "--config", write_json("c.json", config)])
    assert run.code == 0
    (status,) = run.of_type("CONNECTION_STATUS")
    return dict(status["connectionStatus"])


def read(write_json: Callable[[str, Any], str], config: dict[str, Any]) -> Run:
    return run_connector(["read", "--config", write_json("c.json", config),
                          "--catalog", write_json("cat.json", catalog_for())])


def warnings_of(run: Run) -> list[str]:
    return [m["log"]["message"] for m in run.of_type("LOG") if m["log"]["level"] == "WARN"]


# Template typos -----------------------------------------------------------------------------

TYPOS = [
    ("Say {{text}", "prompt, character 4: '{{text}' closes with one brace; write {{text}}"),
    ("Say {text}", "prompt, character 4: '{text}' has single braces"),
    ("Say {{ text ", "prompt, character 4: '{{ text ' opens a placeholder that never closes"),
    ("Say {{ }} now", "prompt, character 4: '{{ }}' is an empty placeholder"),
    ("Say {{a.b}}", "prompt, character 4: {{a.b}} reaches into column 'a'"),
]


@pytest.mark.parametrize(("prompt", "expected"), TYPOS, ids=["one-brace", "single", "unclosed", "empty", "dotted"])
def test_template_typos_fail_check_naming_the_position_and_send_nothing(
    fake_server: Server, write_json, prompt: str, expected: str
) -> None:
    before = fake_server.stats().get("chat", 0)
    status = check(write_json, config_for(fake_server, prompt=prompt))
    assert status["status"] == "FAILED"
    assert expected in status["message"], status["message"]
    assert fake_server.stats().get("chat", 0) == before


@pytest.mark.parametrize(("prompt", "expected"), TYPOS, ids=["one-brace", "single", "unclosed", "empty", "dotted"])
def test_template_typos_stop_discover_and_read_before_any_request(
    fake_server: Server, write_json, prompt: str, expected: str
) -> None:
    before = fake_server.stats().get("chat", 0)
    config = config_for(fake_server, prompt=prompt)
    for run in (run_connector(["discover", "--config", write_json("c.json", config)]), read(write_json, config)):
        assert run.code == 1
        (error,) = run.trace_errors
        assert error["failure_type"] == "config_error" and expected in error["message"], error
        assert not run.records
    assert fake_server.stats().get("chat", 0) == before


def test_typo_in_the_full_request_template_names_the_body_field(fake_server: Server, write_json) -> None:
    template = {"messages": [{"role": "system", "content": "Be terse."},
                             {"role": "user", "content": "Label: {{ text }"}]}
    config = config_for(fake_server, request_template=template)
    del config["prompt"]
    status = check(write_json, config)
    assert status["status"] == "FAILED"
    assert "request_template.messages.1.content, character 7: '{{ text }' closes with one brace" in status["message"]


def test_system_prompt_typo_is_named_as_system_prompt(fake_server: Server, write_json) -> None:
    status = check(write_json, config_for(fake_server, system_prompt="You label {{text"))
    assert status["status"] == "FAILED" and status["message"].startswith("system_prompt, character 10:")


def test_braces_that_are_not_placeholders_still_work(fake_server: Server, write_json) -> None:
    # JSON in a prompt, and a single-braced word that is no input column, are plain text.
    prompt = 'Answer as {"label": "pos|neg"} for {{text}}; {label} is the field'
    status = check(write_json, config_for(fake_server, prompt=prompt))
    assert status["status"] == "SUCCEEDED", status


def test_a_template_without_placeholder_warns_at_check_discover_and_read(fake_server: Server, write_json) -> None:
    config = config_for(fake_server, prompt="What do you know about APIs?")
    status = check(write_json, config)
    assert status["status"] == "SUCCEEDED"
    assert "no {{column}} placeholder: every row sends the same request" in status["message"]
    discover = run_connector(["discover", "--config", write_json("c.json", config)])
    assert any("no {{column}} placeholder" in w for w in warnings_of(discover))
    run = read(write_json, config)
    assert run.code == 0 and any("no {{column}} placeholder" in w for w in warnings_of(run))
    output = write_json("out.jsonl", None)
    standalone = run_connector(["run", "--config", write_json("c.json", config), "--output", output])
    assert standalone.code == 0 and "no {{column}} placeholder" in standalone.stderr


# Paths that select nothing ------------------------------------------------------------------


def test_a_path_that_cannot_exist_fails_check(fake_server: Server, write_json) -> None:
    columns = {"answer": "choices.0.message.content", "typo": "choices.0.mesage.content",
               "deep": "choices.0.message.content.text", "delta": "choices.0.delta.content",
               "noindex": "choices.message.content"}
    status = check(write_json, config_for(fake_server, response_template={"columns": columns}))
    assert status["status"] == "FAILED"
    message = status["message"]
    assert "response_template.columns.typo ('choices.0.mesage.content') names 'mesage'" in message
    assert "did you mean 'message'?" in message
    assert "columns.deep ('choices.0.message.content.text') steps into choices.0.message.content, which is text" \
        in message
    assert "columns.delta ('choices.0.delta.content') names 'delta', which a choice never has" in message
    assert "columns.noindex ('choices.message.content') steps into the list choices with 'message'" in message
    assert "columns.answer" not in message


def test_a_path_absent_from_the_cut_short_probe_is_a_warning(fake_server: Server, write_json) -> None:
    columns = {"answer": "choices.0.message.content", "calls": "choices.0.message.tool_calls.0.id",
               "timing": "timings.predicted_ms"}
    status = check(write_json, config_for(fake_server, response_template={"columns": columns}))
    assert status["status"] == "SUCCEEDED", status
    message = status["message"]
    assert ("Note: response_template.columns.calls ('choices.0.message.tool_calls.0.id') selects nothing: "
            "choices.0.message has no 'tool_calls' in the probe's reply") in message
    assert "columns.timing ('timings.predicted_ms') selects nothing" in message
    assert "columns.answer" not in message


def test_the_warning_says_when_the_probe_was_cut_short() -> None:
    import asyncio

    import httpx

    from connector.airbyte import commands
    from tests.conftest import chat_reply, mock_transport

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        return httpx.Response(200, json=chat_reply("a", "length"))

    config = {"url": "http://llm.internal/v1", "model": "m", "prompt": "{{text}}", "input": {"rows": [{"text": "x"}]},
              "response_template": {"columns": {"r": "usage.reasoning_tokens"}}}

    async def collect() -> list[dict[str, Any]]:
        return [m async for m in commands.check(config, mock_transport(handler))]

    (message,) = asyncio.run(collect())
    status = message["connectionStatus"]
    assert status["status"] == "SUCCEEDED"
    assert ("Note: response_template.columns.r ('usage.reasoning_tokens') selects nothing: usage has no "
            "'reasoning_tokens' in the probe's reply (the probe was cut short by max_tokens 1; "
            "a full answer may have it).") in status["message"]


# The model ----------------------------------------------------------------------------------


def test_check_says_when_the_model_answered_is_not_listed(fake_server: Server, write_json) -> None:
    config = config_for(fake_server, model="gpt-unlisted", headers={"x-fake": "model-ignored"})
    status = check(write_json, config)
    assert status["status"] == "SUCCEEDED", status
    assert ("model 'gpt-unlisted' is not among the 2 model(s) the endpoint lists (fake-model, other-model), "
            "yet it answered") in status["message"]


def test_listed_model_gets_no_note(fake_server: Server, write_json) -> None:
    assert "Note:" not in check(write_json, config_for(fake_server))["message"]


def test_gateway_invalid_model_400_reads_as_model_not_found_at_check(fake_server: Server, write_json) -> None:
    config = config_for(fake_server, model="gpt-unlisted", headers={"x-fake": "model-400"})
    status = check(write_json, config)
    assert status["status"] == "FAILED"
    assert status["message"].startswith("Model 'gpt-unlisted' not found at 127.0.0.1")
    assert "(400). The server offers: fake-model, other-model." in status["message"]
    assert "Invalid model name passed in model=gpt-unlisted" in status["message"]


def test_gateway_invalid_model_400_stops_a_read_at_once(fake_server: Server, write_json) -> None:
    rows = [{"text": f"t{i}"} for i in range(40)]
    config = config_for(fake_server, model="gpt-unlisted", headers={"x-fake": "model-400"},
                        input={"rows": rows}, concurrency=1)
    before = fake_server.stats().get("chat", 0)
    run = read(write_json, config)
    assert run.code == 1
    (error,) = run.trace_errors
    assert error["failure_type"] == "config_error"
    assert error["message"].startswith("model not found: ")  # named for what it is, not "request rejected"
    assert "Invalid model name passed in model=gpt-unlisted" in error["message"]
    assert not run.records
    assert fake_server.stats().get("chat", 0) - before == 1  # not one request per row


# The catalog --------------------------------------------------------------------------------


def test_a_catalog_listing_a_stream_twice_is_refused_before_any_request(fake_server: Server, write_json) -> None:
    catalog = catalog_for()
    catalog["streams"] *= 2
    before = fake_server.stats().get("chat", 0)
    run = run_connector(["read", "--config", write_json("c.json", config_for(fake_server)),
                         "--catalog", write_json("cat.json", catalog)])
    assert run.code == 1 and not run.records
    (error,) = run.trace_errors
    assert error["failure_type"] == "config_error"
    assert error["message"] == ("catalog.streams.1: stream 'enriched_rows' is listed twice (also catalog.streams.0), "
                                "so every record would be read twice; list each stream once")
    assert fake_server.stats().get("chat", 0) == before


def test_stream_name_models_is_a_config_error(fake_server: Server, write_json) -> None:
    config = config_for(fake_server, stream_name="models")
    status = check(write_json, config)
    assert status["status"] == "FAILED"
    assert status["message"].startswith("Invalid config: stream_name: 'models' is the name of the stream that "
                                        "lists the endpoint's models")
    run = run_connector(["discover", "--config", write_json("c.json", config)])
    assert run.code == 1 and "stream_name: 'models'" in run.trace_errors[0]["message"]
