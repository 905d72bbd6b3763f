"""Batch mode with tasks (connector.pipeline.batch_tasks), in-process ``read`` against the fake batch server
(tests/fake_batch.py, its own process): every task's requests in provider batches, a dependent task's in a
later wave once its input answers are in, the STATE naming the tasks of the batches in flight, nothing bought
twice (counted at the server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connector.config.load import load_config
from connector.errors import ConfigError
from tests.batch_runs import batch_config, delta, read, rows_of, server_fixture
from tests.conftest import progress_of, run_cli
from tests.fake_batch import Control

pytestmark = pytest.mark.timeout(120)

BOUGHT = ("batch_created", "batch_requests", "batch_custom_ids_twice", "answers", "bodies_answered_twice", "chat")
# Two independent tasks (one with its own model), one using the first's answer.
TASKS = [{"name": "summary", "prompt": "Sum {{text}}"},
         {"name": "lang", "prompt": "Lang {{text}}", "model": "m2"},
         {"name": "short", "prompt": "Short {{summary.answer}}"}]

auto = server_fixture(1)  # batches move one step on every poll
manual = server_fixture(0)  # batches move only when the test says


def tasks_config(origin: str, rows: list[dict[str, Any]], cache: Path, **raw: Any) -> dict[str, Any]:
    config = batch_config(origin, rows, cache=cache, **raw)
    del config["prompt"]
    return {**config, "tasks": TASKS}


def test_every_tasks_requests_go_in_batches_and_the_dependent_one_in_a_later_wave(auto: Control,
                                                                                   tmp_path: Path) -> None:
    config = tasks_config(auto.origin, rows_of(4, "waves"), tmp_path / "answers.sqlite")
    before = auto.stats()
    sync = read(config)
    assert sync.error is None, sync.error
    records = sync.records
    assert [r["_row_number"] for r in records] == [1, 2, 3, 4]
    assert [r["summary_answer"] for r in records] == [f"echo: Sum waves row {i}" for i in range(1, 5)]
    assert records[0]["short_answer"] == "echo: Short echo: Sum waves row 1"  # the upstream answer in its prompt
    assert records[0]["lang_model"] == "m2" and records[0]["summary_model"] == "m"
    assert all(r["_status"] == "ok" and r["_batch_id"] and not r["summary_cached"] for r in records)
    # One batch per task (one model each), the rows x tasks requests each bought once, none sent normally.
    assert delta(auto.stats(), before, *BOUGHT) == {"batch_created": 3, "batch_requests": 12,
                                                    "batch_custom_ids_twice": 0, "answers": 12,
                                                    "bodies_answered_twice": 0, "chat": 0}
    assert progress_of(sync.stream_state) == {"position": 4} and sync.statuses[-1] == "COMPLETE"
    again = read(config)  # a full re-read: every answer from the cache, nothing submitted
    assert [r["short_answer"] for r in again.records] == [r["short_answer"] for r in records]
    assert all(r["_cached"] for r in again.records)
    assert delta(auto.stats(), before, "batch_created", "answers") == {"batch_created": 3, "answers": 12}


def test_without_wait_each_sync_moves_one_wave_and_the_state_names_the_tasks_in_flight(manual: Control,
                                                                                        tmp_path: Path) -> None:
    config = tasks_config(manual.origin, rows_of(3, "hourly tasks"), tmp_path / "answers.sqlite",
                          batch={"wait": False})
    before = manual.stats()
    first = read(config)  # wave 0: summary and lang submitted, nothing ended
    assert first.error is None and first.records == [] and first.statuses[-1] == "INCOMPLETE"
    saved = first.stream_state
    assert saved["position"] == 0 and sorted(b["task"] for b in saved["batches"]) == ["lang", "summary"]
    assert all(b["rows"] == [[1, 3]] and b["id"] for b in saved["batches"])

    second = read(config, first.state)  # nothing moved: nothing submitted, no new STATE (the same one)
    assert second.records == [] and second.state is None and second.statuses[-1] == "INCOMPLETE"
    assert delta(manual.stats(), before, "batch_created") == {"batch_created": 2}

    manual.advance(steps=4)
    third = read(config, first.state)  # wave 0 collected, wave 1 (short) submitted
    assert third.error is None and third.records == []
    assert [b["task"] for b in third.stream_state["batches"]] == ["short"]

    manual.advance(steps=4)
    fourth = read(config, third.state)  # wave 1 collected: every row's record
    assert fourth.error is None, fourth.error
    assert [r["short_answer"] for r in fourth.records] == [f"echo: Short echo: Sum hourly tasks row {i}"
                                                           for i in range(1, 4)]
    assert progress_of(fourth.stream_state) == {"position": 3} and fourth.statuses[-1] == "COMPLETE"
    assert delta(manual.stats(), before, *BOUGHT) == {"batch_created": 3, "batch_requests": 9,
                                                      "batch_custom_ids_twice": 0, "answers": 9,
                                                      "bodies_answered_twice": 0, "chat": 0}


def test_batch_mode_with_tasks_needs_the_answer_cache() -> None:
    raw = {"url": "http://fake.local/v1", "model": "m", "input": {"rows": [{"text": "x"}]}, "tasks": TASKS,
           "batch": {"enabled": True}, "cache": {"enabled": False}}
    with pytest.raises(ConfigError, match=r"tasks: batch mode \(batch.enabled\) with tasks needs the answer cache"):
        load_config(raw)


def test_export_then_import_with_independent_tasks_writes_a_line_per_task_request(tmp_path: Path) -> None:
    from tests.test_batch_files import jsonl, offline_config, run_offline

    tasks = [{"name": "summary", "prompt": "Sum {{text}}"}, {"name": "lang", "prompt": "Lang {{text}}"}]
    config = offline_config(tmp_path, rows_of(3, "offline tasks"), prompt=None, tasks=tasks)
    requests = tmp_path / "requests.jsonl"
    exported = run_cli(["run", "--config", config, "--export-batch", str(requests)])
    assert exported.code == 0, exported.stderr
    lines = jsonl(requests)
    assert [line["body"]["messages"][-1]["content"] for line in lines] == [
        f"{task} offline tasks row {i}" for i in range(1, 4) for task in ("Sum", "Lang")]
    assert len({line["custom_id"] for line in lines}) == 6  # each task's request has its own id
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(x) + "\n" for x in run_offline(lines, fail="Lang offline tasks row 2")))
    output = tmp_path / "enriched.jsonl"
    imported = run_cli(["run", "--config", config, "--import-batch", str(results), "--output", str(output)])
    assert imported.code == 0, imported.stderr
    assert "5 task requests answered by the file" in imported.stderr
    records = jsonl(output)
    assert [r["summary_answer"] for r in records] == [f"echo: Sum offline tasks row {i}" for i in range(1, 4)]
    assert [r["lang_status"] for r in records] == ["ok", "error", "ok"]
    assert [r["_status"] for r in records] == ["ok", "error", "ok"] and records[0]["_batch_id"] == "file:results.jsonl"


@pytest.mark.parametrize(("tasks", "fragment"), [
    ([*TASKS[:1], {"name": "short", "prompt": "Short {{summary.answer}}"}],
     "--export-batch cannot hold task 'short': its prompt uses the answer of task 'summary'"),
    (TASKS[:2], "--export-batch: the tasks ask 2 models (m, m2); OpenAI's Batch API takes one model per file"),
])
def test_an_export_the_file_cannot_hold_is_refused_saying_why(tmp_path: Path, tasks: list[dict[str, Any]],
                                                             fragment: str) -> None:
    from tests.test_batch_files import offline_config

    config = offline_config(tmp_path, rows_of(2, "refused"), prompt=None, model="m", tasks=tasks)
    requests = tmp_path / "requests.jsonl"
    run = run_cli(["run", "--config", config, "--export-batch", str(requests)])
    assert run.code == 1 and fragment in run.stderr and not requests.exists()
