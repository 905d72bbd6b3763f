"""``run --export-batch`` / ``--import-batch`` (the OpenAI batch files, for offline engines) and ``run``
in batch mode, through the command line in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connector.answers.records import META_COLUMNS
from tests.batch_runs import KEY, batch_config, rows_of, server_fixture
from tests.conftest import run_cli
from tests.fake_batch import Control
from tests.fake_batch_answers import answer

pytestmark = pytest.mark.timeout(120)


manual = server_fixture(0)  # batches move only when the test says


def offline_config(tmp_path: Path, rows: list[dict[str, Any]], **raw: Any) -> str:
    """A config for a team that runs the file elsewhere: the endpoint is never asked."""
    config = {"url": "http://gpu-cluster.local/v1", "api_key": "sk-unused-0123456789", "model": "Qwen/Qwen2.5-7B",
              "prompt": "Say {{text}}", "input": {"rows": rows}, "null_policy": "skip",
              "cache": {"path": str(tmp_path / "cache.sqlite")}, **raw}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_offline(lines: list[dict[str, Any]], fail: str | None = None, drop: str | None = None) -> list[dict[str, Any]]:
    """What an offline engine (vllm run-batch) writes for these input lines: one output line each."""
    out = []
    for seq, line in enumerate(lines, 1):
        text = line["body"]["messages"][-1]["content"]
        if drop and drop in text:
            continue
        if fail and fail in text:
            response = {"status_code": 400, "request_id": f"r{seq}",
                        "body": {"error": {"message": "prompt rejected", "type": "invalid_request_error"}}}
        else:
            response = {"status_code": 200, "request_id": f"r{seq}", "body": answer("chat", line["body"], seq)}
        out.append({"id": f"vllm-{seq}", "custom_id": line["custom_id"], "response": response, "error": None})
    return out


def test_export_then_import_gives_the_records_of_a_read(tmp_path: Path) -> None:
    rows = rows_of(5, "offline", r2="", r4="refused")  # row 2 is empty: skipped, no request
    rows[1]["text"] = None
    config = offline_config(tmp_path, rows)
    requests = tmp_path / "requests.jsonl"
    exported = run_cli(["run", "--config", config, "--export-batch", str(requests)])
    assert exported.code == 0, exported.stderr
    assert "wrote 4 requests" in exported.stderr and "1 skipped_null" in exported.stderr
    lines = jsonl(requests)
    assert [set(line) for line in lines] == [{"custom_id", "method", "url", "body"}] * 4
    assert {(line["method"], line["url"]) for line in lines} == {("POST", "/v1/chat/completions")}
    assert [line["custom_id"].split("-")[0] for line in lines] == ["r1", "r3", "r4", "r5"]
    assert lines[0]["body"] == {"model": "Qwen/Qwen2.5-7B", "messages": [{"role": "user",
                                                                          "content": "Say offline row 1"}]}

    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(x) + "\n" for x in run_offline(lines, fail="refused", drop="row 5")))
    output = tmp_path / "enriched.jsonl"
    imported = run_cli(["run", "--config", config, "--import-batch", str(results), "--output", str(output)])
    assert imported.code == 0, imported.stderr
    records = jsonl(output)
    assert [r["_row_number"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["_status"] for r in records] == ["ok", "skipped_null", "ok", "error", "error"]
    assert records[0]["answer"] == "echo: Say offline row 1" and records[0]["_batch_id"] == "file:results.jsonl"
    assert records[3]["_error_class"] == "bad_request" and "prompt rejected" in records[3]["_error"]
    assert records[4]["_error_class"] == "unanswered" and "has no line with custom_id r5-" in records[4]["_error"]
    assert set(META_COLUMNS) <= set(records[0])
    assert records[0]["_cost"] is None and records[0]["_prompt_tokens"] > 0


def test_a_partial_import_says_exactly_where_each_rows_answer_came_from(tmp_path: Path) -> None:
    """Six rows: one needs no request, two answered by the file, one an error line, one with no line whose
    answer an earlier import put in the answer cache, one with no answer anywhere."""
    rows = rows_of(6, "partial")
    rows[1]["text"] = None
    config = offline_config(tmp_path, rows)
    requests = tmp_path / "requests.jsonl"
    assert run_cli(["run", "--config", config, "--export-batch", str(requests)]).code == 0
    lines = {line["custom_id"].split("-")[0]: line for line in jsonl(requests)}
    earlier, results = tmp_path / "earlier.jsonl", tmp_path / "results.jsonl"
    earlier.write_text("".join(json.dumps(x) + "\n" for x in run_offline([lines["r6"]])))
    assert run_cli(["run", "--config", config, "--import-batch", str(earlier), "--output",
                    str(tmp_path / "earlier-out.jsonl")]).code == 0
    answered = run_offline([lines["r1"], lines["r3"], lines["r4"]], fail="row 4")
    results.write_text("".join(json.dumps(x) + "\n" for x in answered))
    output = tmp_path / "out.jsonl"
    imported = run_cli(["run", "--config", config, "--import-batch", str(results), "--output", str(output)])
    assert imported.code == 0, imported.stderr
    records = jsonl(output)
    assert [(r["_status"], r["_error_class"], r["_cached"], r["_batch_id"]) for r in records] == [
        ("ok", None, False, "file:results.jsonl"), ("skipped_null", None, False, None),
        ("ok", None, False, "file:results.jsonl"), ("error", "bad_request", False, "file:results.jsonl"),
        ("error", "unanswered", False, "file:results.jsonl"), ("ok", None, True, None)]
    assert records[5]["answer"] == "echo: Say partial row 6"
    assert ("--import-batch results.jsonl: 2 rows answered by the file, 1 from the answer cache, 1 failed in the "
            "file (an error line), 1 with no answer (no line in the file, nothing in the cache), 1 needed no "
            "request") in imported.stderr
    assert "answered by batches: 2;" in imported.stderr and "answers from cache: 1;" in imported.stderr


def test_an_import_prices_at_the_batch_price_and_fills_the_cache(tmp_path: Path) -> None:
    prices = {"*": {"input_per_million": 1_000_000, "output_per_million": 2_000_000, "batch_discount": 0.5}}
    config = offline_config(tmp_path, rows_of(2, "priced"), prices=prices)
    requests, results, output = tmp_path / "requests.jsonl", tmp_path / "results.jsonl", tmp_path / "out.jsonl"
    assert run_cli(["run", "--config", config, "--export-batch", str(requests)]).code == 0
    results.write_text("".join(json.dumps(x) + "\n" for x in run_offline(jsonl(requests))))
    assert run_cli(["run", "--config", config, "--import-batch", str(results), "--output", str(output)]).code == 0
    for record in jsonl(output):
        assert record["_cost"] == pytest.approx((record["_prompt_tokens"] + 2 * record["_completion_tokens"]) / 2)
    again = run_cli(["run", "--config", config, "--output", str(tmp_path / "again.jsonl")])  # from the cache
    assert again.code == 0 and [r["_cached"] for r in jsonl(tmp_path / "again.jsonl")] == [True, True]


def test_results_for_other_requests_are_not_taken_for_these_rows(tmp_path: Path) -> None:
    config = offline_config(tmp_path, rows_of(2, "first"))
    requests, results, output = tmp_path / "requests.jsonl", tmp_path / "results.jsonl", tmp_path / "out.jsonl"
    assert run_cli(["run", "--config", config, "--export-batch", str(requests)]).code == 0
    results.write_text("".join(json.dumps(x) + "\n" for x in run_offline(jsonl(requests))))
    edited = offline_config(tmp_path, rows_of(2, "first"), prompt="Now say {{text}}")
    imported = run_cli(["run", "--config", edited, "--import-batch", str(results), "--output", str(output)])
    assert imported.code == 1 and "every row failed" in imported.stderr  # as a read where every row fails
    assert "unanswered 2" in imported.stderr and "has no line with custom_id r1-" in imported.stderr
    assert "2 lines of" in imported.stderr and "answer no row" in imported.stderr


def test_a_results_file_that_is_not_one_is_refused_naming_the_line(tmp_path: Path) -> None:
    config = offline_config(tmp_path, rows_of(1, "bad file"))
    results = tmp_path / "results.jsonl"
    results.write_text('{"custom_id": "r1-x", "response": {"status_code": 200, "body": {}}}\nnot json\n')
    run = run_cli(["run", "--config", config, "--import-batch", str(results), "--output", str(tmp_path / "o.jsonl")])
    assert run.code == 1 and "line 2 is not a batch output line" in run.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_batch_files_are_openai_format_only(tmp_path: Path) -> None:
    config = offline_config(tmp_path, rows_of(1), api_compatibility="anthropic_messages",
                            url="http://gpu-cluster.local/v1")
    run = run_cli(["run", "--config", config, "--export-batch", str(tmp_path / "r.jsonl")])
    assert run.code == 1 and "--export-batch: the OpenAI batch file format" in run.stderr
    assert "anthropic_messages" in run.stderr


def test_run_in_batch_mode_keeps_its_batches_beside_the_output_until_complete(manual: Control,
                                                                             tmp_path: Path) -> None:
    config = batch_config(manual.origin, rows_of(3, "standalone"), batch={"wait": False})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    output = tmp_path / "out.jsonl"
    ledger = tmp_path / "out.jsonl.batches.json"
    first = run_cli(["run", "--config", str(path), "--output", str(output)])
    assert first.code == 0, first.stderr
    assert "3 rows are waiting for provider batches" in first.stderr and jsonl(output) == []
    saved = json.loads(ledger.read_text())["batches"]
    assert len(saved) == 1 and saved[0]["id"]
    before = manual.stats()
    manual.advance(saved[0]["id"], steps=4)
    second = run_cli(["run", "--config", str(path), "--output", str(output)])
    assert second.code == 0, second.stderr
    assert [r["answer"] for r in jsonl(output)] == [f"echo: Say standalone row {i}" for i in (1, 2, 3)]
    assert not ledger.exists()
    assert manual.stats()["batch_created"] == before["batch_created"]  # collected, not submitted again
    assert KEY not in first.stderr + second.stderr
