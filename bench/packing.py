"""Several rows per request: requests, tokens and wall time per 1,000 short rows at rows_per_request 1, 10, 50.

    .venv/bin/python -m bench.packing [ROWS [N ...]]     # prints Markdown, keeps bench/results/packing.json
    .venv/bin/python -m bench.packing --live [ROWS [N ...]]   # the same against llama.cpp (packing_live.json)

The endpoint is bench/packmock.py (its own process, stopped by PID): 100 ms per answer plus 5 ms per completion
token, tokens counted as characters / 4. The rows are the bench's synthetic product reviews (bench/data.py,
about 200 characters each, ``PROMPT``) with a labelling instruction of about 900 characters as the system prompt: the
part every row's request repeats and a packed request sends once. Each run is a fresh ``read`` process
(answer cache off, 16 in flight). Checked on every run: each record's answer is the one the mock gives for
that row's own text (so no row took another's answer), every row ``ok``, and the records' ``_prompt_tokens``
and ``_completion_tokens`` add up to what the mock counted.

``--live``: llama.cpp's llama-server with SmolLM2-135M (scripts/local_llm.sh, installed by ``make local-llm``;
started on a free port with one thread and 4 slots, stopped through the script by its PID file), 4 in flight,
``max_tokens`` 16 a row. The model's answers are its own: checked only that no row failed (``ok``, or
``truncated`` where the model ran past 16 tokens, counted); the requests
are the server's own count (``launch_slot_`` lines in its log), the tokens the records' sums.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bench import data
from bench.packmock import _word

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
CONCURRENCY = 16
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
    proc = subprocess.Popen([str(PYTHON), "-m", "bench.packmock"], stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline().split()[1])


def _call(port: int, method: str, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method),
                                timeout=30) as resp:
        return dict(json.loads(resp.read()))


def _read(base: str, table: Path, n: int, work: Path, concurrency: int = CONCURRENCY, **extra: Any,
          ) -> tuple[list[dict[str, Any]], float]:
    """One read at rows_per_request ``n``: its records and wall time."""
    config = data.connector_config(table, base, concurrency, system_prompt=INSTRUCTIONS,
                                   prompt=PROMPT, rows_per_request=n, cache={"enabled": False}, **extra)
    config_path = data.write_json(work / f"pack_{n}.json", config)
    catalog_path = data.write_json(work / "pack_catalog.json", data.catalog())
    started = time.monotonic()
    done = subprocess.run([str(PYTHON), "-m", "connector", "read", "--config", str(config_path), "--catalog",
                           str(catalog_path)], cwd=ROOT, capture_output=True, timeout=3600,
                          env={**os.environ, "XDG_CACHE_HOME": tempfile.mkdtemp(dir=work)})
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"rows_per_request {n} failed: {done.stderr.decode(errors='replace')[-2000:]}")
    records = [m["record"]["data"] for m in map(json.loads, done.stdout.splitlines()) if m["type"] == "RECORD"]
    return records, wall


def run_one(port: int, table: Path, n: int, work: Path) -> dict[str, Any]:
    """One read against the mock at rows_per_request ``n``: its figures, after checking every record."""
    _call(port, "POST", "/reset")
    records, wall = _read(f"http://127.0.0.1:{port}/v1", table, n, work)
    stats = _call(port, "GET", "/stats")
    _check(records, stats, table, n)
    return {"n": n, "rows": len(records), "requests": stats["requests"], "packed": stats.get("packed", 0),
            "prompt_tokens": stats["prompt_tokens"], "completion_tokens": stats["completion_tokens"], "wall_s": wall}


def _check(records: list[dict[str, Any]], stats: dict[str, Any], table: Path, n: int) -> None:
    rows = pq.read_table(table).to_pylist()
    wanted = [_word(_prompt(row)) for row in rows]
    got = [r["answer"] for r in records]
    if got != wanted or any(r["_status"] != "ok" for r in records):
        wrong = sum(a != b for a, b in zip(got, wanted, strict=False))
        raise RuntimeError(f"rows_per_request {n}: {wrong} rows got another answer than their own, or not ok")
    for field, key in (("_prompt_tokens", "prompt_tokens"), ("_completion_tokens", "completion_tokens")):
        if sum(r[field] for r in records) != stats[key]:
            raise RuntimeError(f"rows_per_request {n}: the rows' {field} do not add up to the mock's {key}")


def _prompt(row: dict[str, Any]) -> str:
    text = PROMPT
    for key, value in row.items():
        text = text.replace("{{" + key + "}}", str(value))
    return text


def report(results: list[dict[str, Any]], load: tuple[str, str], commit: str) -> str:
    base = results[0]
    lines = [f"Commit `{commit}`; `uptime` before: `{load[0]}`; after: `{load[1]}` (2 cores, shared).", "",
             "| rows_per_request | rows | requests | prompt tokens | completion tokens | wall s | "
             "requests × | tokens × | wall × |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        tokens = r["prompt_tokens"] + r["completion_tokens"]
        base_tokens = base["prompt_tokens"] + base["completion_tokens"]
        lines.append(f"| {r['n']} | {r['rows']:,} | {r['requests']:,} | {r['prompt_tokens']:,} | "
                     f"{r['completion_tokens']:,} | {r['wall_s']:.1f} | {r['requests'] / base['requests']:.3f} | "
                     f"{tokens / base_tokens:.3f} | {r['wall_s'] / base['wall_s']:.3f} |")
    return "\n".join(lines)


def run_live(base: str, log: Path, table: Path, n: int, work: Path) -> dict[str, Any]:
    """One read against llama.cpp at rows_per_request ``n``."""
    before = log.read_text(errors="replace").count("launch_slot_")
    records, wall = _read(base, table, n, work, concurrency=4, api_key=LIVE_KEY, timeout=600)
    if any(r["_status"] not in ("ok", "truncated") for r in records):
        raise RuntimeError(f"rows_per_request {n}: rows failed: {[r['_error'] for r in records if r['_error']][:3]}")
    requests = log.read_text(errors="replace").count("launch_slot_") - before
    return {"n": n, "rows": len(records), "truncated": sum(r["_status"] == "truncated" for r in records),
            "requests": requests,
            "prompt_tokens": sum(r["_prompt_tokens"] for r in records),
            "completion_tokens": sum(r["_completion_tokens"] for r in records), "wall_s": wall}


LIVE_KEY = "sk-bench-pack-live"


def _live(rows: int, sizes: list[int], work: Path, table: Path) -> list[dict[str, Any]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pidfile, log = work / "llama.pid", work / "llama.log"
    env = {**os.environ, "PORT": str(port), "API_KEY": LIVE_KEY, "THREADS": "1", "PARALLEL": "4",
           "PIDFILE": str(pidfile), "LOG": str(log)}
    script = str(ROOT / "scripts" / "local_llm.sh")
    subprocess.run([script, "start"], env=env, check=True, capture_output=True, timeout=600)
    try:
        return [run_live(f"http://127.0.0.1:{port}/v1", log, table, n, work) for n in sizes]
    finally:
        subprocess.run([script, "stop"], env=env, capture_output=True, timeout=60)


def main() -> None:
    live = "--live" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--live"]
    rows = int(args[0]) if args else 1000
    sizes = [int(x) for x in args[1:]] or [1, 10, 50]
    work = Path(tempfile.mkdtemp(prefix="bench-pack-"))
    table = data.make_table(work / "pack_rows.parquet", rows)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    if live:
        results = _live(rows, sizes, work, table)
    else:
        proc, port = _mock()
        try:
            results = [run_one(port, table, n, work) for n in sizes]
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    out = ROOT / "bench" / "results" / ("packing_live.json" if live else "packing.json")
    out.write_text(json.dumps({"commit": commit, "uptime": [before, after], "results": results}, indent=1))
    print(report(results, (before, after), commit))


if __name__ == "__main__":
    main()
