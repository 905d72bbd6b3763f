"""``make bench``: measure the connector against a local mock and its peers; write docs/BENCHMARKS.md.

    .venv/bin/python -m bench [STAGE ...]

Stages: capacity, matrix, sweep, spec, cold, million, llm, profile (default: all that the
environment switches on; see ``STAGES_DOC`` in bench/report_text.py, also printed in the
report). Progress goes to stderr, the Markdown report to stdout. Exit code 1 when a run
produced the wrong number of records or failed rows (a peer's in the matrix is shown in its
cell instead), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import report
from bench.procs import (
    SERVER_CORE,
    Background,
    BenchFailure,
    LoadMeter,
    busy_processes,
    pinned,
    pinning_available,
)
from bench.stages import Launch
from bench.venv import ensure_bench_venv, ensure_curator_venv, versions

ROOT = Path(__file__).resolve().parent.parent
ALL_STAGES = ("capacity", "matrix", "sweep", "spec", "cold", "million", "llm", "profile", "scan", "ratelimits",
              "remote", "packing", "packing_live")


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value in (None, "") else value.strip().lower() not in ("0", "false", "no", "off")


def _command(argv: list[str]) -> str:
    env = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("BENCH_"))
    via_make = os.environ.get("MAKELEVEL") and not argv
    cmd = "make bench" if via_make else " ".join([".venv/bin/python -m bench", *argv])
    return f"{env} {cmd}".strip()


def _export_connector(ref: str, target: Path) -> Launch:
    """The connector as committed at ``ref`` (read-only ``git archive``), run by .venv's interpreter.

    For measuring a known commit while the working tree is being edited by others; the
    same .venv supplies the dependencies; the exported package comes first on sys.path (it is the
    cwd of ``python -m``), and the bench's own modules after it.
    """
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", ref, "connector", "spec"], capture_output=True,
                             check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    python = str(ROOT / ".venv" / "bin" / "python")
    env = {**os.environ, "PYTHONPATH": f"{target}{os.pathsep}{ROOT}"}
    where = subprocess.run([python, "-c", "import connector; print(connector.__file__)"], env=env, cwd=target,
                           capture_output=True, text=True, check=True).stdout.strip()
    if not where.startswith(str(target)):
        raise BenchFailure(f"BENCH_CONNECTOR_REF: connector still imported from {where}, not {target}")
    log(f"bench: connector from {ref} ({where})")
    return Launch([python, "-m", "connector"], env, target)


def _short(ref: str) -> str:
    return subprocess.run(["git", "rev-parse", "--short", ref], capture_output=True, text=True,
                          check=True).stdout.strip()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stages", nargs="*", help=f"stages to run, of {', '.join(ALL_STAGES)} (default: see doc)")
    args = parser.parse_args(args_list)
    unknown = [s for s in args.stages if s not in ALL_STAGES]
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(ALL_STAGES)}")
    os.chdir(ROOT)

    quick = _flag("BENCH_QUICK", False)
    runs = int(os.environ.get("BENCH_RUNS") or (1 if quick else 3))
    rows = int(os.environ.get("BENCH_ROWS") or (1000 if quick else 5000))
    rows_slow = int(os.environ.get("BENCH_ROWS_500") or (500 if quick else 2000))
    switched = {"million": _flag("BENCH_MILLION", not quick), "llm": _flag("BENCH_LLM", not quick),
                "packing_live": _flag("BENCH_LLM", not quick),
                "profile": _flag("BENCH_PROFILE", not quick)}
    stages = list(args.stages) or [s for s in ALL_STAGES if switched.get(s, True)]
    command = _command(args_list)

    if pinning_available():
        os.sched_setaffinity(0, {SERVER_CORE})  # the harness only reads pipes: it stays off the client core
        pinning = ("clients (connector, peers) on core 0 with `taskset -c 0`; the mock endpoint and the harness "
                   "on core 1 (`taskset -c 1`)")
    else:
        pinning = "none (fewer than 2 cores or no taskset): clients and mock share the CPU"
    log(f"bench: stages {', '.join(stages)}; {runs} run(s) per cell, {rows:,} rows ({rows_slow:,} at 500 ms); "
        f"{pinning}")

    bench_python = ensure_bench_venv(log)
    if {"matrix", "ratelimits"} & set(stages):  # made before the header, which names Curator's version
        try:
            ensure_curator_venv(log)
        except (OSError, subprocess.CalledProcessError) as exc:  # the stages say what this costs them
            log(f"bench: .venv-curator could not be made: {exc}")
    ref = os.environ.get("BENCH_CONNECTOR_REF", "").strip()
    baseline = os.environ.get("BENCH_BASELINE_REF", "").strip()
    header: dict[str, Any] = {
        "date": report.now(), "command": command, "machine": report.machine(), "versions": versions(),
        "pinning": pinning, "runs": runs, "rows": rows, "rows_slow": rows_slow, "quick": quick,
    }
    header["machine"]["busy_at_start"] = busy_processes()
    if ref:
        header["machine"]["commit"] = f"{_short(ref)} (BENCH_CONNECTOR_REF={ref}, exported with git archive)"
    log(f"bench: machine {header['machine']}")

    from bench import cold, llm, matrix, packing, profile, ratelimits, remote, scan
    from bench import stages as st

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        mock = Background(pinned(SERVER_CORE, [str(bench_python), "-m", "bench.mock"]), b"PORT", work / "mock.log")
        log(f"bench: mock endpoint PID {mock.pid}: {mock.ready_line}")
        ctx = st.Context(work=work, runs=runs, rows=rows, rows_slow=rows_slow, quick=quick,
                         bench_python=bench_python, mock=mock, port=int(mock.ready_line.split()[1]), log=log)
        done: dict[str, Any] = {}
        runners: dict[str, Callable[[], dict[str, Any]]] = {
            "capacity": lambda: st.stage_capacity(ctx),
            "matrix": lambda: matrix.stage_matrix(ctx),
            "sweep": lambda: matrix.stage_sweep(ctx, done.get("matrix")),
            "spec": lambda: st.stage_spec(ctx),
            "cold": lambda: {**cold.measure(ctx.base_url(0), 5 if quick else 21, work,
                                            ctx.baseline.cwd if ctx.baseline else None),
                             "baseline": ctx.baseline_ref},
            "million": lambda: st.stage_million(
                ctx, int(os.environ.get("BENCH_MILLION_ROWS") or 1_000_000),
                int(os.environ.get("BENCH_MILLION_CONCURRENCY") or 512)),
            "llm": lambda: llm.stage_llm(ctx),
            "profile": lambda: profile.stage_profile(ctx),
            "scan": lambda: scan.stage_scan(ctx, int(os.environ.get("BENCH_SCAN_MB") or (64 if quick else 1024))),
            "ratelimits": lambda: ratelimits.measure(
                ensure_curator_venv(log), int(os.environ.get("BENCH_RATE_ROWS") or (120 if quick else ratelimits.ROWS)),
                int(os.environ.get("BENCH_RATE_RPM") or ratelimits.RPM), work, log),
            "remote": lambda: remote.stage_remote(
                ctx, int(os.environ.get("BENCH_REMOTE_MB") or (64 if quick else 1024)),
                int(os.environ.get("BENCH_REMOTE_PG_ROWS") or (100_000 if quick else 1_000_000)),
                int(os.environ.get("BENCH_REMOTE_ENRICH_ROWS") or (2_000 if quick else 20_000))),
            "packing": lambda: packing.stage(False, int(os.environ.get("BENCH_PACK_ROWS") or 1000), log, work),
            "packing_live": lambda: packing.stage(True, int(os.environ.get("BENCH_PACK_LIVE_ROWS") or 200), log, work),
        }
        try:
            if ref:
                ctx.connector = _export_connector(ref, work / "connector-src")
            if baseline:
                ctx.baseline = _export_connector(baseline, work / "baseline-src")
                short = _short(baseline)
                ctx.baseline_ref = baseline if short.startswith(baseline) else f"{baseline} ({short})"
            for stage in stages:
                t0 = time.monotonic()
                log(f"bench: stage {stage}")
                meter, mock_cpu0 = LoadMeter(), mock.cpu()
                result = runners[stage]()
                result["other_load_pct"] = meter.other_pct(mock.cpu() - mock_cpu0 + result.get("server_cpu_s", 0))
                log(f"bench: other processes used {result['other_load_pct']:.0f} % of the machine meanwhile")
                done[stage] = result
                report.save(stage, {"date": header["date"], "command": command, "quick": quick, "runs": runs,
                                    "rows": rows, "machine": header["machine"], "data": result})
                log(f"bench: stage {stage} done in {time.monotonic() - t0:.0f} s")
        except (BenchFailure, subprocess.CalledProcessError) as exc:
            log(f"\nbench: FAILED: {exc}")
            return 1
        finally:
            mock.stop()
            log(f"bench: mock endpoint PID {mock.pid} stopped")

    text = report.render(report.load_all(), header)
    report.DOC.parent.mkdir(parents=True, exist_ok=True)
    report.DOC.write_text(text)
    if (report.RESULTS / "sweep.json").exists():
        plotted = subprocess.run([str(bench_python), "-m", "bench.plot", str(report.RESULTS / "sweep.json"),
                                  str(report.PLOT)], capture_output=True, text=True)
        if plotted.returncode != 0:
            log(f"bench: plot failed: {plotted.stderr[-2000:]}")
            return 1
    sys.stdout.write(text)
    plot = f" and {report.PLOT.relative_to(ROOT)}" if (report.RESULTS / "sweep.json").exists() else ""
    log(f"bench: wrote {report.DOC.relative_to(ROOT)}{plot} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
