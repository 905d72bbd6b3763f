"""Real Airbyte clients accept the connector's real output.

The connector runs as its console script against the fake OpenAI server; its stdout is
judged by airbyte-cdk (tests/compat/cdk_checks.py) and the connector is driven end to end
by PyAirbyte into a DuckDB cache (tests/compat/pyairbyte_roundtrip.py). Both run in
``.venv-compat`` (``make compat``), never in the project's venv.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, Server, progress_of

pytestmark = pytest.mark.compat

COMPAT_PYTHON = ROOT / ".venv-compat" / "bin" / "python"
SCRIPTS = Path(__file__).resolve().parent / "compat"
WRONG_KEY = "sk-wrong-key-for-compat-4242424242"
STREAM = "enriched_rows"
OUTPUT_COLUMNS = ["answer", "_row_number", "_status", "_error", "_model", "_finish_reason",
                  "_prompt_tokens", "_completion_tokens", "_latency_ms", "_ttft_ms", "_attempts"]
INPUT_ROWS: dict[str, pa.Array] = {
    "item_id": pa.array([101, 102, 103, 104, 105], pa.int64()),
    "price": pa.array([9.5, 12.25, None, 0.1, 100.0], pa.float64()),
    "review": pa.array(["great value", "broke in a week", "ok", None, "déjà vu, 5 ★"]),
    "bought_on": pa.array([dt.date(2025, 1, 2), dt.date(2025, 2, 3), None,
                           dt.date(2025, 4, 5), dt.date(2025, 5, 6)], pa.date32()),
    "in_stock": pa.array([True, False, None, True, False], pa.bool_()),
}
N_ROWS = 5


def _compat_python() -> Path:
    if not COMPAT_PYTHON.exists():
        pytest.fail(
            f"{COMPAT_PYTHON} is missing: run `make compat` to create .venv-compat "
            "(PyAirbyte + airbyte-cdk); the compatibility tests need it.",
            pytrace=False,
        )
    return COMPAT_PYTHON


def _connector_executable() -> Path:
    found = Path(sys.executable).parent / "source-openai-compatible"
    if not found.exists():
        which = shutil.which("source-openai-compatible")
        if which is None:
            pytest.fail("the console script source-openai-compatible is not installed: run "
                        "`make install`", pytrace=False)
        found = Path(which)
    return found


@dataclass
class Workspace:
    dir: Path
    config: Path
    config_data: dict[str, Any]
    codes: dict[str, int]
    outputs: dict[str, Path]


def _config(server: Server, input_path: Path, api_key: str) -> dict[str, Any]:
    return {
        "url": server.base_url,
        "api_key": api_key,
        "model": "fake-model",
        "prompt": "Item {{item_id}} ({{price}}, {{bought_on}}, in stock: {{in_stock}}): {{review}}",
        "input": {"path": str(input_path)},
        "concurrency": 4,
        "max_retries": 1,
        "timeout": 20,
    }


def _run_connector(args: list[str], out: Path, cwd: Path) -> int:
    """The console script, as a platform runs it; stdout saved to ``out``."""
    with out.open("wb") as stdout:
        proc = subprocess.run([str(_connector_executable()), *args], cwd=cwd, stdout=stdout,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=120)
    return proc.returncode


def _run_compat(script: str, args: list[str], cwd: Path, extra_env: dict[str, str] | None = None,
                timeout: float = 150) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AIRBYTE_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(extra_env or {})
    env.update({
        "AIRBYTE_OFFLINE_MODE": "1",
        "DO_NOT_TRACK": "1",
        "AIRBYTE_PROJECT_DIR": str(cwd),
        "AIRBYTE_CACHE_ROOT": str(cwd / ".cache"),
        "AIRBYTE_TEMP_DIR": str(cwd / "tmp"),
        "AIRBYTE_LOGGING_ROOT": str(cwd / "logs"),
        "PYTHONWARNINGS": "ignore::FutureWarning",
    })
    return subprocess.run([str(_compat_python()), str(SCRIPTS / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _last_json(proc: subprocess.CompletedProcess[str], what: str) -> dict[str, Any]:
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"{what} printed no JSON summary (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    return dict(json.loads(lines[-1]))


@pytest.fixture(scope="module")
def workspace(fake_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """Input file, config, and the connector's stdout for every command."""
    _compat_python()
    work = tmp_path_factory.mktemp("compat")
    input_path = work / "reviews.parquet"
    pq.write_table(pa.table(INPUT_ROWS), input_path)
    config_data = _config(fake_server, input_path, fake_server.api_key)
    config = work / "config.json"
    config.write_text(json.dumps(config_data))
    (work / "state.json").write_text("[]")

    out = {name: work / f"{name}.out" for name in
           ("spec", "check", "discover", "read", "read_incremental", "bad_read")}
    codes = {
        "spec": _run_connector(["spec"], out["spec"], work),
        "check": _run_connector(["check", "--config", str(config)], out["check"], work),
        "discover": _run_connector(["discover", "--config", str(config)], out["discover"], work),
    }
    # The configured catalogs the CDK's standard tests send, built by airbyte-cdk itself.
    made = _run_compat("cdk_checks.py", ["catalogs", "--discover", str(out["discover"]),
                                         "--out-dir", str(work)], work)
    assert made.returncode == 0, made.stdout + made.stderr[-4000:]
    codes["read"] = _run_connector(["read", "--config", str(config), "--catalog",
                                    str(work / "basic_read_catalog.json")], out["read"], work)
    codes["read_incremental"] = _run_connector(
        ["read", "--config", str(config), "--catalog", str(work / "incremental_catalog.json"),
         "--state", str(work / "state.json")], out["read_incremental"], work)
    codes["bad_read"] = _run_connector(["read", "--config", str(config), "--catalog",
                                        str(work / "bad_catalog.json")], out["bad_read"], work)
    yield Workspace(work, config, config_data, codes, out)


def test_exit_codes_are_what_platforms_expect(workspace: Workspace) -> None:
    assert workspace.codes == {"spec": 0, "check": 0, "discover": 0, "read": 0,
                               "read_incremental": 0, "bad_read": 1}, (
        workspace.outputs["bad_read"].read_text()[-2000:]
    )


def test_airbyte_cdk_accepts_every_message(workspace: Workspace) -> None:
    out = workspace.outputs
    proc = _run_compat("cdk_checks.py", [
        "verify", "--config", str(workspace.config), "--spec", str(out["spec"]),
        "--check", str(out["check"]), "--discover", str(out["discover"]),
        "--read", str(out["read"]), "--catalog", str(workspace.dir / "basic_read_catalog.json"),
        "--bad-read", str(out["bad_read"]),
    ], workspace.dir)
    result = _last_json(proc, "cdk_checks.py")
    failures = "\n\n".join(f"[{f['check']}]\n{f['error']}" for f in result["failures"])
    assert proc.returncode == 0 and not result["failures"], failures or proc.stderr[-4000:]
    assert len(result["passed"]) >= 15, result["passed"]
    assert result["facts"]["streams"] == [STREAM, "models"]
    assert result["facts"]["read"]["records"] == {STREAM: N_ROWS, "models": 2}

    # The read PyAirbyte asks for: incremental on every stream, `--state []`.
    proc = _run_compat("cdk_checks.py", [
        "verify", "--config", str(workspace.config), "--spec", str(out["spec"]),
        "--read", str(out["read_incremental"]),
        "--catalog", str(workspace.dir / "incremental_catalog.json"),
    ], workspace.dir)
    result = _last_json(proc, "cdk_checks.py")
    failures = "\n\n".join(f"[{f['check']}]\n{f['error']}" for f in result["failures"])
    assert proc.returncode == 0 and not result["failures"], failures or proc.stderr[-4000:]
    assert result["facts"]["read"]["records"] == {STREAM: N_ROWS, "models": 2}


def test_pyairbyte_reads_everything_into_duckdb(workspace: Workspace) -> None:
    run_dir = workspace.dir / "pyairbyte"
    run_dir.mkdir()
    proc = _run_compat("pyairbyte_roundtrip.py",
                       [str(workspace.config), str(_connector_executable())], run_dir)
    summary = _last_json(proc, "pyairbyte_roundtrip.py")
    assert summary["error"] is None, (
        f"{summary['error']}\n{summary.get('traceback', '')}\n{proc.stderr[-3000:]}"
    )
    assert summary["check"] == {"ok": True, "error": None}
    assert summary["streams"] == [STREAM, "models"]
    assert summary["configured_sync_modes"] == {STREAM: "incremental", "models": "incremental"}

    table = summary["read"][STREAM]
    assert table["count"] == N_ROWS
    assert table["dataset_len"] == N_ROWS
    missing = [c for c in [*INPUT_ROWS, *OUTPUT_COLUMNS] if c not in table["columns"]]
    assert not missing, f"columns missing from the DuckDB table: {missing}; has {table['columns']}"
    first, second, third = table["rows"]
    assert first["item_id"] == 101 and first["review"] == "great value"
    assert first["bought_on"] == "2025-01-02" and first["in_stock"] is True
    assert float(first["price"]) == 9.5
    assert first["answer"] == ("echo: Item 101 (9.5, 2025-01-02, in stock: true): great value")
    assert first["_row_number"] == 1 and first["_status"] == "ok" and first["_error"] is None
    assert first["_model"] == "fake-model" and first["_finish_reason"] == "stop"
    assert first["_attempts"] == 1 and first["_prompt_tokens"] > 0
    assert first["_ttft_ms"] is None and float(first["_latency_ms"]) >= 0
    assert second["_row_number"] == 2
    assert third["price"] is None and third["bought_on"] is None and third["in_stock"] is None
    assert summary["read"]["models"]["count"] == 2
    assert summary["processed_records"] == N_ROWS + 2

    state = summary["state"][STREAM]
    assert progress_of(state["stream"]["stream_state"]) == {"position": N_ROWS}
    assert state["sourceStats"]["recordCount"] == N_ROWS
    # The incremental re-read got PyAirbyte's stored state back and resumed after the last row.
    assert summary["second_read"] == {"processed_records": 2,
                                      "counts": {STREAM: N_ROWS, "models": 2}}


def test_wrong_api_key_fails_check_without_leaking_it(fake_server: Server, tmp_path: Path,
                                                      workspace: Workspace) -> None:
    bad = dict(workspace.config_data, api_key=WRONG_KEY)
    config = tmp_path / "bad_config.json"
    config.write_text(json.dumps(bad))

    proc = _run_compat("pyairbyte_roundtrip.py",
                       [str(config), str(_connector_executable()), "--check-only"], tmp_path)
    summary = _last_json(proc, "pyairbyte_roundtrip.py")
    assert summary["error"] is None, f"{summary['error']}\n{summary.get('traceback', '')}"
    assert summary["check"]["ok"] is False
    message = summary["check"]["error"]
    assert "401" in message and "api_key" in message, message
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").rglob("*")
                   if p.is_file())
    for where, text in (("summary", message), ("stdout", proc.stdout), ("stderr", proc.stderr),
                        ("PyAirbyte logs", logs)):
        assert WRONG_KEY not in text, f"the API key appears in PyAirbyte's {where}"

    # The same check through the CLI, judged by airbyte-cdk's check and leak assertions.
    check_out = tmp_path / "check.out"
    assert _run_connector(["check", "--config", str(config)], check_out, tmp_path) == 0
    verdict = _run_compat("cdk_checks.py", [
        "verify", "--config", str(config), "--spec", str(workspace.outputs["spec"]),
        "--check", str(check_out), "--expect-check", "failed"], tmp_path)
    result = _last_json(verdict, "cdk_checks.py")
    assert not result["failures"], result["failures"]


def test_pyairbyte_read_fails_loudly_when_the_sync_fails(tmp_path: Path,
                                                         workspace: Workspace) -> None:
    """A failed sync must raise in PyAirbyte, not end as a "successful" partial read."""
    failing = dict(workspace.config_data, headers={"x-fake": "status-500"}, max_retries=0)
    config = tmp_path / "failing_config.json"
    config.write_text(json.dumps(failing))
    proc = _run_compat("pyairbyte_roundtrip.py",
                       [str(config), str(_connector_executable()), "--skip-check"], tmp_path)
    summary = _last_json(proc, "pyairbyte_roundtrip.py")
    assert summary["error"] is not None, "PyAirbyte reported success for a sync where every row failed"
    assert "AirbyteConnectorFailedError" in summary["error"] and "Exit Code: 1" in summary["error"]
    assert summary["read"] is None
    assert "Sync completed" not in proc.stderr
    connector_logs = "".join(p.read_text(errors="replace")
                             for p in (tmp_path / "logs" / "source-openai-compatible").glob("*.log"))
    assert "every row failed" in connector_logs, connector_logs[-2000:]
