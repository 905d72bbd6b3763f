"""The measured stages. Each returns a JSON-able dict; the report renders them.

Every client run is its own process pinned to the client core; the mock endpoint has the
other core. A run that did not produce exactly the expected records (or any failed row)
raises :class:`~bench.procs.BenchFailure`: a benchmark of failures is no benchmark.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import data
from bench.procs import CLIENT_CORE, Background, BenchFailure, Outcome, RunHung, pinned, run_measured
from bench.venv import curator_env

ROOT = Path(__file__).resolve().parent.parent
CONNECTOR = ROOT / ".venv" / "bin" / "source-openai-compatible"
RECORD = b'{"type":"RECORD"'
ROW_ERROR = b'"_status":"error"'
STARTED = b'"status":"STARTED"'
PEERS = ("aiohttp", "openai", "litellm")
CLIENTS = ("connector", *PEERS)
METRICS = ("rows_per_s", "rows_per_s_e2e", "cpu_us_row", "loop_cpu_us_row", "maxrss_mb", "mock_cpu_pct", "mock_cpu_s",
           "wall_s", "other_load_pct")


@dataclass(frozen=True)
class Launch:
    """How to start a connector: the command, its environment (None: inherit) and working directory
    (``python -m`` puts the cwd first on sys.path: an exported commit is run from its folder)."""

    cmd: list[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None


@dataclass
class Context:
    """Shared state of one bench invocation."""

    work: Path
    runs: int
    rows: int
    rows_slow: int  # rows for the 500 ms cells (a run there is latency-bound: fewer rows say as much)
    quick: bool
    bench_python: Path
    mock: Background
    port: int
    log: Callable[[str], None]
    # How to start the connector: the .venv's CLI on the working tree, or (BENCH_CONNECTOR_REF)
    # the same .venv's ``python -m connector`` on a commit exported with ``git archive``.
    connector: Launch = field(default_factory=lambda: Launch([str(CONNECTOR)]))
    # BENCH_BASELINE_REF: an earlier commit's connector, measured as client "baseline" in the matrix.
    baseline: Launch | None = None
    baseline_ref: str = ""
    # .venv-curator's python for the matrix's Curator runs; when it could not be made, why (the table says it).
    curator_python: Path | None = None
    curator_missing: str = "not set up"
    _tables: dict[int, Path] = field(default_factory=dict)
    _bodies: dict[tuple[int, str], Path] = field(default_factory=dict)

    def base_url(self, latency_ms: int) -> str:
        return f"http://127.0.0.1:{self.port}/lat{latency_ms}/v1"

    def answered(self) -> int:
        """Requests the mock has answered so far."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=10) as resp:
            return int(json.loads(resp.read())["answered"])

    def table(self, rows: int) -> Path:
        if rows not in self._tables:
            self.log(f"  generating a {rows:,}-row Parquet table")
            self._tables[rows] = data.make_table(self.work / f"rows_{rows}.parquet", rows)
        return self._tables[rows]

    def bodies(self, rows: int, base_url: str = "http://127.0.0.1:1/v1", **extra: Any) -> Path:
        key = (rows, json.dumps(extra, sort_keys=True))
        if key not in self._bodies:
            path = self.work / f"bodies_{rows}_{len(self._bodies)}.jsonl"
            config = data.connector_config(self.table(rows), base_url, 1, **extra)
            written = data.make_bodies(config, path, self.connector.env, self.connector.cwd)
            if written != rows:
                raise BenchFailure(f"built {written} request bodies from a {rows}-row table")
            self._bodies[key] = path
        return self._bodies[key]


# One measured run ------------------------------------------------------------------------


def _fail(what: str, out: Outcome, detail: str) -> BenchFailure:
    tail = out.head_tail[-1500:].decode("utf-8", "replace")
    last = next((line.strip() for line in reversed(out.stderr.splitlines()) if line.strip()), "")
    brief = f"{detail} (exit {out.returncode})" + (f": {last}" if last and out.returncode else "")
    return BenchFailure(
        f"{what}: {detail} (exit {out.returncode})\nstdout tail:\n{tail}\nstderr:\n{out.stderr[-1500:]}",
        brief[:200],
    )


def _metrics(client: str, rows: int, out: Outcome, steady_s: float, startup_cpu_s: float | None,
             mock_cpu_s: float, check_rss: bool = True) -> dict[str, Any]:
    # Linux reports a child's peak RSS as at least the harness's RSS when it forked: a reading no higher
    # than that is the harness's, not the client's, and is left out ("–"); its CPU and rows still count.
    rss_known = not check_rss or out.maxrss_kb > out.parent_rss_kb * 1.05
    loop_cpu = out.cpu_s - startup_cpu_s if startup_cpu_s is not None else None
    return {
        "client": client,
        "rows": rows,
        "wall_s": out.wall_s,
        "steady_s": steady_s,
        "rows_per_s": rows / steady_s,
        "rows_per_s_e2e": rows / out.wall_s,
        "cpu_s": out.cpu_s,
        "cpu_us_row": out.cpu_s * 1e6 / rows,
        "loop_cpu_us_row": None if loop_cpu is None else loop_cpu * 1e6 / rows,
        "startup_cpu_s": startup_cpu_s,
        "maxrss_mb": out.maxrss_kb / 1024 if rss_known else None,
        "harness_rss_mb": out.parent_rss_kb / 1024,
        # over the steady window: the mock idles while the client starts up
        "mock_cpu_pct": 100 * mock_cpu_s / steady_s,
        "mock_cpu_s": mock_cpu_s,
    }


def run_connector(ctx: Context, rows: int, base_url: str, concurrency: int, *, sample_rss_s: float | None = None,
                  outer: Iterable[str] = (), program: Iterable[str] = (), launch: Launch | None = None,
                  timeout_s: float = 7200, **extra: Any) -> dict[str, Any]:
    """``read`` end to end as the real CLI process, stdout consumed through a pipe.

    ``program`` replaces the CLI executable (e.g. ``python -m cProfile ... -m connector``);
    ``outer`` wraps the pinned command (e.g. a py-spy pinned to the other core); ``launch``
    starts another connector (the baseline commit) instead of the one measured.
    """
    outer = list(outer)
    launch = launch or ctx.connector
    config = data.connector_config(ctx.table(rows), base_url, concurrency, **extra)
    config_path = data.write_json(ctx.work / "config.json", config)
    catalog_path = data.write_json(ctx.work / "catalog.json", data.catalog())
    command = list(program) or launch.cmd
    argv = [*outer, *pinned(CLIENT_CORE, [*command, "read", "--config", str(config_path),
                                          "--catalog", str(catalog_path)])]
    # The connector's answer cache (on by default) lives under XDG_CACHE_HOME: an empty one for
    # every run, so every row is a miss that goes to the endpoint (and nothing lands in ~/.cache).
    cache_home = tempfile.mkdtemp(prefix="xdg-cache-", dir=ctx.work)
    env = {**(launch.env or os.environ), "XDG_CACHE_HOME": cache_home}
    on_mock = base_url.startswith(f"http://127.0.0.1:{ctx.port}/")
    sent0 = ctx.answered() if on_mock else 0
    mock0 = ctx.mock.cpu()
    try:
        out = run_measured(argv, count=(RECORD, ROW_ERROR), marker=STARTED, sample_rss_every_s=sample_rss_s,
                           env=env, cwd=launch.cwd, timeout_s=timeout_s)
    finally:
        shutil.rmtree(cache_home, ignore_errors=True)
    mock_cpu = ctx.mock.cpu() - mock0
    what = f"connector read ({rows:,} rows, {concurrency} in flight, {base_url})"
    if out.timed_out:
        raise RunHung(what, timeout_s)
    if out.returncode != 0:
        raise _fail(what, out, "non-zero exit")
    records, errors = out.counts[RECORD.decode()], out.counts[ROW_ERROR.decode()]
    if records != rows:
        raise _fail(what, out, f"{records:,} records instead of {rows:,}")
    if errors:
        raise _fail(what, out, f"{errors:,} rows with _status error")
    if on_mock and (sent := ctx.answered() - sent0) < rows:
        raise _fail(what, out, f"{rows:,} records but only {sent:,} requests reached the endpoint "
                               "(answers from a cache or a shortcut: not a measurement of the HTTP path)")
    steady = out.wall_s - out.marker_s if out.marker_s is not None else out.wall_s
    # Under a wrapper (py-spy) the measured process is the wrapper: its CPU and RSS are not the connector's.
    result = _metrics("connector", rows, out, steady, out.marker_cpu_s, mock_cpu, check_rss=not outer)
    if out.rss_samples:
        result["rss_samples"] = out.rss_samples
    return result


def _peer_command(ctx: Context, client: str) -> tuple[list[str], dict[str, str] | None]:
    """``bench.peer --client C`` in .venv-bench, or Curator's ``bench.curator_peer`` in .venv-curator (offline)."""
    if client != "curator":
        return [str(ctx.bench_python), "-m", "bench.peer", "--client", client], None
    if ctx.curator_python is None:
        raise BenchFailure(f"curator: {ctx.curator_missing}", ctx.curator_missing)
    return [str(ctx.curator_python), "-m", "bench.curator_peer"], curator_env(ctx.curator_python, ctx.work)


def run_peer(ctx: Context, client: str, rows: int, base_url: str, concurrency: int, bodies: Path,
             api_key: str = data.API_KEY, timeout_s: float = 3600) -> dict[str, Any]:
    """A peer client (``bench.peer`` in .venv-bench, or Curator) sending the same bodies."""
    command, env = _peer_command(ctx, client)
    argv = pinned(CLIENT_CORE, [*command, "--bodies", str(bodies), "--base-url", base_url,
                                "--concurrency", str(concurrency), "--api-key", api_key])
    on_mock = base_url.startswith(f"http://127.0.0.1:{ctx.port}/")
    sent0 = ctx.answered() if on_mock else 0
    mock0 = ctx.mock.cpu()
    try:
        out = run_measured(argv, timeout_s=timeout_s, env=env)
    finally:
        if env is not None:  # Curator's answer cache of this run
            shutil.rmtree(env["CURATOR_CACHE_DIR"], ignore_errors=True)
    mock_cpu = ctx.mock.cpu() - mock0
    what = f"{client} ({rows:,} rows, {concurrency} in flight, {base_url})"
    if out.timed_out:
        raise RunHung(what, timeout_s)
    if on_mock and (sent := ctx.answered() - sent0) < rows:
        raise _fail(what, out, f"only {sent:,} requests of {rows:,} reached the endpoint")
    if out.returncode != 0:
        raise _fail(what, out, "non-zero exit")
    try:
        report = json.loads(out.head_tail.split(b"\n...\n")[-1].strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise _fail(what, out, f"no result line ({exc})") from None
    if report["rows"] != rows or report["ok"] != rows:
        raise BenchFailure(f"{what}: {report['ok']:,} good replies of {report['rows']:,} sent, {rows:,} expected; "
                           f"first failures: {report['failures']}",
                           f"{report['ok']:,} of {rows:,} rows answered; {'; '.join(report['failures'][:1])}"[:200])
    return _metrics(client, rows, out, report["loop_s"], report["setup_cpu_s"], mock_cpu)


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(runs)}
    for key in METRICS:
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    return out


def _mb(value: float | None) -> str:
    return "    –" if value is None else f"{value:5.0f}"


def say_run(ctx: Context, r: dict[str, Any], label: str) -> None:
    load = f"  others {r['other_load_pct']:3.0f}%" if "other_load_pct" in r else ""
    ctx.log(f"    {label:<34} {r['client']:<9} {r['rows_per_s']:8.0f} rows/s  (e2e {r['rows_per_s_e2e']:6.0f})  "
            f"{r['cpu_us_row']:6.0f} µs/row  {_mb(r['maxrss_mb'])} MB  mock {r['mock_cpu_pct']:3.0f}% CPU{load}")


# Stages -----------------------------------------------------------------------------------


def stage_capacity(ctx: Context) -> dict[str, Any]:
    """How much the mock serves: a raw aiohttp loop at 512 in flight against 0 ms latency."""
    rows = max(ctx.rows, 20_000)  # enough requests for the mock's CPU (10 ms ticks) to be read precisely
    runs = [run_peer(ctx, "aiohttp", rows, ctx.base_url(0), 512, ctx.bodies(rows)) for _ in range(ctx.runs)]
    for r in runs:
        say_run(ctx, r, "capacity, 0 ms, 512 in flight")
    m = medians(runs)
    per_request_us = m["mock_cpu_s"] * 1e6 / rows if m["mock_cpu_s"] else None
    return {
        "rows": rows,
        "median": m,
        "mock_us_per_request": per_request_us,
        "mock_capacity_rps": 1e6 / per_request_us if per_request_us else None,
        "mock_loop": ctx.mock.ready_line.split("LOOP")[-1].strip(),
    }


def stage_spec(ctx: Context, runs: int = 10) -> dict[str, Any]:
    """Wall time of ``spec`` (the CLI process, start to exit), and of a bare interpreter for scale."""
    spec_walls, bare_walls = [], []
    for _ in range(runs):
        out = run_measured(pinned(CLIENT_CORE, [*ctx.connector.cmd, "spec"]), count=(b'"type":"SPEC"',),
                           env=ctx.connector.env, cwd=ctx.connector.cwd)
        if out.returncode != 0 or out.counts['"type":"SPEC"'] != 1:
            raise _fail("spec", out, "no SPEC message")
        spec_walls.append(out.wall_s)
        bare = run_measured(pinned(CLIENT_CORE, [str(ROOT / ".venv" / "bin" / "python"), "-c", "pass"]))
        bare_walls.append(bare.wall_s)
    return {
        "runs": runs,
        "spec_ms": statistics.median(spec_walls) * 1000,
        "spec_ms_all": [w * 1000 for w in spec_walls],
        "bare_python_ms": statistics.median(bare_walls) * 1000,
    }


def stage_million(ctx: Context, rows: int, concurrency: int) -> dict[str, Any]:
    """A long read against the zero-latency mock: throughput and whether memory stays flat."""
    ctx.table(rows)
    ctx.log(f"  {rows:,} rows, {concurrency} in flight, 0 ms latency (this takes a while)")
    r = run_connector(ctx, rows, ctx.base_url(0), concurrency, sample_rss_s=2.0)
    say_run(ctx, r, f"{rows:,} rows, 0 ms, {concurrency} in flight")
    samples = r.pop("rss_samples", [])
    marks: list[dict[str, Any]] = []
    for frac in (0.1, 0.25, 0.5, 0.75, 0.9):
        past = [s for s in samples if s[0] >= frac * rows]
        if past and (not marks or marks[-1]["records"] != past[0][0]):
            marks.append({"records": past[0][0], "rss_mb": past[0][1] / 1024})
    return {"rows": rows, "concurrency": concurrency, "result": r, "rss_over_time": marks}


def log_exc(ctx: Context, exc: BaseException) -> None:
    ctx.log(f"  FAILED: {exc}")
    sys.stderr.flush()
