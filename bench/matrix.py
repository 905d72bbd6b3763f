"""The matrix stage (every client in each latency x in-flight cell) and the sweep that reuses its cells.

Each client run is bounded (``run_bound_s``): a peer that hangs or fails in a cell is reported there
("hung after N s", "failed: <one line>") instead of stopping the bench; the connector's failure still
stops it (a benchmark of failures is no benchmark). Curator runs from .venv-curator (bench/curator_peer.py).
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from bench.procs import BenchFailure, LoadMeter, RunHung
from bench.stages import Context, medians, run_connector, run_peer, say_run
from bench.venv import ensure_curator_venv

# The matrix's peers: Curator too, from its own venv (bench/curator_peer.py in .venv-curator).
MATRIX_PEERS = ("aiohttp", "streams", "curator", "openai", "litellm")
MATRIX_CELLS_50 = ((50, 128), (50, 512), (50, 2048))
MATRIX_CELLS_500 = ((500, 128), (500, 512))


def run_bound_s(rows: int) -> float:
    """How long one matrix run may take before it counts as hung: ``BENCH_RUN_TIMEOUT_S``, else 30 s plus
    30 ms a row (the slowest peer seen here does about 100 rows/s; a hang costs this once per cell)."""
    return float(os.environ.get("BENCH_RUN_TIMEOUT_S") or 30 + 0.03 * rows)


def run_client(ctx: Context, client: str, rows: int, latency_ms: int, concurrency: int) -> dict[str, Any]:
    """One bounded run (``run_bound_s``). A peer's (or the baseline's) hang or failure is its result,
    ``{"client", "outcome": "hung after N s" | "failed: <one line>"}``; the connector's raises."""
    base_url = ctx.base_url(latency_ms)
    ctx.bodies(rows)  # built before the load meter starts
    meter = LoadMeter()
    bound = run_bound_s(rows)
    try:
        if client == "connector":
            result = run_connector(ctx, rows, base_url, concurrency, timeout_s=bound)
        elif client == "baseline":
            result = {**run_connector(ctx, rows, base_url, concurrency, launch=ctx.baseline, timeout_s=bound),
                      "client": "baseline"}
        else:
            result = run_peer(ctx, client, rows, base_url, concurrency, ctx.bodies(rows), timeout_s=bound)
    except BenchFailure as exc:
        if client == "connector":
            raise
        ctx.log(f"  {client}: {exc}"[:3000])
        return {"client": client, "outcome": exc.brief if isinstance(exc, RunHung) else f"failed: {exc.brief}"}
    result["other_load_pct"] = meter.other_pct(result["mock_cpu_s"])
    return result


def _rotate(items: tuple[str, ...], k: int) -> list[str]:
    k %= len(items)
    return list(items[k:] + items[:k])


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A client's runs in a cell: the median of those that finished (None if none did), and how the first
    that did not ended (None if all finished)."""
    done = [r for r in runs if "outcome" not in r]
    return {"median": medians(done) if done else None, "runs": runs,
            "outcome": next((r["outcome"] for r in runs if "outcome" in r), None)}


def measure_cells(ctx: Context, cells: list[tuple[int, int]], clients: tuple[str, ...], rows: int,
                  runs: int) -> list[dict[str, Any]]:
    """Each (latency, concurrency) cell for each client, ``runs`` times, in alternating order. A client that
    hung or failed in a cell is not run there again: another try would cost the bound again to say the same."""
    collected: dict[tuple[int, int], dict[str, list[dict[str, Any]]]] = {
        cell: {c: [] for c in clients} for cell in cells
    }
    for i in range(runs):
        for j, (latency, conc) in enumerate(cells):
            for client in _rotate(clients, i + j):
                done = collected[(latency, conc)][client]
                if any("outcome" in r for r in done):
                    continue
                r = run_client(ctx, client, rows, latency, conc)
                label = f"run {i + 1}/{runs} {latency} ms, {conc} in flight"
                if "outcome" in r:
                    ctx.log(f"    {label:<34} {client:<9} {r['outcome']}")
                else:
                    say_run(ctx, r, label)
                done.append(r)
    return [
        {
            "latency_ms": latency,
            "concurrency": conc,
            "rows": rows,
            "clients": {c: _summary(rs) for c, rs in collected[(latency, conc)].items()},
        }
        for latency, conc in cells
    ]


def stage_matrix(ctx: Context) -> dict[str, Any]:
    """Every client in each cell; with BENCH_BASELINE_REF the earlier commit's connector too, in the same
    rotation, so "no slower than before" is judged within one run rather than across days."""
    clients = ("connector", "baseline", *MATRIX_PEERS) if ctx.baseline is not None else ("connector", *MATRIX_PEERS)
    try:
        ctx.curator_python = ensure_curator_venv(ctx.log)
    except (OSError, subprocess.CalledProcessError) as exc:
        ctx.curator_missing = f".venv-curator could not be made: {exc}"[:200]
        ctx.log(f"  {ctx.curator_missing}")
    fast = measure_cells(ctx, list(MATRIX_CELLS_50), clients, ctx.rows, ctx.runs)
    slow = measure_cells(ctx, list(MATRIX_CELLS_500), clients, ctx.rows_slow, ctx.runs)
    return {"cells": fast + slow, "baseline_ref": ctx.baseline_ref or None, "run_bound_s": {
        "rows": run_bound_s(ctx.rows), "rows_slow": run_bound_s(ctx.rows_slow)}}


def stage_sweep(ctx: Context, matrix: dict[str, Any] | None) -> dict[str, Any]:
    """Throughput against concurrency at 50 ms, connector and the raw loop (128/512 from the matrix)."""
    have = {c["concurrency"]: c for c in (matrix or {}).get("cells", []) if c["latency_ms"] == 50}
    todo = [(50, c) for c in (16, 64, 128, 256, 512) if c not in have]
    measured = {c["concurrency"]: c for c in measure_cells(ctx, todo, ("connector", "aiohttp"), ctx.rows, ctx.runs)}
    points = []
    for conc in (16, 64, 128, 256, 512):
        cell = measured.get(conc) or have[conc]
        points.append({
            "concurrency": conc,
            **{client: cell["clients"][client]["median"] for client in ("connector", "aiohttp")},
        })
    return {"latency_ms": 50, "rows": ctx.rows, "points": points}
