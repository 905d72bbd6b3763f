"""Every row tells the truth about itself: statuses, error classes, nulls, sizes, validation, fallbacks, cost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from connector.airbyte import commands
from connector.answers.outcomes import RowOutcome
from connector.answers.records import META_COLUMNS, Enriched, Tally
from connector.config.load import load_config
from connector.endpoint.classify import classify
from connector.errors import RowTooLong
from tests.conftest import catalog_for, chat_reply, dialect_of, enricher_for, mock_transport, progress_of

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A fake endpoint that records every body it was sent."""

    def __init__(self, answer: Callable[[dict[str, Any], int], httpx.Response]) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        return self._answer(body, len(self.bodies))


def enrich(rows: list[dict[str, Any]], handler: Handler, **settings: Any) -> list[dict[str, Any]]:
    out = [row.record() for row in enrich_rows(rows, handler, **settings)]
    for record in out:
        assert set(META_COLUMNS) <= set(record)  # the whole contract, on every record
    return out


def enrich_rows(rows: list[dict[str, Any]], handler: Handler, **settings: Any) -> list[Enriched]:
    raw = {"url": "http://llm.local/v1", "model": "main", "prompt": "Review: {{text}}",
           "input": {"rows": rows}, "max_retries": 0, "cache": {"enabled": False}, **settings}
    config = load_config(raw)
    enricher = enricher_for(config, mock_transport(handler)(None))

    async def run() -> list[Enriched]:
        done = [await enricher((i, row)) for i, row in enumerate(rows)]
        assert None not in done  # no spend guard here
        return [row for row in done if row is not None]

    return asyncio.run(run())


def echo(body: dict[str, Any], _: int) -> httpx.Response:
    return httpx.Response(200, json=chat_reply(body["messages"][-1]["content"], model=body.get("model", "m")))


def error(status: int, message: str, code: str = "x") -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "code": code, "type": code}})


# Nulls --------------------------------------------------------------------------------


def test_null_cells_are_sent_as_empty_text_never_none() -> None:
    server = Recorder(echo)
    (record,) = enrich([{"text": None}], server)
    assert server.bodies[0]["messages"][-1]["content"] == "Review: "
    assert record["_status"] == "ok"


def test_null_policy_skip_sends_nothing() -> None:
    server = Recorder(echo)
    records = enrich([{"text": "fine"}, {"text": "  "}, {"text": None}], server, null_policy="skip")
    assert [r["_status"] for r in records] == ["ok", "skipped_null", "skipped_null"]
    assert "column(s) text null or empty" in records[1]["_error"]
    assert len(server.bodies) == 1 and records[1]["_attempts"] == 0


def test_null_policy_literal() -> None:
    server = Recorder(echo)
    enrich([{"text": None}], server, null_policy="literal", null_literal="(no review)")
    assert server.bodies[0]["messages"][-1]["content"] == "Review: (no review)"


# Truncation and validation -------------------------------------------------------------


def test_finish_reason_length_is_truncated_not_ok() -> None:
    def cut(body: dict[str, Any], _: int) -> httpx.Response:
        return httpx.Response(200, json=chat_reply('{"sentiment": "posi', finish_reason="length"))

    (record,) = enrich([{"text": "x"}], Recorder(cut), response_template={"json_columns": {"sentiment": "string"}})
    assert record["_status"] == "truncated"
    assert record["_error_class"] is None and "cut off" in record["_error"]
    assert record["sentiment"] is None


def test_an_invalid_structured_answer_is_asked_again_with_the_problem() -> None:
    def answers(body: dict[str, Any], n: int) -> httpx.Response:
        return httpx.Response(200, json=chat_reply("not json at all" if n == 1 else '{"sentiment": "negative"}'))

    server = Recorder(answers)
    (record,) = enrich([{"text": "x"}], server, response_template={"json_columns": {"sentiment": "string"}})
    assert record["_status"] == "ok" and record["sentiment"] == "negative"
    assert record["_attempts"] == 2
    retry = server.bodies[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": "not json at all"}
    assert "could not be used" in retry[-1]["content"] and "not valid JSON" in retry[-1]["content"]


def test_an_answer_that_stays_invalid_is_a_validation_error_with_the_raw_answer_kept() -> None:
    server = Recorder(lambda body, n: httpx.Response(200, json=chat_reply(f'{{"score": "high {n}"}}')))
    (record,) = enrich([{"text": "x"}], server, validation_retries=2,
                       response_template={"json_columns": {"score": "number"}})
    assert record["_status"] == "error" and record["_error_class"] == "validation"
    assert "'score' is str, expected number" in record["_error"]
    assert record["_raw_answer"] == '{"score": "high 3"}'
    assert len(server.bodies) == 3


# Error classes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "code"),
    [
        (400, "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000",
         "context_length_exceeded"),  # OpenAI
        (400, "prompt is too long: 210000 tokens > 200000 maximum", "invalid_request_error"),  # Anthropic
        (400, "The input token count (40000) exceeds the maximum number of tokens allowed (32768).",
         "INVALID_ARGUMENT"),  # Gemini
        (400, "the request exceeds the available context size, try increasing it", "exceed_context_size_error"),
    ],
)
def test_context_length_errors_are_classified_and_not_retried(status: int, message: str, code: str) -> None:
    server = Recorder(lambda body, n: error(status, message, code))
    (record,) = enrich([{"text": "x"}], server, max_retries=3)
    assert record["_error_class"] == "context_length"
    assert record["_attempts"] == 1 and len(server.bodies) == 1


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (error(429, "Rate limit reached"), "rate_limit"),
        (error(500, "boom"), "server"),
        (error(400, "Unsupported parameter: 'foo'"), "bad_request"),
        (error(400, "The response was filtered due to the prompt triggering Azure OpenAI's content management "
                    "policy", "content_filter"), "content_filter"),
    ],
)
def test_error_classes(response: httpx.Response, expected: str) -> None:
    (record,) = enrich([{"text": "x"}], lambda request: response)
    assert record["_status"] == "error" and record["_error_class"] == expected


def test_quota_exhausted_stops_the_sync_at_once_with_a_resumable_state() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] <= 2:
            return httpx.Response(200, json=chat_reply("fine"))
        return error(429, "You exceeded your current quota, please check your plan and billing details.",
                     "insufficient_quota")

    config = {"url": "http://llm.local/v1", "prompt": "{{t}}", "concurrency": 1, "max_retries": 5,
              "input": {"rows": [{"t": i} for i in range(6)]}}

    async def collect() -> tuple[list[dict[str, Any]], Exception | None]:
        out: list[dict[str, Any]] = []
        try:
            async for message in commands.read(config, catalog_for(), None, mock_transport(handler)):
                out.append(message)
        except Exception as exc:
            return out, exc
        return out, None

    messages, raised = asyncio.run(collect())
    assert raised is not None and "quota or billing limit reached" in str(raised)
    assert raised.failure_type == "config_error"  # type: ignore[attr-defined]
    assert calls["n"] == 3  # no retry of the quota error, no further row sent
    records = [m for m in messages if m["type"] == "RECORD"]
    assert len(records) == 2
    last_state = [m for m in messages if m["type"] == "STATE"][-1]["state"]["stream"]["stream_state"]
    assert progress_of(last_state) == {"position": 2}


# Sizes -------------------------------------------------------------------------------


def test_a_prompt_longer_than_the_window_is_skipped_without_a_request() -> None:
    server = Recorder(echo)
    records = enrich([{"text": "short"}, {"text": "word " * 2000}], server, context_window=500,
                     parameters={"max_tokens": 50})
    assert [r["_status"] for r in records] == ["ok", "skipped_too_long"]
    assert "more than context_window 500" in records[1]["_error"]
    assert len(server.bodies) == 1


def test_truncate_policy_cuts_the_named_column_to_fit() -> None:
    server = Recorder(echo)
    (record,) = enrich([{"text": "word " * 2000}], server, context_window=500, too_long_policy="truncate",
                       truncate_column="text", parameters={"max_tokens": 50})
    sent = server.bodies[0]["messages"][-1]["content"]
    assert record["_status"] == "ok" and sent.endswith("…")
    assert len(sent) // 4 + 50 <= 500
    note = record["_input_truncated"]
    assert note.startswith("text: ") and note.endswith(" of 10,000 characters sent (too_long_policy truncate)")
    kept = int(note.split()[1].replace(",", ""))
    assert 1000 < kept < 2000 and sent.endswith(("word " * 2000)[:kept] + "…")
    assert len(sent) - kept - 1 < 20  # what is left is the template around the cell


def test_a_row_whose_prompt_was_whole_says_so() -> None:
    records = enrich([{"text": "short"}], Recorder(echo), context_window=500, too_long_policy="truncate",
                     truncate_column="text", parameters={"max_tokens": 50})
    assert records[0]["_status"] == "ok" and records[0]["_input_truncated"] is None


def test_fail_policy_stops_with_the_row_named() -> None:
    with pytest.raises(RowTooLong, match=r"row 1: the prompt is ~\d+ tokens"):
        enrich([{"text": "word " * 2000}], Recorder(echo), context_window=500, too_long_policy="fail")


# Fallbacks and cost --------------------------------------------------------------------


def test_a_fallback_model_answers_when_the_primary_is_overloaded() -> None:
    def handler(body: dict[str, Any], _: int) -> httpx.Response:
        return error(503, "overloaded") if body["model"] == "main" else echo(body, 0)

    server = Recorder(handler)
    (record,) = enrich([{"text": "x"}], server, fallback_models=["backup"])
    assert record["_status"] == "ok" and record["_model"] == "backup"
    assert [b["model"] for b in server.bodies] == ["main", "backup"]
    assert record["_attempts"] == 2


def test_no_fallback_for_an_error_class_not_listed() -> None:
    server = Recorder(lambda body, n: error(400, "bad parameter"))
    (record,) = enrich([{"text": "x"}], server, fallback_models=["backup"])
    assert record["_error_class"] == "bad_request" and len(server.bodies) == 1


def test_a_fallback_with_too_small_a_window_is_passed_over() -> None:
    def handler(body: dict[str, Any], _: int) -> httpx.Response:
        return error(400, "maximum context length exceeded") if body["model"] == "main" else echo(body, 0)

    server = Recorder(handler)
    (record,) = enrich([{"text": "word " * 300}], server, fallback_models=["tiny", "large"],
                       context_windows={"tiny": 100, "large": 100_000})
    assert record["_model"] == "large"
    assert [b["model"] for b in server.bodies] == ["main", "large"]


def test_cost_from_the_price_table_and_the_summary_counts_by_class() -> None:
    done = enrich_rows([{"text": "a"}, {"text": "b"}], echo_handler(), prices={
        "main": {"input_per_million": 1.0, "output_per_million": 2.0}})
    assert done[0].record()["_cost"] == pytest.approx((5 * 1.0 + 2 * 2.0) / 1e6)
    tally = Tally()
    for row in done:
        tally.observe(row)
    tally.observe(Enriched(3, {}, RowOutcome("error", "timeout", "slow")))
    summary = tally.summary()
    assert "2 ok" in summary and "1 error" in summary and "timeout 1" in summary
    assert "cost 0.0000" in summary and "row 3: slow" in summary


def echo_handler() -> Handler:
    return lambda request: echo(json.loads(request.content), 0)


def test_classify_transport_failures() -> None:
    from connector import errors

    assert classify(errors.ReadTimeout("t")) == "timeout"
    assert classify(errors.ConnectFailed("c")) == "connection"
    assert classify(errors.BadReply("b")) == "bad_reply"


# Every API shape: the room for the answer, truncation, the retry turn ---------------------------

SHAPES = ["openai_chat_completions", "openai_responses", "anthropic_messages", "gemini_generate_content",
          "google_vertex"]


def shape_reply(shape: str, text: str) -> dict[str, Any]:
    """The smallest good reply of each shape."""
    if shape == "openai_responses":
        return {"status": "completed", "output": [{"type": "message", "content": [{"type": "output_text",
                                                                                   "text": text}]}]}
    if shape == "anthropic_messages":
        return {"content": [{"type": "text", "text": text}], "stop_reason": "end_turn"}
    if shape in ("gemini_generate_content", "google_vertex"):
        return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}]}
    return chat_reply(text)


class ShapeServer:
    """Answers every request in the config's shape (503 for the models in ``down``); keeps (model, body)."""

    def __init__(self, shape: str, down: tuple[str, ...] = (), answers: tuple[str, ...] = ("fine",)) -> None:
        self.shape, self.down, self.answers = shape, down, answers
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        # Gemini and Vertex name the model in the URL: .../models/{model}:generateContent
        model = body.get("model") or request.url.path.rsplit("/", 1)[-1].split(":")[0]
        self.sent.append((model, body))
        if model in self.down:
            return error(503, "overloaded")
        text = self.answers[min(len(self.sent), len(self.answers)) - 1]
        return httpx.Response(200, json=shape_reply(self.shape, text))


def shaped(shape: str, **settings: Any) -> dict[str, Any]:
    return {"api_compatibility": shape, "api_key": "sk-test", **settings}


@pytest.mark.parametrize("shape", SHAPES)
def test_the_context_fit_leaves_room_for_the_answer_in_every_shape(shape: str) -> None:
    """~612 prompt tokens + max_tokens 500 > 1000: skipped in every shape, whatever its output-limit field."""
    server = ShapeServer(shape)
    (record,) = enrich([{"text": "word " * 480}], server, **shaped(shape), context_window=1000,
                       parameters={"max_tokens": 500})
    assert record["_status"] == "skipped_too_long", record["_error"]
    assert "max_tokens 500" in record["_error"] and server.sent == []


@pytest.mark.parametrize("shape", SHAPES)
def test_a_fallback_whose_window_leaves_no_room_for_the_answer_is_passed_over_in_every_shape(shape: str) -> None:
    server = ShapeServer(shape, down=("main",))
    (record,) = enrich([{"text": "word " * 480}], server, **shaped(shape), parameters={"max_tokens": 500},
                       fallback_models=["small", "large"], context_windows={"small": 1000, "large": 100_000})
    assert [model for model, _ in server.sent] == ["main", "large"]
    assert record["_status"] == "ok"


def prompt_in(body: Any) -> str:
    """The rendered "Review: ..." text, wherever the shape put it."""
    if isinstance(body, str):
        return body if body.startswith("Review: ") else ""
    values = body.values() if isinstance(body, dict) else body if isinstance(body, list) else ()
    return next((found for found in map(prompt_in, values) if found), "")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("length", "window"), [(50_000, 1000), (3_000, 100), (200_000, 60)])
def test_truncate_cuts_until_the_prompt_fits_in_every_shape(shape: str, length: int, window: int) -> None:
    from connector.endpoint.limits import TokenEstimator

    text = ("Überraschend gut, 10/10 \"wieder\" — " * (length // 30 + 1))[:length]
    server = ShapeServer(shape)
    settings = shaped(shape, context_window=window, too_long_policy="truncate", truncate_column="text",
                      parameters={"max_tokens": 20})
    (record,) = enrich([{"text": text}], server, **settings)
    assert record["_status"] == "ok", record["_error"]
    [(_, body)] = server.sent
    sent = prompt_in(body).removeprefix("Review: ")
    assert sent.endswith("…") and text.startswith(sent[:-1])
    assert len(sent) > 1 or window < 50  # the cut keeps what fits, not nothing
    config = load_config({"url": "http://llm.local/v1", "model": "main", "prompt": "Review: {{text}}",
                          "input": {"rows": [{"text": text}]}, **settings})
    prompt = TokenEstimator().prompt_tokens(dialect_of(config).prompt_chars(body))
    assert prompt + 20 <= window


def test_the_cut_keeps_as_much_as_fits() -> None:
    server = ShapeServer("openai_chat_completions")
    (record,) = enrich([{"text": "x" * 50_000}], server, context_window=1000, too_long_policy="truncate",
                       truncate_column="text")
    sent = server.sent[0][1]["messages"][-1]["content"]
    assert record["_status"] == "ok"
    # 1000 tokens of 4 characters, less the template and the JSON around it: well over 3,800 kept
    assert sent.endswith("…") and 3800 < len(sent) < 4000


def test_a_cell_that_fits_nowhere_is_skipped_with_the_reason() -> None:
    server = ShapeServer("openai_chat_completions")
    (record,) = enrich([{"text": "x" * 5000}], server, context_window=100, too_long_policy="truncate",
                       truncate_column="text", parameters={"max_tokens": 99})
    assert record["_status"] == "skipped_too_long" and "even with column 'text' emptied" in record["_error"]
    assert server.sent == []


@pytest.mark.parametrize(("shape", "key", "replayed", "ask"), [
    ("openai_chat_completions", "messages", {"role": "assistant", "content": "not json"},
     {"role": "user"}),
    ("anthropic_messages", "messages", {"role": "assistant", "content": "not json"}, {"role": "user"}),
    ("openai_responses", "input",
     {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "not json"}]},
     {"role": "user"}),
    ("gemini_generate_content", "contents", {"role": "model", "parts": [{"text": "not json"}]}, {"role": "user"}),
])
def test_a_validation_retry_replays_the_answer_in_the_shapes_own_turns(
        shape: str, key: str, replayed: dict[str, Any], ask: dict[str, Any]) -> None:
    server = ShapeServer(shape, answers=("not json", '{"sentiment": "negative"}'))
    (record,) = enrich([{"text": "x"}], server, **shaped(shape),
                       response_template={"json_columns": {"sentiment": "string"}})
    assert record["_status"] == "ok" and record["sentiment"] == "negative" and record["_attempts"] == 2
    first, retry = server.sent[0][1][key], server.sent[1][1][key]
    assert retry[:len(first)] == first and len(retry) == len(first) + 2
    assert retry[-2] == replayed
    assert ask.items() <= retry[-1].items() and "could not be used" in json.dumps(retry[-1])


# An empty answer is not ok ----------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_a_reply_with_no_text_and_a_stop_finish_is_bad_reply_not_an_empty_ok(shape: str) -> None:
    """Before: content null (or no text block, no output item, no part) with a normal finish was ok with ''."""
    empty = shape_reply(shape, "")
    if shape == "openai_chat_completions":
        empty["choices"][0]["message"]["content"] = None
    (record,) = enrich([{"text": "x"}], Recorder(lambda _b, _n: httpx.Response(200, json=empty)), **shaped(shape))
    assert (record["_status"], record["_error_class"]) == ("error", "bad_reply"), record
    assert "holds no answer" in record["_error"] and record["answer"] in (None, "")


def test_a_refusal_in_place_of_content_is_content_filter() -> None:
    refused = chat_reply(None)
    refused["choices"][0]["message"]["refusal"] = "I can't help with that."
    (record,) = enrich([{"text": "x"}], Recorder(lambda _b, _n: httpx.Response(200, json=refused)))
    assert (record["_status"], record["_error_class"]) == ("error", "content_filter")
    assert "refused to answer: I can't help with that." in record["_error"]
