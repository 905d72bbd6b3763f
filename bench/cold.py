"""The cold start: ``spec``, ``check`` and ``discover`` of a 5-row CSV, each a fresh process, beside
``python -c pass``.

    .venv/bin/python -m bench.cold [RUNS [SRC [BASE]]]   # alone: starts bench.mock, prints Markdown
    .venv/bin/python -m bench cold            # as a stage of make bench (against its mock)

Compiled files, as the image has them: ``PYTHONDONTWRITEBYTECODE`` is dropped from the children's
environment and ``connector`` and the venv's site-packages are compiled first. The commands run in
turn, ``RUNS`` rounds; each figure is the median of its runs: wall time, the child's CPU (user + sys,
from ``wait4``; less disturbed than wall by other processes on the machine) and, from one more run
with ``-X importtime``, the sum of its top-level imports and the largest of them. ``SRC``: a folder
holding another ``connector`` (``git archive REF connector | tar -x -C SRC``) to measure instead of the
working tree's, by the same .venv (``python -m`` finds it first in its working directory); ``.`` is
the working tree. ``BASE``: such a folder whose ``check`` and ``discover`` run in the same rounds, as
rows "check (baseline)" and "discover (baseline)" (``BENCH_COLD_BASELINE_NAME`` names it in the table).
"""

from __future__ import annotations

import compileall
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT  # where the commands run: the connector they import
PYTHON = str(ROOT / ".venv" / "bin" / "python")
CSV = "id,text\n1,good\n2,bad\n3,fine\n4,poor\n5,great\n"


def _commands(config: Path, baseline: Path | None = None) -> dict[str, tuple[list[str], Path]]:
    """Each command and the folder it runs in (its connector); with ``baseline``, its check and discover too."""
    commands = {
        "python -c pass": ([PYTHON, "-c", "pass"], SOURCE),
        "spec": ([PYTHON, "-m", "connector", "spec"], SOURCE),
        "check": ([PYTHON, "-m", "connector", "check", "--config", str(config)], SOURCE),
        "discover": ([PYTHON, "-m", "connector", "discover", "--config", str(config)], SOURCE),
    }
    if baseline is not None:
        for name in ("check", "discover"):
            commands[f"{name} (baseline)"] = (commands[name][0], baseline)
    return commands


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _once(argv: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one run (its output discarded; a failure stops the bench)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(), cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    if proc.stderr:
        proc.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime


def _imports(argv: list[str], cwd: Path) -> tuple[float, list[tuple[float, str]]]:
    """``-X importtime``: the sum of the top-level imports (ms) and the five largest modules."""
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True, env=_env(),
                          cwd=cwd, check=True)
    total, modules = 0.0, []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        modules.append((int(cumulative) / 1000, name.strip()))
        if not name.startswith("  "):  # one top-level import: its cumulative holds its children
            total += int(cumulative) / 1000
    return total, sorted(modules, reverse=True)[:5]


def compile_all(*sources: Path) -> None:
    """The .pyc files an installed package (and the image) has."""
    for folder in (*(source / "connector" for source in sources),
                   Path(sysconfig.get_path("purelib", vars={"base": str(ROOT / ".venv")}))):
        compileall.compile_dir(str(folder), quiet=2, workers=1)


def uptime_load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def measure(base_url: str, runs: int, work: Path, baseline: Path | None = None) -> dict[str, Any]:
    """Median wall and CPU ms of each command over ``runs`` rounds, and their import totals; with
    ``baseline`` (a folder holding another ``connector``), its check and discover in the same rounds,
    so that a comparison is not one between two loads of this shared machine."""
    compile_all(SOURCE, *([baseline] if baseline else []))
    (work / "small.csv").write_text(CSV)
    config = work / "cold.json"
    config.write_text(json.dumps({"url": base_url, "api_key": "sk-bench-0123456789", "model": "m",
                                  "prompt": "Rate: {{text}}", "input": {"path": str(work / "small.csv")},
                                  "cache": {"enabled": False}}))
    commands = _commands(config, baseline)
    load_before = uptime_load()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, (argv, cwd) in commands.items():
            samples[name].append(_once(argv, cwd))
    result: dict[str, Any] = {"runs": runs, "load_before": load_before, "load_after": uptime_load(), "commands": {}}
    for name, (argv, cwd) in commands.items():
        total, top = _imports(argv, cwd)
        result["commands"][name] = {
            "wall_ms": statistics.median(w for w, _ in samples[name]) * 1000,
            "cpu_ms": statistics.median(c for _, c in samples[name]) * 1000,
            "imports_ms": total, "largest": top}
    return result


def render(result: dict[str, Any]) -> str:
    """The Markdown table of :func:`measure`'s figures, relative to ``python -c pass``."""
    rows = result["commands"]
    bare = rows["python -c pass"]
    baseline = f"; baseline: the connector at {result['baseline']}, in the same rounds" if result.get("baseline") \
        else ""
    lines = [f"Medians of {result['runs']} runs each (load average {result['load_before']} before, "
             f"{result['load_after']} after, on 2 cores); compiled files{baseline}.", "",
             "| command | wall ms | × bare | CPU ms | × bare | imports (-X importtime) ms | largest imports |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        largest = ", ".join(f"{module} {ms:.0f}" for ms, module in r["largest"][:3])
        lines.append(f"| `{name}` | {r['wall_ms']:.0f} | {r['wall_ms'] / bare['wall_ms']:.2f} | {r['cpu_ms']:.0f} | "
                     f"{r['cpu_ms'] / bare['cpu_ms']:.2f} | {r['imports_ms']:.0f} | {largest} |")
    return "\n".join(lines)


def main() -> int:
    global SOURCE
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    if len(sys.argv) > 2 and sys.argv[2] != ".":
        SOURCE = Path(sys.argv[2]).resolve()
    baseline = Path(sys.argv[3]).resolve() if len(sys.argv) > 3 else None
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        mock = subprocess.Popen([PYTHON, "-m", "bench.mock"], stdout=subprocess.PIPE, cwd=ROOT)
        try:
            assert mock.stdout is not None
            port = int(mock.stdout.readline().split()[1])
            result = measure(f"http://127.0.0.1:{port}/lat0/v1", runs, Path(tmp), baseline)
            if baseline is not None:
                result["baseline"] = os.environ.get("BENCH_COLD_BASELINE_NAME", str(baseline))
            print(render(result))
            if SOURCE == ROOT:  # kept for make bench's report (docs/BENCHMARKS.md), as a stage's result is
                from bench import report

                report.save("cold", {"date": report.now(), "command": " ".join([".venv/bin/python -m bench.cold",
                                                                                 *sys.argv[1:]]),
                                     "runs": runs, "machine": report.machine(), "data": result})
        finally:
            mock.terminate()
            mock.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
