"""Several rows per request: requests, tokens and wall time per 1,000 short rows at rows_per_request 1, 10, 50 and
"auto", against a mock and against llama.cpp.

    .venv/bin/python -m bench packing         # the mock; writes its section of docs/BENCHMARKS.md
    .venv/bin/python -m bench packing_live    # llama.cpp (scripts/local_llm.sh, installed by `make local-llm`)
    .venv/bin/python -m bench.packing [--live] [ROWS [N ...]]   # the same figures printed as Markdown only

The mock is bench/packmock.py (its own process, stopped by PID): 100 ms per answer plus 5 ms per completion
token, tokens counted as characters / 4. The rows are the bench's synthetic product reviews (bench/data.py,
about 200 characters each, ``PROMPT``) with a labelling instruction of about 900 characters as the system prompt: the
part every row's request repeats and a packed request sends once; ``max_tokens`` 16 a row. Each run is a fresh
``read`` process (answer cache off, 16 in flight). Checked on every run: each record's answer is the one the
mock gives for that row's own text (so no row took another's answer), every row ``ok``, and the records'
``_prompt_tokens`` and ``_completion_tokens`` add up to what the mock counted.

Live: llama.cpp's llama-server with SmolLM2-135M (started on a free port with one thread and 4 slots through
the script, stopped by its PID file), 4 in flight, ``BENCH_PACK_LIVE_ROWS`` rows (default 200: the model
answers a few rows a second; the table gives figures per 1,000 rows) and ``context_window`` 2,048 (the
script's 8,192-token context shared by its 4 slots: packs are cut to fit it). The model's answers are its own:
checked only that no row failed (``ok``, or ``truncated`` where the model ran past 16 tokens, counted); the
requests are the server's own count (``launch_slot_`` lines in its log), the tokens the records' sums. A packed
answer the small model breaks sends its rows again alone: those requests are in the count.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import data
from bench.packmock import _word
from bench.procs import CLIENT_CORE, SERVER_CORE, BenchFailure, cpu_seconds, pinned

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
SCRIPT = ROOT / "scripts" / "local_llm.sh"
CONCURRENCY = 16
SIZES: tuple[int | str, ...] = (1, 10, 50, "auto")
LIVE_KEY = "sk-bench-pack-live"
LIVE_SLOTS = 4
LIVE_WINDOW = 8192 // LIVE_SLOTS  # the script's --ctx-size, shared by its slots: what one request may hold
AUTO_SAID = "rows_per_request auto: "
TURNED_OFF = "every row is sent alone from now on"  # the connector's WARN when packing stops mid-run
INSTRUCTIONS = (
    "You label customer product reviews for a retailer's quality team. Read the review and decide whether the "
    "customer is satisfied overall. Answer with exactly one word: positive or negative. Mixed reviews: weigh "
    "the star rating and the last sentence most. Sarcasm counts as negative. A complaint about delivery alone, "
    "with praise for the product, is positive. A review about a different product than the one named is "
    "negative. Ignore spelling mistakes, emojis and shouting. Do not explain, do not add punctuation, do not "
    "repeat the review. If the review is empty or unreadable, answer negative. Reviews in another language are "
    "judged the same way. Refunds asked for are negative; replacements received and liked are positive. Never "
    "answer anything but those two words, in lower case, without quotes."
)


PROMPT = "Review of the {{product}}, {{rating}} stars: {{review_text}}"


def _mock() -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(pinned(SERVER_CORE, [str(PYTHON), "-m", "bench.packmock"]), stdout=subprocess.PIPE,
                            cwd=ROOT)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline().split()[1])


def _call(port: int, method: str, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method),
                                timeout=30) as resp:
        return dict(json.loads(resp.read()))


def _read(base: str, table: Path, n: int | str, work: Path, concurrency: int = CONCURRENCY, **extra: Any,
          ) -> tuple[list[dict[str, Any]], float, dict[str, Any]]:
    """One read at rows_per_request ``n``: its records, wall time, and what the connector said of packing (the
    rows per request auto chose; why packing was turned off mid-run)."""
    config = data.connector_config(table, base, concurrency, system_prompt=INSTRUCTIONS,
                                   prompt=PROMPT, rows_per_request=n, cache={"enabled": False}, **extra)
    config_path = data.write_json(work / f"pack_{n}.json", config)
    catalog_path = data.write_json(work / "pack_catalog.json", data.catalog())
    started = time.monotonic()
    done = subprocess.run(pinned(CLIENT_CORE, [str(PYTHON), "-m", "connector", "read", "--config", str(config_path),
                                               "--catalog", str(catalog_path)]),
                          cwd=ROOT, capture_output=True, timeout=3600,
                          env={**os.environ, "XDG_CACHE_HOME": tempfile.mkdtemp(dir=work)})
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise BenchFailure(f"rows_per_request {n} failed: {done.stderr.decode(errors='replace')[-2000:]}")
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    records = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    said = [m["log"]["message"] for m in messages if m["type"] == "LOG"]
    chosen = [int(line[len(AUTO_SAID):].split(" ")[0]) for line in said if line.startswith(AUTO_SAID)]
    off = [line for line in said if TURNED_OFF in line]
    return records, wall, {"chosen": chosen[0] if chosen else None, "off": off[0] if off else None}


def run_one(port: int, table: Path, n: int | str, work: Path) -> dict[str, Any]:
    """One read against the mock at rows_per_request ``n``: its figures, after checking every record."""
    _call(port, "POST", "/reset")
    records, wall, said = _read(f"http://127.0.0.1:{port}/v1", table, n, work)
    stats = _call(port, "GET", "/stats")
    _check(records, stats, table, n)
    return {"n": n, **said, "rows": len(records), "requests": stats["requests"],
            "packed": stats.get("packed", 0), "prompt_tokens": stats["prompt_tokens"],
            "completion_tokens": stats["completion_tokens"], "wall_s": wall}


def _check(records: list[dict[str, Any]], stats: dict[str, Any], table: Path, n: int | str) -> None:
    rows = data.read_rows(table)
    wanted = [_word(_prompt(row)) for row in rows]
    got = [r["answer"] for r in records]
    if got != wanted or any(r["_status"] != "ok" for r in records):
        wrong = sum(a != b for a, b in zip(got, wanted, strict=False))
        raise BenchFailure(f"rows_per_request {n}: {wrong} rows got another answer than their own, or not ok")
    for field, key in (("_prompt_tokens", "prompt_tokens"), ("_completion_tokens", "completion_tokens")):
        if sum(r[field] for r in records) != stats[key]:
            raise BenchFailure(f"rows_per_request {n}: the rows' {field} do not add up to the mock's {key}")


def _prompt(row: dict[str, Any]) -> str:
    text = PROMPT
    for key, value in row.items():
        text = text.replace("{{" + key + "}}", str(value))
    return text


def run_live(base: str, log: Path, table: Path, n: int | str, work: Path) -> dict[str, Any]:
    """One read against llama.cpp at rows_per_request ``n``."""
    before = log.read_text(errors="replace").count("launch_slot_")
    records, wall, said = _read(base, table, n, work, concurrency=LIVE_SLOTS, api_key=LIVE_KEY, timeout=600,
                                context_window=LIVE_WINDOW)
    if any(r["_status"] not in ("ok", "truncated") for r in records):
        raise BenchFailure(f"rows_per_request {n}: rows failed: {[r['_error'] for r in records if r['_error']][:3]}")
    requests = log.read_text(errors="replace").count("launch_slot_") - before
    return {"n": n, **said, "rows": len(records),
            "truncated": sum(r["_status"] == "truncated" for r in records), "requests": requests,
            "prompt_tokens": sum(r["_prompt_tokens"] for r in records),
            "completion_tokens": sum(r["_completion_tokens"] for r in records), "wall_s": wall}


def measure_mock(rows: int, sizes: tuple[int | str, ...], work: Path) -> dict[str, Any]:
    """Every size against the mock, on one table of ``rows`` rows."""
    table = data.make_table(work / "pack_rows.parquet", rows)
    proc, port = _mock()
    try:
        results = [run_one(port, table, n, work) for n in sizes]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {"rows": rows, "concurrency": CONCURRENCY, "max_tokens": 16, "results": results}


def measure_live(rows: int, sizes: tuple[int | str, ...], work: Path) -> dict[str, Any]:
    """Every size against llama.cpp (started here, stopped by its PID file), on one table of ``rows`` rows."""
    table = data.make_table(work / "pack_live_rows.parquet", rows)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pidfile, log = work / "pack_llama.pid", work / "pack_llama.log"
    env = {**os.environ, "PORT": str(port), "API_KEY": LIVE_KEY, "THREADS": "1", "PARALLEL": str(LIVE_SLOTS),
           "PIDFILE": str(pidfile), "LOG": str(log)}
    subprocess.run(pinned(SERVER_CORE, [str(SCRIPT), "start"]), env=env, check=True, capture_output=True,
                   timeout=600)
    server_cpu = 0.0
    try:
        results = [run_live(f"http://127.0.0.1:{port}/v1", log, table, n, work) for n in sizes]
    finally:
        with contextlib.suppress(OSError, ValueError):  # the server's CPU: not our child, not the load meter's
            server_cpu = cpu_seconds(int(pidfile.read_text()))
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=60)
    return {"rows": rows, "concurrency": LIVE_SLOTS, "max_tokens": 16, "context_window": LIVE_WINDOW,
            "threads": 1, "results": results, "server_cpu_s": server_cpu}


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def stage(live: bool, rows: int, log: Callable[[str], None], work: Path) -> dict[str, Any]:
    """The bench stage ``packing`` (the mock) or ``packing_live``: the figures and the load around them."""
    if live:
        from bench.llm import installed

        ok, why = installed()
        if not ok:
            log(f"  SKIPPED: the local llama.cpp server is not installed: {why}")
            return {"skipped": why}
    before = _uptime()
    log(f"  rows_per_request {', '.join(map(str, SIZES))} on {rows:,} rows ({'llama.cpp' if live else 'the mock'})")
    result = (measure_live if live else measure_mock)(rows, SIZES, work)
    result["uptime"] = [before, _uptime()]
    for r in result["results"]:
        log(f"    rows_per_request {r['n']}: {r['requests']:,} requests, {r['wall_s']:.1f} s")
    return result


def main() -> None:
    from bench.report_packing import packing_table

    live = "--live" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--live"]
    rows = int(args[0]) if args else (200 if live else 1000)
    sizes = tuple(x if x == "auto" else int(x) for x in args[1:]) or SIZES
    work = Path(tempfile.mkdtemp(prefix="bench-pack-"))
    result = (measure_live if live else measure_mock)(rows, sizes, work)
    print(packing_table(result))


if __name__ == "__main__":
    main()
