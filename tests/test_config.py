"""connector.config.load.load_config: messages name the field; spec/spec.json stays generated."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connector.config import specification
from connector.config.load import load_config
from connector.errors import ConfigError
from connector.secrets import config_secrets

BASE: dict[str, Any] = {"api_key": "sk-test", "prompt": "Say {{text}}", "input": {"rows": [{"text": "a"}]}}


def error_for(**changes: Any) -> str:
    raw = {**BASE, **changes}
    raw = {k: v for k, v in raw.items() if v is not DROP}
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    assert info.value.failure_type == "config_error"
    return str(info.value)


DROP = object()


def test_minimal_config_gets_defaults() -> None:
    config = load_config(BASE)
    assert config.url == "https://api.openai.com/v1/chat/completions"
    assert config.timeout == 60.0
    assert config.max_retries == 5
    assert config.concurrency == 16
    assert config.stream is False
    assert config.input.batch_size == 1024


def test_config_must_be_an_object() -> None:
    with pytest.raises(ConfigError, match=r"config: must be a JSON object \(got list\)"):
        load_config([BASE])


# timeout ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, 0.0])
def test_timeout_must_be_positive(value: Any) -> None:
    assert "timeout: must be > 0" in error_for(timeout=value)


@pytest.mark.parametrize("value", ["0", "0.0", " 0 "])
def test_timeout_zero_as_text_is_rejected_too(value: str) -> None:
    assert "timeout: must be > 0" in error_for(timeout=value)


@pytest.mark.parametrize(("value", "seconds"), [("30", 30.0), (" 2.5 ", 2.5), (30, 30.0), (0.5, 0.5)])
def test_timeout_numeric_string_accepted(value: Any, seconds: float) -> None:
    config = load_config({**BASE, "timeout": value})
    assert config.timeout == seconds
    assert isinstance(config.timeout, float)


@pytest.mark.parametrize("value", ["abc", "30s", "-5", ""])
def test_timeout_non_numeric_text_rejected_naming_timeout(value: str) -> None:
    message = error_for(timeout=value)
    assert message.startswith("Invalid config: timeout: ")
    assert "number of seconds" in message


def test_timeout_bool_rejected() -> None:
    assert "timeout: must be a number or text (got True)" in error_for(timeout=True)


# unknown fields -------------------------------------------------------------------


def test_unknown_field_suggests_the_close_name() -> None:
    message = error_for(tiemout=30)
    assert "unknown field 'tiemout' (did you mean 'timeout'?)" in message
    assert "allowed: url, api_key" in message


def test_unknown_nested_field_is_named_by_path() -> None:
    message = error_for(input={"rows": [{"a": 1}], "batchsize": 5})
    assert "input: unknown field 'batchsize' (did you mean 'batch_size'?)" in message


def test_unknown_field_without_close_match_has_no_suggestion() -> None:
    message = error_for(zzzzzz=1)
    assert "unknown field 'zzzzzz'" in message and "did you mean" not in message


# url ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["localhost:8000/v1", "/v1/chat/completions", "ftp://host/v1",
                                 "http://", "api.openai.com", "file:///etc/passwd"])
def test_bad_url_rejected_naming_url(url: str) -> None:
    message = error_for(url=url)
    assert "url: must be an absolute http:// or https:// URL" in message


@pytest.mark.parametrize(
    ("url", "chat", "base"),
    [
        ("http://localhost:8000/v1", "http://localhost:8000/v1/chat/completions", "http://localhost:8000/v1"),
        ("http://localhost:8000/v1/", "http://localhost:8000/v1/chat/completions", "http://localhost:8000/v1"),
        ("http://localhost:8000/v1/chat/completions", "http://localhost:8000/v1/chat/completions",
         "http://localhost:8000/v1"),
        ("http://localhost:8000/v1/chat/completions/", "http://localhost:8000/v1/chat/completions",
         "http://localhost:8000/v1"),
        ("  https://h.example/openai/v1  ", "https://h.example/openai/v1/chat/completions",
         "https://h.example/openai/v1"),
    ],
)
def test_chat_url_and_base_url_normalisation(url: str, chat: str, base: str) -> None:
    config = load_config({**BASE, "url": url})
    assert config.chat_url == chat
    assert config.base_url == base


# required / exclusive fields ------------------------------------------------------------


def test_missing_input() -> None:
    assert "input: is required" in error_for(input=DROP)


def test_input_needs_exactly_one_source() -> None:
    assert "input.path" in error_for(input={})
    assert "exactly one of input.path" in error_for(input={"path": "x.csv", "rows": []})


def test_missing_prompt_and_template() -> None:
    assert "give a prompt (short form) or a request_template" in error_for(prompt=DROP)


def test_both_prompt_and_request_template() -> None:
    message = error_for(request_template={"messages": [{"role": "user", "content": "{{text}}"}]})
    assert "not both" in message


def test_system_prompt_with_request_template_is_also_both() -> None:
    message = error_for(prompt=DROP, system_prompt="be nice",
                        request_template={"messages": [{"role": "user", "content": "x"}]})
    assert "not both" in message


# templates as JSON text -------------------------------------------------------------------


def test_request_template_as_json_text() -> None:
    body = {"messages": [{"role": "user", "content": "{{text}}"}], "temperature": 0.2}
    config = load_config({"api_key": "k", "input": BASE["input"], "request_template": json.dumps(body)})
    assert config.request_template == body


def test_request_template_invalid_json_text_names_field_and_position() -> None:
    message = error_for(prompt=DROP, request_template='{"messages": [}')
    assert "request_template: is not valid JSON" in message
    assert "line 1 column" in message


def test_request_template_json_text_of_a_list_rejected() -> None:
    assert "request_template: must be a JSON object" in error_for(prompt=DROP, request_template="[1]")


def test_blank_request_template_text_counts_as_absent() -> None:
    config = load_config({**BASE, "request_template": "   "})
    assert config.request_template is None


def test_response_template_as_json_text() -> None:
    config = load_config({**BASE, "response_template": '{"json_columns": {"score": "number"}}'})
    assert config.response_template.json_columns == {"score": "number"}
    assert config.response_template.columns == {"answer": "choices.0.message.content"}


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ({"columns": "choices.0.message.content"}, "response_template.columns:"),
        ({"colums": {"a": "b"}}, "response_template.colums:"),
        ({"json_columns": {"score": "float"}}, "response_template.json_columns.score:"),
        ('{"columns": [1]}', "response_template.columns:"),
        ("[1, 2]", "response_template: must be a JSON object"),
        ("{oops", "response_template: is not valid JSON"),
    ],
)
def test_response_template_bad_shape_names_response_template(template: Any, fragment: str) -> None:
    assert fragment in error_for(response_template=template)


# secrets ----------------------------------------------------------------------------------

SECRET = "sk-very-secret-value-1234567890"


@pytest.mark.parametrize("value", [12345678901234, [SECRET], {"key": SECRET}, True])
def test_invalid_api_key_type_never_echoes_the_value(value: Any) -> None:
    message = error_for(api_key=value)
    assert "api_key: " in message
    assert SECRET not in message
    assert str(value) not in message
    assert "12345678901234" not in message


def test_invalid_header_value_never_echoes_the_value() -> None:
    message = error_for(headers={"X-Token": [SECRET]})
    assert "headers.X-Token" in message
    assert SECRET not in message


def test_api_key_is_secret_in_the_model() -> None:
    config = load_config({**BASE, "api_key": SECRET, "headers": {"X-Tenant": "t"}})
    assert SECRET not in repr(config)
    assert config.request_headers()["Authorization"] == f"Bearer {SECRET}"
    assert set(config_secrets(config)) == {SECRET, "t"}


# other field rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"concurrency": 0}, "concurrency: must be >= 1"),
        ({"max_retries": 21}, "max_retries: must be <= 20"),
        ({"stream": "yes"}, "stream: must be true or false"),
        ({"input": {"rows": [], "batch_size": 0}}, "input.batch_size: must be > 0"),
        ({"input": {"path": "a.csv", "format": "xlsx"}}, "input.format: must be one of auto, csv"),
        ({"stream_name": "1bad"}, "stream_name: must match"),
        ({"parameters": {"temperature": 3}}, "parameters.temperature: must be <= 2"),
    ],
)
def test_field_rules_named_by_path(changes: dict[str, Any], fragment: str) -> None:
    assert fragment in error_for(**changes)


def test_several_problems_reported_at_once() -> None:
    message = error_for(timeout=0, concurrency=0)
    assert "timeout: must be > 0" in message and "concurrency: must be >= 1" in message


# the spec ---------------------------------------------------------------------------------


def test_spec_json_is_generated_from_the_model() -> None:
    on_disk = specification.SPEC_PATH.read_text()
    assert on_disk == specification.render(), (
        "spec/spec.json is stale: run `python -m connector.config.specification`")


def test_packaged_spec_is_generated_from_the_model() -> None:
    """The one-line copy `spec` prints (no pydantic on its path) is the model's too."""
    on_disk = specification.PACKAGED_SPEC_PATH.read_text(encoding="utf-8")
    assert on_disk == specification.render_compact(), (
        "connector/config/spec_compact.json is stale: run `python -m connector.config.specification`")


def test_packaged_strict_schema_is_the_models() -> None:
    """The copy load_config validates against (no schema built from the model on its path) is the model's."""
    on_disk = specification.PACKAGED_STRICT_PATH.read_text(encoding="utf-8")
    assert on_disk == specification.render_strict(), (
        "connector/config/strict_schema.json is stale: run `python -m connector.config.specification`")
    assert specification.validation_schema() == specification.strict_schema()


def test_api_key_is_an_airbyte_secret_in_the_spec() -> None:
    spec = json.loads(specification.SPEC_PATH.read_text())
    props = spec["connectionSpecification"]["properties"]
    assert props["api_key"]["airbyte_secret"] is True
    assert props["api_key"]["type"] == "string"
    assert "input" in spec["connectionSpecification"]["required"]
    # lenient in the published spec (CAT); unknown fields are refused by load_config instead
    assert spec["connectionSpecification"]["additionalProperties"] is True
    assert specification.strict_schema()["additionalProperties"] is False


def test_nulls_for_optional_settings_mean_unset() -> None:
    config = load_config({"url": "http://localhost:8000/v1", "api_key": None, "model": None,
                          "prompt": "{{t}}", "input": {"rows": [{"t": 1}], "path": None},
                          "parameters": {"temperature": None}})
    assert config.api_key is None and config.input.path is None
    assert config.parameters.as_body() == {}


@pytest.mark.parametrize("url", ["https://api.openai.com/v1", "https://llm.example.com/v1"])
def test_a_remote_host_without_a_key_is_refused(url: str) -> None:
    raw = {k: v for k, v in BASE.items() if k != "api_key"}
    with pytest.raises(ConfigError, match=r"api_key: .* is a remote host and no api_key"):
        load_config({**raw, "url": url})


@pytest.mark.parametrize(
    "url",
    ["http://localhost:8000/v1", "http://127.0.0.1:8080/v1", "http://10.1.2.3/v1", "http://vllm:8000/v1",
     "http://llm.internal/v1", "http://[::1]:8000/v1"],
)
def test_local_and_private_hosts_need_no_key(url: str) -> None:
    raw = {k: v for k, v in BASE.items() if k != "api_key"}
    assert load_config({**raw, "url": url}).api_key is None


def test_an_auth_header_or_a_key_in_the_url_counts_as_a_key() -> None:
    raw = {k: v for k, v in BASE.items() if k != "api_key"}
    load_config({**raw, "url": "https://gw.example.com/v1", "headers": {"Authorization": "Bearer x"}})
    config = load_config({**raw, "url": "https://gw.example.com/v1?key=abcdef123"})
    assert "abcdef123" in config_secrets(config)


def test_a_response_path_with_an_empty_step_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"response_template.columns: .*'choices..content' has an empty"):
        load_config({**BASE, "response_template": {"columns": {"answer": "choices..content"}}})


# parsed values and the endpoint ---------------------------------------------------------------


def test_validated_fields_hold_parsed_values() -> None:
    from connector.config.sections import ResponseTemplate

    text = load_config({**BASE, "prompt": None, "request_template": '{"messages": [{"role": "user", "content": "x"}]}',
                        "response_template": '{"json_columns": {"score": "number"}}',
                        "output_schema": '{"type": "object", "properties": {"a": {"type": "string"}}}'})
    assert text.request_template == {"messages": [{"role": "user", "content": "x"}]}
    assert text.output_schema == {"type": "object", "properties": {"a": {"type": "string"}}}
    assert isinstance(text.response_template, ResponseTemplate)
    assert text.response_template.json_columns == {"score": "number"}
    assert load_config(BASE).response_template == ResponseTemplate()  # defaults, not None
    assert load_config({**BASE, "response_template": ""}).response_template == ResponseTemplate()


def test_the_endpoint_is_resolved_without_changing_the_config() -> None:
    from connector.config.endpoint import ApiEndpoint, resolve_endpoint

    raw = {**BASE, "provider": "anthropic", "model": "claude"}
    config = load_config(raw)
    assert config.endpoint == ApiEndpoint("anthropic_messages", "https://api.anthropic.com/v1")
    assert resolve_endpoint(config) == config.endpoint  # a pure function of the fields
    # The fields are what the user wrote (form defaults included): nothing was filled in.
    assert config.url == "https://api.openai.com/v1/chat/completions"
    assert config.api_compatibility == "openai_chat_completions"
    assert config.model_fields_set == set(raw)
    other = config.model_copy(update={"provider": "groq"})
    assert other.endpoint == ApiEndpoint("openai_chat_completions", "https://api.groq.com/openai/v1")
