"""Rate limits: how close each client keeps to an endpoint's limits, and how many 429s it draws.

    .venv/bin/python -m bench.ratelimits [ROWS [RPM]]     # alone; prints Markdown, keeps the result
    .venv/bin/python -m bench ratelimits                  # as a stage of make bench

The endpoint is bench/ratemock.py (in ``.venv-curator``, bench/venv.py): OpenAI-style request and token buckets of a
minute's limit each, full at the start of every client's run (``POST /reset``), 50 ms per answer,
``x-ratelimit-*`` headers on every answer and a 429 (OpenAI's body, no Retry-After) beyond the limit.
The token limit (100,000/min) is set so that requests are the binding limit (a row is ~95 tokens as
the mock counts them: prompt characters / 4 plus max_tokens 16).

Clients, each on the same ROWS rows (default 1,200 at RPM 600: two minutes of the limit):

- the connector with ``requests_per_minute`` and ``tokens_per_minute`` set to the limits;
- the connector with no budgets: it learns them from the first replies' headers;
- Curator (``bespokelabs-curator`` in .venv-curator): it reads the limits from the headers of a request
  of its own before it starts; ``TIKTOKEN_CACHE_DIR`` points at the cl100k_base file litellm bundles;
- OpenAI's cookbook ``api_request_parallel_processor.py`` with the limits as its arguments, when
  ``BENCH_COOKBOOK`` names a copy of the script (not shipped here: see docs/BENCHMARKS.md).

Figures: the wall time of the client's process against the ideal ``rows / limit`` (the issue's
yardstick) and against the best any client can do here (the bucket's full minute at once, then the
refill: ``(rows - limit) / limit``); the 429s the mock sent, as a share of all requests it saw;
and the rate the mock admitted once a minute's limit of requests had been admitted (the start's
allowance spent, if the client used it: what it sustains), as a share of the limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import data
from bench.venv import curator_env

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
TPM = 100_000
ROWS, RPM = 1200, 600  # two minutes of the limit
CONCURRENCY = 16


class Mock:
    """bench/ratemock.py in .venv-bench, stopped by PID."""

    def __init__(self, bench_python: Path, rpm: int) -> None:
        self.proc = subprocess.Popen([str(bench_python), "-m", "bench.ratemock", "--rpm", str(rpm), "--tpm", str(TPM)],
                                     stdout=subprocess.PIPE, cwd=ROOT)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline().split()[1])
        self.base = f"http://127.0.0.1:{self.port}/v1"

    def call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(request, timeout=30) as resp:
            return dict(json.loads(resp.read()))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _connector(mock: Mock, work: Path, table: Path, learnt: bool, rpm: int) -> tuple[list[str], dict[str, str]]:
    budgets = {} if learnt else {"requests_per_minute": rpm, "tokens_per_minute": TPM}
    config = data.connector_config(table, mock.base, CONCURRENCY, max_retries=10, **budgets)
    config_path = data.write_json(work / f"rate_config_{'learnt' if learnt else 'set'}.json", config)
    catalog_path = data.write_json(work / "rate_catalog.json", data.catalog())
    env = {**os.environ, "XDG_CACHE_HOME": tempfile.mkdtemp(prefix="xdg-", dir=work)}
    return [str(PYTHON), "-m", "connector", "read", "--config", str(config_path), "--catalog", str(catalog_path)], env


def _peer(script: str, mock: Mock, work: Path, bodies: Path, rpm: int, bench_python: Path,
          cookbook: str | None = None) -> tuple[list[str], dict[str, str]]:
    env = curator_env(bench_python, work)
    argv = [str(bench_python), "-m", f"bench.{script}", mock.base, str(bodies), str(rpm), str(TPM),
            str(work / f"{script}_out.jsonl")]
    return [*argv, cookbook] if cookbook else argv, env


def _run(argv: list[str], env: dict[str, str], mock: Mock, rows: int, rpm: int, what: str,
         log: Any) -> dict[str, Any]:
    mock.call("POST", "/reset?start=full")
    log(f"  {what}: {rows:,} rows at {rpm}/min")
    started = time.monotonic()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, timeout=3600)
    wall = time.monotonic() - started
    stats = mock.call("GET", "/stats")
    out = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.decode(errors='replace')[-3000:]}")
    learnt = [line for line in out.splitlines() if "rate limits learnt" in line]
    requests = stats["answered"] + stats["refused"]
    after = sorted(stats["times"])[rpm:]  # once a minute's allowance was admitted: what the client sustains
    steady = (len(after) - 1) / (after[-1] - after[0]) * 60 if len(after) > 1 and after[-1] - after[0] >= 20 else None
    ideal = rows / rpm * 60
    return {"client": what, "rows": rows, "wall_s": wall, "ideal_s": ideal, "x_ideal": wall / ideal,
            "best_s": max(rows - rpm, 0) / rpm * 60, "answered": stats["answered"], "refused": stats["refused"],
            "refused_pct": 100 * stats["refused"] / max(requests, 1), "steady_per_min": steady,
            "steady_pct": 100 * steady / rpm if steady else None,
            "learnt": learnt[0][:400] if learnt else ""}


def measure(bench_python: Path, rows: int, rpm: int, work: Path, log: Any = print) -> dict[str, Any]:
    """Every client against a fresh mock bucket; the figures of each run."""
    table = data.make_table(work / f"rate_rows_{rows}.parquet", rows)
    bodies = work / "rate_bodies.jsonl"
    mock = Mock(bench_python, rpm)
    results = []
    load_before = os.getloadavg()
    try:
        data.make_bodies(data.connector_config(table, mock.base, CONCURRENCY), bodies)
        runs = [("connector, budgets configured", _connector(mock, work, table, False, rpm)),
                ("connector, budgets learnt from headers", _connector(mock, work, table, True, rpm)),
                ("Curator", _peer("curator_client", mock, work, bodies, rpm, bench_python))]
        cookbook = os.environ.get("BENCH_COOKBOOK")
        if cookbook:
            runs.append(("cookbook api_request_parallel_processor.py",
                         _peer("cookbook_client", mock, work, bodies, rpm, bench_python, cookbook)))
        for what, (argv, env) in runs:
            results.append(_run(argv, env, mock, rows, rpm, what, log))
    finally:
        mock.stop()
    return {"rows": rows, "rpm": rpm, "tpm": TPM, "concurrency": CONCURRENCY, "results": results,
            "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
            "cookbook": os.environ.get("BENCH_COOKBOOK", "")}


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "—" if value is None else format(value, spec)


def render(result: dict[str, Any]) -> str:
    rpm, rows = result["rpm"], result["rows"]
    lines = [f"{rows:,} rows against a limit of {rpm:,} requests/min and {result['tpm']:,} tokens/min "
             f"(buckets full at each start; 50 ms per answer; the connector at {result['concurrency']} in flight). "
             f"Ideal: rows / limit = {rows / rpm * 60:.0f} s; best possible here (the full minute at once, then the "
             f"refill): {max(rows - rpm, 0) / rpm * 60:.0f} s. Load average {result['load_before']} before, "
             f"{result['load_after']} after (2 cores).", "",
             "| client | wall s | × ideal | 429s | 429s % of requests "
             "| admitted/min after the first minute's allowance | % of limit |",
             "|---|---|---|---|---|---|---|"]
    for r in result["results"]:
        lines.append(f"| {r['client']} | {r['wall_s']:.1f} | {r['x_ideal']:.2f} | {r['refused']:,} | "
                     f"{r['refused_pct']:.1f} | {_fmt(r['steady_per_min'])} | {_fmt(r['steady_pct'], '.1f')} |")
    learnt = [r["learnt"] for r in result["results"] if r["learnt"]]
    if learnt:
        lines += ["", "What the connector logged: " + "; ".join(f"`{json.loads(x)['log']['message']}`"
                                                             if x.startswith("{") else f"`{x}`" for x in learnt)]
    return "\n".join(lines)


def main() -> int:
    from bench.venv import ensure_curator_venv

    rows = int(sys.argv[1]) if len(sys.argv) > 1 else ROWS
    rpm = int(sys.argv[2]) if len(sys.argv) > 2 else RPM
    with tempfile.TemporaryDirectory(prefix="bench-rate-") as tmp:
        result = measure(ensure_curator_venv(), rows, rpm, Path(tmp))
    print(render(result))
    from bench import report

    report.save("ratelimits", {"date": report.now(), "command": " ".join([".venv/bin/python -m bench.ratelimits",
                                                                          *sys.argv[1:]]),
                               "machine": report.machine(), "data": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
