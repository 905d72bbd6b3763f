"""input.limit and --limit: a sample of the input's first N rows, whose STATE is never a finished sync's."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from connector.airbyte.state import StreamPosition, position_for
from connector.errors import StateError
from tests.conftest import Server, catalog_for, run_cli
from tests.test_standalone import run_plain
from tests.test_state_and_catalog import last_state, rows_of, stream_state, sync, write_rows

STREAM = "enriched_rows"


def states(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["state"]["stream"]["stream_state"] for m in messages if m["type"] == "STATE"]


@pytest.mark.parametrize("mode", ["full_refresh", "incremental"])
def test_a_limited_read_asks_for_the_first_rows_only_and_its_state_is_no_finished_sync(tmp_path: Path,
                                                                                       mode: str) -> None:
    write_rows(tmp_path / "data.csv", [f"row {i}" for i in range(1, 11)])
    before = (tmp_path / "data.csv").read_bytes(), os.stat(tmp_path / "data.csv").st_mtime_ns
    messages, error, asked = sync(tmp_path, None, mode=mode, limit=3)
    assert error is None and rows_of(messages) == [1, 2, 3] and asked == 3
    (final,) = states(messages)
    assert final["position"] == 3 and final["limit"] == 3 and "sync_complete" not in final
    assert (tmp_path / "data.csv").read_bytes(), os.stat(tmp_path / "data.csv").st_mtime_ns == before


def test_a_full_refresh_after_a_sample_reads_every_row_and_finishes(tmp_path: Path) -> None:
    write_rows(tmp_path / "data.csv", [f"row {i}" for i in range(1, 8)])
    sample, _, _ = sync(tmp_path, None, mode="full_refresh", limit=2)
    messages, error, asked = sync(tmp_path, last_state(sample), mode="full_refresh")
    assert error is None and rows_of(messages) == list(range(1, 8))
    assert asked == 5  # rows 1 and 2: the sample's answers, from the answer cache
    assert states(messages)[-1]["sync_complete"] is True and "limit" not in states(messages)[-1]


def test_an_incremental_sync_after_a_sample_continues_after_the_rows_it_emitted(tmp_path: Path) -> None:
    write_rows(tmp_path / "data.csv", [f"row {i}" for i in range(1, 8)])
    sample, _, _ = sync(tmp_path, None, limit=2)
    messages, error, asked = sync(tmp_path, last_state(sample))
    assert error is None and rows_of(messages) == [3, 4, 5, 6, 7] and asked == 5
    larger, error, asked = sync(tmp_path, last_state(sample), limit=4)  # a larger sample reads on to its limit
    assert error is None and rows_of(larger) == [3, 4] and states(larger)[-1]["limit"] == 4
    assert asked == 0  # rows 3 and 4 were answered by the full sync: from the answer cache


def test_a_limit_larger_than_the_input_reads_it_all_but_still_is_a_sample(tmp_path: Path) -> None:
    write_rows(tmp_path / "data.csv", ["a", "b"])
    messages, error, asked = sync(tmp_path, None, mode="full_refresh", limit=50)
    assert error is None and rows_of(messages) == [1, 2] and asked == 2
    assert states(messages)[-1] == {**states(messages)[-1], "limit": 50} and "sync_complete" not in states(messages)[-1]


def test_a_sample_state_round_trips_and_a_full_refresh_does_not_resume_it() -> None:
    saved = StreamPosition(5, False, limit=5)
    assert position_for([stream_state(saved.as_state())], STREAM, "incremental") == saved
    assert position_for([stream_state(saved.as_state())], STREAM, "full_refresh") == StreamPosition()


@pytest.mark.parametrize("limit", [0, -1, "5", True])
def test_a_state_limit_that_is_not_a_positive_integer_is_refused(limit: Any) -> None:
    with pytest.raises(StateError, match="limit must be a positive integer"):
        position_for([stream_state({"position": 1, "limit": limit})], STREAM, "incremental")


def test_the_config_refuses_a_limit_below_one(tmp_path: Path) -> None:
    write_rows(tmp_path / "data.csv", ["a"])
    _, error, asked = sync(tmp_path, None, limit=0)
    assert error is not None and error.failure_type == "config_error" and "input.limit" in error.message
    assert asked == 0


# the command line ------------------------------------------------------------------------


def config_file(tmp_path: Path, server: Server, rows: int) -> str:
    write_rows(tmp_path / "data.csv", [f"row {i}" for i in range(1, rows + 1)])
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"url": server.base_url, "api_key": server.api_key, "model": "fake-model",
                                "prompt": "Say {{text}}", "cache": {"enabled": False},
                                "input": {"path": str(tmp_path / "data.csv")}}))
    return str(path)


def test_read_and_run_take_limit_on_the_command_line(fake_server: Server, tmp_path: Path) -> None:
    config = config_file(tmp_path, fake_server, 9)
    (tmp_path / "catalog.json").write_text(json.dumps(catalog_for(sync_mode="full_refresh")))
    before = fake_server.stats().get("chat", 0)
    read = run_cli(["read", "--config", config, "--catalog", str(tmp_path / "catalog.json"), "--limit", "4"])
    assert read.code == 0, read.stderr
    assert [r["_row_number"] for r in read.records] == [1, 2, 3, 4]
    assert states(read.messages)[-1]["limit"] == 4
    out = tmp_path / "out.jsonl"
    ran = run_cli(["run", "--config", config, "--output", str(out), "--limit", "2"])
    assert ran.code == 0, ran.stderr
    assert [json.loads(line)["_row_number"] for line in out.read_text().splitlines()] == [1, 2]
    assert fake_server.stats().get("chat", 0) - before == 6


def test_the_dry_run_counts_the_limited_rows(fake_server: Server, tmp_path: Path) -> None:
    config = config_file(tmp_path, fake_server, 9)
    ran = run_plain(["run", "--config", config, "--output", str(tmp_path / "never.jsonl"), "--dry-run",
                     "--limit", "3"])
    assert ran.code == 0, ran.stderr
    assert "rows: 3; requests: 3;" in ran.stdout


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_a_limit_that_is_not_a_positive_number_is_a_usage_error(tmp_path: Path, value: str) -> None:
    ran = run_cli(["run", "--config", str(tmp_path / "c.json"), "--limit", value])
    assert ran.code == 2 and "expected a whole number of rows above 0" in ran.stderr
