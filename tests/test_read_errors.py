"""``read`` failure paths: the right failure type and exit code, nothing lost, no secret printed."""

from __future__ import annotations

import itertools
import json
from typing import Any

from tests.conftest import Server, catalog_for, progress_of, run_cli


def config_for(server: Server, rows: int = 6, **extra: Any) -> dict[str, Any]:
    return {"url": server.base_url, "api_key": server.api_key, "model": "fake-model",
            "prompt": "Say {{text}}", "input": {"rows": [{"text": f"t{i}"} for i in range(rows)]},
            **extra}


def read(write_json, config: Any, catalog: Any = None, state: Any = None) -> Any:
    args = ["read", "--config", write_json("c.json", config),
            "--catalog", write_json("cat.json", catalog or catalog_for())]
    if state is not None:
        args += ["--state", write_json("state.json", state)]
    return run_cli(args)


def assert_clean_failure(run: Any, failure_type: str, *needles: str) -> str:
    assert run.code == 1, run.stdout[-2000:]
    (error,) = run.trace_errors
    assert error["failure_type"] == failure_type
    for needle in needles:
        assert needle in error["message"], error["message"]
    assert "Traceback" not in run.stderr
    return str(error["message"])


def test_invalid_config_is_a_config_error_naming_the_field(fake_server: Server, write_json) -> None:
    assert_clean_failure(read(write_json, config_for(fake_server, timeout=-1)),
                         "config_error", "timeout: must be > 0")


def test_unknown_stream_is_a_config_error(fake_server: Server, write_json) -> None:
    run = read(write_json, config_for(fake_server), catalog_for("tickets"))
    assert_clean_failure(run, "config_error", "unknown stream 'tickets'", "enriched_rows")


def test_unsupported_sync_mode_is_a_config_error(fake_server: Server, write_json) -> None:
    run = read(write_json, config_for(fake_server), catalog_for("enriched_rows", "cdc"))
    assert_clean_failure(run, "config_error", "does not support sync_mode 'cdc'", "full_refresh, incremental")


def test_foreign_state_is_rejected(fake_server: Server, write_json) -> None:
    state = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "enriched_rows"},
                                           "stream_state": {"updated_at": "2024-01-01"}}}]
    assert_clean_failure(read(write_json, config_for(fake_server), state=state),
                         "config_error", "is not this source's")


def test_config_file_that_is_not_json(fake_server: Server, tmp_path) -> None:
    bad = tmp_path / "c.json"
    bad.write_text("{'url': nope")
    run = run_cli(["read", "--config", str(bad), "--catalog", str(bad)])
    assert_clean_failure(run, "config_error", "--config", "not valid JSON")


def test_key_rejected_mid_run_stops_with_trace_and_exit_1(fake_server: Server, write_json) -> None:
    config = config_for(fake_server, api_key="sk-revoked-key-123456")
    run = read(write_json, config)
    message = assert_clean_failure(run, "config_error", "API key rejected (401)")
    assert "sk-revoked-key-123456" not in run.stdout + run.stderr + message
    statuses = [m["trace"]["stream_status"]["status"] for m in run.of_type("TRACE")
                if m["trace"]["type"] == "STREAM_STATUS"]
    assert statuses[-1] == "INCOMPLETE"


def test_every_row_failing_ends_with_trace_error(fake_server: Server, write_json) -> None:
    config = config_for(fake_server, max_retries=0, headers={"x-fake": "status-500"})
    run = read(write_json, config)
    assert_clean_failure(run, "transient_error", "every row failed (6 rows)")
    # nothing lost: every row is still emitted, with its error
    assert [r["_row_number"] for r in run.records] == [1, 2, 3, 4, 5, 6]
    assert all(r["_status"] == "error" and "500" in r["_error"] for r in run.records)


def test_a_failing_row_is_emitted_with_its_error_and_the_sync_succeeds(
    fake_server: Server, write_json
) -> None:
    config = config_for(fake_server, max_retries=1)
    config["input"] = {"rows": [{"text": "fine"}, {"text": "[[fake:status-503]]"}, {"text": "also fine"}]}
    run = read(write_json, config)
    assert run.code == 0, run.stdout[-2000:]
    assert [r["_row_number"] for r in run.records] == [1, 2, 3]
    assert [r["_status"] for r in run.records] == ["ok", "error", "ok"]
    failed = run.records[1]
    assert "server error (503)" in failed["_error"] and failed["_attempts"] == 2
    assert failed["answer"] is None
    summary = [m["log"]["message"] for m in run.of_type("LOG")][-1]
    assert "2 ok, 1 error" in summary and "row 2:" in summary


def test_resume_from_state_skips_rows_already_emitted(fake_server: Server, write_json) -> None:
    state = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "enriched_rows"},
                                           "stream_state": {"position": 4}}}]
    run = read(write_json, config_for(fake_server), catalog_for(sync_mode="incremental"), state)
    assert run.code == 0
    assert [r["_row_number"] for r in run.records] == [5, 6]
    final = run.of_type("STATE")[-1]["state"]["stream"]["stream_state"]
    assert progress_of(final) == {"position": 6}


def test_states_count_records_and_never_repeat(fake_server: Server, write_json) -> None:
    config = config_for(fake_server, rows=25)
    run = read(write_json, config, catalog_for(sync_mode="incremental"))
    assert run.code == 0
    states = run.of_type("STATE")
    assert sum(s["state"]["sourceStats"]["recordCount"] for s in states) == 25
    bodies = [json.dumps(s["state"]["stream"]["stream_state"]) for s in states]
    assert all(a != b for a, b in itertools.pairwise(bodies))
