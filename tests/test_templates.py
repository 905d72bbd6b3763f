"""connector.requests.templates (request rendering) and connector.answers.extract (reply extraction)."""

from __future__ import annotations

import copy
import json
from datetime import date, datetime, timezone
from typing import Any

import pytest

from connector.answers.extract import ResponseExtractor, dig, parse_json_object
from connector.config.load import load_config
from connector.config.sections import ResponseTemplate
from connector.errors import TemplateError
from connector.jsonbytes import dumps
from connector.requests.templates import RequestTemplate, cell_text
from tests.conftest import template_for


def render_one(node: Any, row: dict[str, Any]) -> Any:
    return RequestTemplate({"messages": [], "x": node}).render(row)["x"]


def config(**extra: Any) -> Any:
    return load_config({"api_key": "sk-test", "input": {"rows": [{"a": 1}]}, **extra})


# Exact placeholders keep the cell's type ------------------------------------------


@pytest.mark.parametrize(
    "value",
    [7, 2.5, 3.0, [1, "two", None], {"k": [1, {"n": None}]}, None, True, False, "text", ""],
    ids=["int", "float", "whole-float", "list", "dict", "None", "True", "False", "str", "empty"],
)
def test_exact_placeholder_keeps_native_value(value: Any) -> None:
    out = render_one("{{v}}", {"v": value})
    assert out == value
    assert type(out) is type(value)


def test_exact_placeholder_allows_whitespace_inside_braces() -> None:
    assert render_one("{{  v }}", {"v": 42}) == 42
    tmpl = RequestTemplate({"messages": "{{ v }}"})
    assert tmpl.columns == frozenset({"v"})


def test_exact_placeholder_passes_the_same_object() -> None:
    cell = {"nested": [1, 2]}
    assert render_one("{{v}}", {"v": cell}) is cell


# Interpolation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (3.0, "3.0"),  # a float stays a float: the input holds 3.0, not 3
        (-2.0, "-2.0"),
        (0.0, "0.0"),
        (2.5, "2.5"),
        (7, "7"),
        (1e20, "1e+20"),
        ("plain", "plain"),
        ([1, "a", None], '[1,"a",null]'),
        ({"k": "v"}, '{"k":"v"}'),
        (date(2024, 5, 6), "2024-05-06"),
        (datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc), "2024-05-06T07:08:09+00:00"),
    ],
)
def test_interpolated_cell_text(value: Any, text: str) -> None:
    assert render_one("<{{v}}>", {"v": value}) == f"<{text}>"
    assert cell_text(value) == text


def test_interpolated_none_never_reads_none_or_null() -> None:
    out = render_one("Name: {{name}}; city: {{ city }}.", {"name": None, "city": None})
    assert out == "Name: ; city: ."
    assert "None" not in out and "null" not in out


def test_interpolation_of_several_columns_keeps_literals_in_order() -> None:
    out = render_one("{{a}}-{{b}}/{{a}} end", {"a": 1, "b": "x"})
    assert out == "1-x/1 end"


def test_string_without_placeholder_is_left_alone() -> None:
    tmpl = RequestTemplate({"messages": [{"role": "user", "content": "hi {not a placeholder}"}]})
    assert tmpl.columns == frozenset()
    assert tmpl.render({})["messages"][0]["content"] == "hi {not a placeholder}"


def test_columns_collects_every_placeholder_in_nested_structures() -> None:
    tmpl = RequestTemplate({
        "messages": [{"role": "system", "content": "{{sys}}"},
                     {"role": "user", "content": [{"type": "text", "text": "Q: {{q}} {{ q }}"}]}],
        "metadata": {"id": "{{row_id}}"},
        "n": 1,
    })
    assert tmpl.columns == frozenset({"sys", "q", "row_id"})


# Escaping is correct by construction ----------------------------------------------


HARD_TEXTS = [
    'She said "hi" and \\o/',
    "line one\nline two\r\nline three\ttabbed",
    "unicode: é ñ 中文 👍 \u2028 \u0000 \x7f",
    "{{not_a_column}} literal braces stay",
    "x" * 100_000 + "é" * 1000,
]


@pytest.mark.parametrize("text", HARD_TEXTS, ids=["quotes", "newlines", "unicode", "braces", "100KB"])
def test_text_survives_render_dumps_loads_byte_exactly(text: str) -> None:
    tmpl = RequestTemplate({"messages": [{"role": "user", "content": "{{t}}"},
                                         {"role": "user", "content": "Text: {{t}}!"}]})
    body = json.loads(dumps(tmpl.render({"t": text})))
    assert body["messages"][0]["content"] == text
    assert body["messages"][1]["content"] == f"Text: {text}!"
    assert body["messages"][1]["content"].encode("utf-8", "surrogatepass") == (
        f"Text: {text}!".encode("utf-8", "surrogatepass"))


def test_value_containing_placeholder_syntax_is_not_re_expanded() -> None:
    out = render_one("Q: {{a}}", {"a": "{{b}}", "b": "SHOULD NOT APPEAR"})
    assert out == "Q: {{b}}"


# Constants --------------------------------------------------------------------------


def test_constants_are_shared_and_never_mutated() -> None:
    template = {
        "messages": [{"role": "system", "content": "Be terse."},
                     {"role": "user", "content": "{{t}}"}],
        "response_format": {"type": "json_object"},
        "stop": ["\n\n"],
    }
    original = copy.deepcopy(template)
    tmpl = RequestTemplate(template)
    first = tmpl.render({"t": "one"})
    second = tmpl.render({"t": "two"})
    assert first["messages"][1]["content"] == "one"
    assert second["messages"][1]["content"] == "two"
    # constant sub-structures are the template's own objects, not per-row copies
    assert first["response_format"] is second["response_format"] is template["response_format"]
    assert first["messages"][0] is template["messages"][0]
    assert first["stop"] is template["stop"]
    # the template itself is untouched, and the rendered lists are new
    assert template == original
    assert first["messages"] is not template["messages"]
    assert first is not second


def test_template_without_placeholders_renders_to_itself() -> None:
    template = {"messages": [{"role": "user", "content": "static"}]}
    tmpl = RequestTemplate(template)
    assert tmpl.render({"anything": 1}) is template
    assert tmpl.columns == frozenset()


# check_columns ----------------------------------------------------------------------


def test_check_columns_names_missing_and_lists_available() -> None:
    tmpl = RequestTemplate({"messages": [{"role": "user", "content": "{{review}} {{stars}} {{id}}"}]})
    with pytest.raises(TemplateError) as info:
        tmpl.check_columns(["id", "text", "rating"])
    message = str(info.value)
    assert "review, stars" in message
    assert "id, text, rating" in message
    assert "input columns are" in message


def test_check_columns_with_no_input_columns() -> None:
    tmpl = RequestTemplate({"messages": "{{m}}"})
    with pytest.raises(TemplateError, match=r"\(none\)"):
        tmpl.check_columns([])


def test_check_columns_passes_when_all_present() -> None:
    tmpl = RequestTemplate({"messages": [{"role": "user", "content": "{{a}}"}]})
    tmpl.check_columns(["a", "b"])  # no error


# from_config ------------------------------------------------------------------------


def test_from_config_prompt_short_form() -> None:
    tmpl = template_for(config(prompt="Classify: {{text}}"))
    assert tmpl.columns == frozenset({"text"})
    assert tmpl.render({"text": "great"}) == {
        "messages": [{"role": "user", "content": "Classify: great"}]}


def test_from_config_system_prompt_comes_first() -> None:
    tmpl = template_for(
        config(prompt="{{q}}", system_prompt="You answer in {{lang}}."))
    assert tmpl.columns == frozenset({"q", "lang"})
    assert tmpl.render({"q": "hello?", "lang": "French"}) == {"messages": [
        {"role": "system", "content": "You answer in French."},
        {"role": "user", "content": "hello?"},
    ]}


def test_from_config_full_request_template() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "{{t}}"}], "temperature": 0}
    tmpl = template_for(config(request_template=json.dumps(body)))
    assert tmpl.render({"t": 5}) == {**body, "messages": [{"role": "user", "content": 5}]}


@pytest.mark.parametrize("template", [{"model": "m"}, {"messages": []}, {"messages": {"a": 1}},
                                      {"messages": None}])
def test_request_template_without_messages_raises(template: dict[str, Any]) -> None:
    with pytest.raises(TemplateError, match=r"request_template: .*'messages'"):
        template_for(config(request_template=template))


# ResponseExtractor: paths -----------------------------------------------------------

REPLY = {
    "id": "r1",
    "model": "m1",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "first"}, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "second"}, "finish_reason": "length"},
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5},
    "flags": {"ok": False},
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("choices.0.message.content", "first"),
        ("choices.1.message.content", "second"),
        ("choices.-1.finish_reason", "length"),
        ("choices.2.message.content", None),
        ("choices.-3.message", None),
        ("usage.completion_tokens", 0),
        ("flags.ok", False),
        ("usage.missing", None),
        ("nothing.here.at.all", None),
        ("model.0", None),
        ("choices.first", None),
        ("choices.\u00b2", None),  # a step str.isdigit() accepts and int() refuses: was a ValueError
        ("choices.--1", None),  # two signs: int() refuses it, was a ValueError
        ("usage", REPLY["usage"]),
    ],
)
def test_extract_paths(path: str, expected: Any) -> None:
    extractor = ResponseExtractor(ResponseTemplate(columns={"out": path}))
    out, error = extractor.extract(REPLY)
    assert error is None
    assert out == {"out": expected}
    assert type(out["out"]) is type(expected)


def test_default_response_template_takes_the_content() -> None:
    extractor = ResponseExtractor(ResponseTemplate())
    assert extractor.column_names == ["answer"]
    assert extractor.extract(REPLY) == ({"answer": "first"}, None)


def test_dig_dict_with_numeric_keys() -> None:
    assert dig({"a": {"0": "zero"}}, ("a", 0)) == "zero"


# ResponseExtractor: json_columns ----------------------------------------------------


def json_reply(content: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}


JSON_TEMPLATE = ResponseTemplate(
    columns={"raw": "choices.0.message.content"},
    json_columns={"sentiment": "string", "score": "number", "n": "integer",
                  "ok": "boolean", "tags": "array", "meta": "object"},
)
GOOD = {"sentiment": "positive", "score": 0.9, "n": 3, "ok": True, "tags": ["a"], "meta": {"k": 1}}


def test_json_columns_parse_typed_values() -> None:
    extractor = ResponseExtractor(JSON_TEMPLATE)
    assert extractor.column_names == ["raw", "sentiment", "score", "n", "ok", "tags", "meta"]
    content = json.dumps(GOOD)
    out, error = extractor.extract(json_reply(content))
    assert error is None
    assert out == {"raw": content, **GOOD}


@pytest.mark.parametrize(
    "content",
    [
        "```json\n{\"sentiment\": \"neg\", \"score\": 1}\n```",
        "```\n{\"sentiment\": \"neg\", \"score\": 1}\n```",
        "  ```JSON\n{\"sentiment\": \"neg\", \"score\": 1}```  \n",
        "{\"sentiment\": \"neg\", \"score\": 1}",
    ],
    ids=["json-fence", "bare-fence", "fence-no-newline", "no-fence"],
)
def test_json_columns_accept_markdown_fences(content: str) -> None:
    extractor = ResponseExtractor(ResponseTemplate(columns={},
                                                   json_columns={"sentiment": "string", "score": "number"}))
    out, error = extractor.extract(json_reply(content))
    assert error is None
    assert out == {"sentiment": "neg", "score": 1.0}


def test_int_is_accepted_for_number_and_becomes_float() -> None:
    extractor = ResponseExtractor(ResponseTemplate(columns={}, json_columns={"score": "number"}))
    out, error = extractor.extract(json_reply('{"score": 4}'))
    assert error is None
    assert out["score"] == 4.0 and isinstance(out["score"], float)


@pytest.mark.parametrize(
    ("kind", "value", "type_name"),
    [
        ("integer", 2.5, "float"),
        ("integer", True, "bool"),
        ("number", "0.5", "str"),
        ("number", False, "bool"),
        ("string", 5, "int"),
        ("boolean", "true", "str"),
        ("array", {"a": 1}, "dict"),
        ("object", [1], "list"),
    ],
)
def test_json_column_wrong_type_is_a_row_error_naming_the_key(kind: str, value: Any,
                                                             type_name: str) -> None:
    extractor = ResponseExtractor(ResponseTemplate(columns={}, json_columns={"field_x": kind}))
    out, error = extractor.extract(json_reply(json.dumps({"field_x": value})))
    assert out == {"field_x": None}
    assert error == f"json_columns: 'field_x' is {type_name}, expected {kind}"


def test_json_columns_missing_and_wrong_keys_reported_together_valid_ones_kept() -> None:
    extractor = ResponseExtractor(ResponseTemplate(
        columns={}, json_columns={"sentiment": "string", "score": "number", "label": "string"}))
    out, error = extractor.extract(json_reply('{"score": "high", "label": "x", "other": 1}'))
    assert out == {"sentiment": None, "score": None, "label": "x"}
    assert error is not None
    assert "'sentiment' missing" in error
    assert "'score' is str, expected number" in error
    assert "label" not in error


def test_json_null_value_counts_as_missing() -> None:
    extractor = ResponseExtractor(ResponseTemplate(columns={}, json_columns={"s": "string"}))
    assert extractor.extract(json_reply('{"s": null}')) == ({"s": None}, "json_columns: 's' missing")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("not json at all", "not valid JSON"),
        ("[1, 2]", "not an object (a list)"),
        ('"just a string"', "not an object (a str)"),
        (None, "no text content"),
        (42, "no text content"),
    ],
)
def test_json_columns_unparseable_content_gives_row_error(content: Any, fragment: str) -> None:
    extractor = ResponseExtractor(ResponseTemplate(columns={"raw": "choices.0.message.content"},
                                                   json_columns={"s": "string"}))
    out, error = extractor.extract(json_reply(content))
    assert out == {"raw": content, "s": None}
    assert error is not None and error.startswith("json_columns: ") and fragment in error


def test_parse_json_object_fence_with_language_and_inner_backticks() -> None:
    assert parse_json_object('```json\n{"code": "a`b"}\n```') == {"code": "a`b"}


# Malformed placeholders ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a {{{x}}} b", "request_template.x, character 2: '{{{x}}' has a brace inside the placeholder"),
        ("{{x}} then {{y", "request_template.x, character 11: '{{y' opens a placeholder that never closes"),
        ("{{x}} {{  }}", "request_template.x, character 6: '{{  }}' is an empty placeholder"),
    ],
)
def test_malformed_placeholders_name_field_and_offset(text: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as info:
        RequestTemplate({"messages": [], "x": text})
    assert fragment in str(info.value)


def test_single_braced_column_after_a_placeholder_is_found_at_its_offset() -> None:
    tmpl = RequestTemplate({"messages": [{"role": "user", "content": "{{text}} and {text}"}]})
    with pytest.raises(TemplateError, match=r"request_template.messages.0.content, character 13: '\{text\}'"):
        tmpl.check_columns(["text"])
