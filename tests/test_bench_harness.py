"""make bench's harness: a client run past its bound is ended with what it started, and the report shows a
peer that hung or failed in its matrix cell instead of a number (bench/procs.py, bench/report_*.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from bench.procs import run_measured
from bench.report_matrix import matrix_section
from bench.report_targets import targets

# A client that starts a helper holding its stdout, says the helper's PID, and never ends (nor does the helper).
HANGS_WITH_A_HELPER = (
    "import subprocess, sys, time\n"
    "helper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)'])\n"
    "print(helper.pid, flush=True)\n"
    "time.sleep(3600)\n"
)


def _state(pid: int) -> str:
    """A process's state letter from /proc ('Z' for a zombie), or '' once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def test_a_run_past_its_bound_is_killed_with_the_processes_it_started() -> None:
    out = run_measured([sys.executable, "-c", HANGS_WITH_A_HELPER], timeout_s=2)

    assert out.timed_out
    assert out.returncode == -9
    # The helper (asleep for an hour) held stdout open: that the read ended at all says it was killed too.
    # It may still be on its way out (its files close before it is gone): wait for that, not for a time.
    helper = int(out.head_tail.split(b"\n")[0])
    for _ in range(3000):
        if _state(helper) in ("", "Z", "X"):
            break
        time.sleep(0.01)
    assert _state(helper) in ("", "Z", "X"), "the helper still runs: the watchdog did not end it"


def test_a_run_within_its_bound_is_not_marked_timed_out() -> None:
    out = run_measured([sys.executable, "-c", "print('done')"], timeout_s=600)

    assert not out.timed_out
    assert out.returncode == 0


def _figures(rows_per_s: float, cpu_us_row: float) -> dict[str, Any]:
    return {"n": 1, "rows_per_s": rows_per_s, "rows_per_s_e2e": rows_per_s / 2, "cpu_us_row": cpu_us_row,
            "loop_cpu_us_row": cpu_us_row - 50, "maxrss_mb": 100.0, "mock_cpu_pct": 5.0, "mock_cpu_s": 0.1,
            "wall_s": 3.0, "other_load_pct": 1.0}


def _matrix_2048(openai: dict[str, Any]) -> dict[str, Any]:
    done = {"outcome": None, "runs": []}
    cell = {"latency_ms": 50, "concurrency": 2048, "rows": 5000, "clients": {
        "connector": {**done, "median": _figures(1800.0, 500.0)},
        "aiohttp": {**done, "median": _figures(2000.0, 300.0)},
        "curator": {"median": None, "runs": [], "outcome": "failed: 4,000 of 5,000 rows answered; TimeoutError"},
        "openai": openai,
        "litellm": {**done, "median": _figures(100.0, 9000.0)},
    }}
    return {"data": {"cells": [cell], "baseline_ref": None, "run_bound_s": {"rows": 180.0}}}


def test_the_matrix_says_which_peer_hung_or_failed_instead_of_a_number() -> None:
    matrix = _matrix_2048({"median": None, "runs": [], "outcome": "hung after 180 s"})

    text = matrix_section(matrix)

    table = [line for line in text.splitlines() if line.startswith("| 50 ms | 2048 |")]
    assert "| openai AsyncOpenAI | hung after 180 s | – |" in next(x for x in table if "AsyncOpenAI" in x)
    assert "failed: 4,000 of 5,000 rows answered; TimeoutError" in next(x for x in table if "Curator" in x)
    summary = next(line for line in text.splitlines() if line.startswith("| 2,048 |"))
    assert "hung after 180 s" in summary and "failed: 4,000 of 5,000" in summary and "0.05×" in summary


def test_a_peer_that_hung_in_some_runs_keeps_the_median_of_the_others_and_says_so() -> None:
    matrix = _matrix_2048({"median": _figures(200.0, 3000.0), "runs": [], "outcome": "hung after 180 s"})

    row = next(x for x in matrix_section(matrix).splitlines() if "AsyncOpenAI" in x and x.startswith("| 50 ms"))

    assert "| 200 (then hung after 180 s: median of the 1 run(s) before) | 0.10 |" in row


def test_issue_25s_targets_at_2048_in_flight_are_judged() -> None:
    rows = targets({"matrix": _matrix_2048({"median": None, "runs": [], "outcome": "hung after 180 s"})})

    judged = {target: (measured, verdict) for target, measured, verdict in rows}
    assert judged["rows/s ≥ 0.8 × raw aiohttp, 2048 in flight, 50 ms"] == ("0.90× (1,800 vs 2,000 rows/s)", "**met**")
    cpu = judged["CPU µs/row ≤ 1.3 × raw aiohttp's (whole process), 2048 in flight, 50 ms"]
    assert cpu[0].startswith("1.67× (500 vs 300 µs") and cpu[1] == "**missed**"


def test_the_harness_loads_neither_pyarrow_nor_the_connector_with_its_stages(tmp_path: Path) -> None:
    # Linux reports a child's peak RSS as at least its parent's at fork: bench/packing.py once imported
    # pyarrow.parquet at the top, the harness grew to ~75 MB, and every raw aiohttp run at 128 and 512 in
    # flight was refused as "peak RSS ... no more than the harness's own" (a matrix with no raw loop).
    import subprocess

    from bench import data

    table = data.make_table(tmp_path / "t.parquet", 3)
    probe = (
        "import sys\n"
        "from bench import __main__, cold, llm, matrix, packing, profile, ratelimits, remote, scan, stages\n"
        "from bench import data\n"
        f"rows = data.read_rows(__import__('pathlib').Path({str(table)!r}))\n"
        "print(len(rows), sorted(m for m in sys.modules if m.split('.')[0] in ('pyarrow', 'connector')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.stdout.split(" ", 1) == ["3", "[]\n"]


def test_a_peak_rss_no_higher_than_the_harness_is_left_out_and_the_run_still_counts() -> None:
    # Raising here once dropped the raw aiohttp loop (peak ~52 MB, the harness ~50 MB) from the 128 and
    # 512 cells of an idle matrix: its rows/s and CPU are what the targets are judged against.
    from bench.procs import Outcome
    from bench.stages import _metrics

    out = Outcome(returncode=0, wall_s=2.0, cpu_s=1.0, maxrss_kb=52_000, counts={}, head_tail=b"", stderr="",
                  parent_rss_kb=51_000)
    metrics = _metrics("aiohttp", 1000, out, 1.5, 0.2, 0.1)
    assert metrics["maxrss_mb"] is None and metrics["rows_per_s"] == 1000 / 1.5
    assert metrics["cpu_us_row"] == 1000.0
    out.maxrss_kb = 90_000
    assert _metrics("aiohttp", 1000, out, 1.5, 0.2, 0.1)["maxrss_mb"] == 90_000 / 1024
