"""The run loop's promises, counted at the server: every attempt paid is on the row and in the
summary, a summary ends every run, and the spend guards mean what they say."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.conftest import chat_reply, progress_of, read_through

PRICES = {"*": {"input_per_million": 1_000_000.0, "output_per_million": 2_000_000.0}}  # 1 per token in, 2 out


def base_config(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"url": "http://fake.local/v1", "api_key": "sk-test", "model": "m", "prompt": "Say {{text}}",
            "input": {"rows": rows}, "cache": {"enabled": False}, "max_retries": 0, **extra}


def records(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["record"]["data"] for m in messages if m["type"] == "RECORD"]


def logs(messages: list[dict[str, Any]]) -> list[str]:
    return [m["log"]["message"] for m in messages if m["type"] == "LOG"]


def summary_of(messages: list[dict[str, Any]]) -> str:
    lines = [line for line in logs(messages) if " rows in " in line]
    assert len(lines) == 1, logs(messages)
    return lines[0]


def reply_with_usage(content: str, prompt: int, completion: int) -> dict[str, Any]:
    reply = chat_reply(content)
    reply["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return reply


def json_columns_config(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return base_config(rows, response_template={"json_columns": {"label": "string"}}, prices=PRICES, **extra)


def test_a_validation_retry_adds_its_tokens_and_cost_to_the_row_and_the_summary() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        if len(body["messages"]) == 1:  # the first ask: an answer that is not JSON
            return httpx.Response(200, json=reply_with_usage("not json at all", 10, 3))
        return httpx.Response(200, json=reply_with_usage('{"label": "x"}', 20, 4))

    messages, error = read_through(json_columns_config([{"text": "a"}]), handler)
    assert error is None
    [row] = records(messages)
    assert len(seen) == 2 and row["_status"] == "ok" and row["_attempts"] == 2
    assert (row["_prompt_tokens"], row["_completion_tokens"]) == (30, 7)  # both answers were paid
    assert row["_cost"] == pytest.approx(30 * 1 + 7 * 2)
    summary = summary_of(messages)
    assert "tokens in 30, out 7" in summary and "cost 44.0000" in summary
    assert "rows retried: 1" in summary


def test_the_summary_is_the_exact_sum_of_the_rows() -> None:
    calls: Counter[str] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        text = json.loads(request.content)["messages"][-1]["content"]
        calls[text] += 1
        if text.startswith("Say bad") and calls[text] == 1:
            return httpx.Response(200, json=reply_with_usage("nope", 7, 1))
        return httpx.Response(200, json=reply_with_usage('{"label": "y"}', 5, 2))

    rows = [{"text": f"bad{i}" if i % 3 == 0 else f"good{i}"} for i in range(12)]
    messages, error = read_through(json_columns_config(rows, concurrency=4), handler)
    assert error is None
    out = records(messages)
    prompt = sum(r["_prompt_tokens"] for r in out)
    completion = sum(r["_completion_tokens"] for r in out)
    cost = sum(r["_cost"] for r in out)
    summary = summary_of(messages)
    assert f"tokens in {prompt}, out {completion}" in summary
    assert f"cost {cost:.4f}" in summary
    assert prompt == 12 * 5 + 4 * 7  # counted at the server: 16 answers, 4 of them retried


def test_a_failed_validation_retry_is_an_error_with_every_attempt_counted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        turns = json.loads(request.content)["messages"]
        if turns[0]["content"] == "Say good":
            return httpx.Response(200, json=reply_with_usage('{"label": "g"}', 1, 1))
        if len(turns) == 1:
            return httpx.Response(200, json=reply_with_usage("not json", 10, 3))
        return httpx.Response(400, json={"error": {"message": "bad turn", "type": "invalid_request_error"}})

    rows = [{"text": "a"}, {"text": "b"}, {"text": "good"}]
    messages, error = read_through(json_columns_config(rows), handler)
    assert error is None
    for row in records(messages)[:2]:
        assert row["_status"] == "error" and row["_error_class"] == "bad_request"
        assert row["_attempts"] == 2
        assert "asking again failed" in row["_error"] and "bad turn" in row["_error"]
        assert row["_raw_answer"] == "not json"
        assert (row["_prompt_tokens"], row["_cost"]) == (10, pytest.approx(16.0))  # the first answer was paid
    assert "rows retried: 2" in summary_of(messages)


@pytest.mark.parametrize("concurrency", [1, 16])
def test_max_requests_is_the_number_of_requests_that_reach_the_endpoint(concurrency: int) -> None:
    lock = threading.Lock()
    seen = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            seen[0] += 1
        return httpx.Response(200, json=chat_reply("ok"))

    rows = [{"text": f"r{i}"} for i in range(100)]
    messages, error = read_through(base_config(rows, max_requests=25, concurrency=concurrency), handler)
    assert error is None
    assert seen[0] == 25
    out = records(messages)
    assert [r["_row_number"] for r in out] == list(range(1, len(out) + 1))  # a prefix, in order
    assert len(out) <= 25
    states = [m["state"]["stream"]["stream_state"] for m in messages if m["type"] == "STATE"]
    assert progress_of(states[-1]) == {"position": len(out)}
    assert any("max_requests (25) reached" in line for line in logs(messages))
    assert "INCOMPLETE" in [m["trace"]["stream_status"]["status"] for m in messages
                            if m["type"] == "TRACE" and m["trace"]["type"] == "STREAM_STATUS"]


def test_max_requests_counts_retries_too() -> None:
    seen = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        seen[0] += 1
        return httpx.Response(503, headers={"retry-after-ms": "0"}, json={"error": {"message": "busy"}})

    rows = [{"text": f"r{i}"} for i in range(10)]
    config = base_config(rows, max_requests=7, max_retries=3, concurrency=1)
    read_through(config, handler)
    assert seen[0] == 7


def test_max_total_tokens_holds_within_the_estimates_of_requests_in_flight() -> None:
    used = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        used[0] += 30
        return httpx.Response(200, json=reply_with_usage("ok", 20, 10))

    rows = [{"text": f"row {i}"} for i in range(200)]
    config = base_config(rows, max_total_tokens=500, concurrency=8, parameters={"max_tokens": 10})
    messages, error = read_through(config, handler)
    assert error is None
    # Each request is estimated at its prompt (~a dozen tokens) plus max_tokens 10; the overshoot
    # is what the requests in flight used beyond their estimates: at most 8 of them.
    assert 0 < used[0] <= 500 + 8 * 30
    assert any("max_total_tokens (500) reached" in line for line in logs(messages))
    out = records(messages)
    tokens = sum(r["_prompt_tokens"] + r["_completion_tokens"] for r in out)
    assert tokens <= used[0]


def test_answers_bought_for_rows_after_a_spend_guard_stop_are_in_the_summary() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if b"row 0" in request.content:  # the first row waits for a retry the guard then refuses
            return httpx.Response(503, headers={"retry-after-ms": "0"}, json={"error": {"message": "busy"}})
        return httpx.Response(200, json=reply_with_usage("ok", 20, 10))

    rows = [{"text": f"row {i}"} for i in range(10)]
    messages, error = read_through(base_config(rows, max_requests=4, concurrency=4, max_retries=2), handler)
    assert error is None and records(messages) == []  # row 1 cannot be emitted: the guard stopped at it
    summary = next(line for line in logs(messages) if "rows by status" in line)
    # Rows 2..4 were answered (and paid) before the stop: their answers wait in the cache for the next run.
    # Was nowhere: the summary said 0 tokens while 90 were bought.
    assert "bought for rows not emitted" in summary and summary.endswith("tokens in 60, out 30"), summary


@pytest.mark.parametrize(
    ("status", "body", "extra"),
    [
        (401, {"error": {"message": "bad key"}}, {}),
        (429, {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}, {}),
        (500, {"error": {"message": "boom"}}, {"max_error_rate": 0.5}),
        (500, {"error": {"message": "boom"}}, {"on_row_error": "fail"}),
    ],
)
def test_every_run_that_stops_early_still_reports_its_summary_before_the_error(
    status: int, body: dict[str, Any], extra: dict[str, Any]
) -> None:
    calls = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        calls[0] += 1
        if calls[0] <= 3:
            return httpx.Response(200, json=reply_with_usage("fine", 4, 1))
        return httpx.Response(status, json=body)

    rows = [{"text": f"r{i}"} for i in range(40)]
    messages, error = read_through(base_config(rows, concurrency=1, prices=PRICES, **extra), handler)
    assert error is not None
    summary = summary_of(messages)
    assert re.search(r"tokens in 12, out 3; cost 18\.0000", summary), summary
    last = messages[-1]  # then STREAM_STATUS INCOMPLETE; the CLI adds the TRACE ERROR after it
    assert last["type"] == "TRACE" and last["trace"]["stream_status"]["status"] == "INCOMPLETE"
    assert messages[-2]["type"] == "LOG" and messages[-2]["log"]["message"] == summary


def test_a_row_where_every_model_failed_names_the_last_model_tried() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"message": "down"}})

    config = base_config([{"text": "a"}], fallback_models=["backup-1", "backup-2"])
    messages, error = read_through(config, handler)
    assert error is not None  # the only row failed, so the sync did too
    [row] = records(messages)
    assert row["_status"] == "error" and row["_model"] == "backup-2"


def test_an_answer_without_usage_has_unknown_tokens_and_cost_not_zero() -> None:
    """Some servers stream no usage (llama-cpp-python): what the row cost is unknown, not free."""
    def handler(request: httpx.Request) -> httpx.Response:
        reply = chat_reply("fine")
        del reply["usage"]
        return httpx.Response(200, json=reply)

    messages, error = read_through(base_config([{"text": "a"}], prices=PRICES), handler)
    assert error is None
    [row] = records(messages)
    assert row["_status"] == "ok"
    assert (row["_prompt_tokens"], row["_completion_tokens"], row["_cost"]) == (None, None, None)


def test_an_answer_whose_validation_retry_the_spend_guard_refused_is_in_the_summary() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        turns = json.loads(request.content)["messages"]
        if turns[0]["content"] == "Say good":
            return httpx.Response(200, json=reply_with_usage('{"label": "g"}', 1, 1))
        return httpx.Response(200, json=reply_with_usage("not json", 10, 3))  # paid, then asked again

    # Row 2's first answer is the second request; its validation retry, the third, is refused by max_requests.
    messages, error = read_through(json_columns_config([{"text": "good"}, {"text": "bad"}], concurrency=1,
                                                       max_requests=2), handler)
    assert error is None
    assert [r["label"] for r in records(messages)] == ["g"]  # the run stops before row 2
    summary = summary_of(messages)
    # Row 2's first answer was bought before the stop: was in no summary.
    assert "bought for rows not emitted" in summary, summary
    unemitted = summary.split("bought for rows not emitted")[1]
    assert "tokens in 10, out 3" in unemitted and f"cost {10 + 2 * 3:.4f}" in unemitted, summary
