"""The ``scan`` stage: ``discover`` on a 1 GB CSV and a 1 GB JSONL file, wall time and peak RSS.

``discover`` reads a CSV or JSONL input to its last byte before it declares a
column (the encoding check, every cell's type, a key first seen on the last line),
so its time is the cost of the whole-file schema. The files are generated on the
fly into the bench's temporary folder (never committed) by a child process: a
block of varied rows repeated to the size asked for, then one last row that only
a whole-file scan sees (a JSONL key no earlier row has; a CSV ``id`` cell that is
not an integer). The stage checks that discover saw it, or it fails.

    python -m bench.scan csv|jsonl PATH MEGABYTES     # write one file (the child process)
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

from bench.data import _WORDS as WORDS
from bench.procs import BenchFailure, run_measured

_BLOCK_ROWS = 20_000


def _block(kind: str, rng: random.Random) -> bytes:
    lines = []
    for i in range(1, _BLOCK_ROWS + 1):
        text = " ".join(rng.choices(WORDS, k=rng.randint(8, 30)))
        zip_code, price = f"{rng.randint(0, 99_999):05d}", rng.randint(1, 99_999) / 100
        day = f"2025-01-{i % 28 + 1:02d}"
        if kind == "csv":
            lines.append(f'{i},{zip_code},{price},{"true" if i % 3 else "false"},{day},"{text}"\n')
        else:
            lines.append(json.dumps({"id": i, "zip": zip_code, "price": price, "flag": bool(i % 3), "day": day,
                                     "text": text}, separators=(",", ":")) + "\n")
    return "".join(lines).encode()


def write_file(kind: str, path: Path, megabytes: int) -> int:
    """Write the file; returns its data rows."""
    rng = random.Random(7)
    block = _block(kind, rng)
    target = megabytes << 20
    rows = 0
    with path.open("wb") as f:
        if kind == "csv":
            f.write(b"id,zip,price,flag,day,text\n")
        written = 0
        while written < target:
            f.write(block)
            written += len(block)
            rows += _BLOCK_ROWS
        last = b'x1,00000,1.5,true,2025-01-01,"the last row"\n' if kind == "csv" else \
            b'{"id":0,"text":"the last row","late":"only here"}\n'
        f.write(last)
    return rows + 1


def _discover_config(path: Path, base_url: str) -> dict[str, Any]:
    return {"url": base_url, "api_key": "sk-bench", "model": "bench-model", "prompt": "Review: {{text}}",
            "input": {"path": str(path)}}


def stage_scan(ctx: Any, megabytes: int) -> dict[str, Any]:
    """Discover on each file: wall, CPU, peak RSS, MB/s; checks the last row was seen."""
    out: dict[str, Any] = {"megabytes": megabytes, "files": {}}
    for kind in ("csv", "jsonl"):
        path = ctx.work / f"scan.{kind}"
        ctx.log(f"  writing a {megabytes:,} MB {kind.upper()} file into {ctx.work}")
        made = run_measured([sys.executable, "-m", "bench.scan", kind, str(path), str(megabytes)])
        if made.returncode != 0:
            raise BenchFailure(f"scan: writing {path} failed: {made.stderr[-1500:]}")
        rows = int(made.head_tail.split(b"\n")[0])
        size = path.stat().st_size
        config = ctx.work / f"scan_{kind}.json"
        config.write_text(json.dumps(_discover_config(path, ctx.base_url(0))))
        result = run_measured([*ctx.connector.cmd, "discover", "--config", str(config)], count=(b'"CATALOG"',),
                              env=ctx.connector.env, cwd=ctx.connector.cwd)
        if result.returncode != 0 or result.counts['"CATALOG"'] != 1:
            raise BenchFailure(f"scan: discover on {path} failed (exit {result.returncode}): "
                               f"{result.head_tail[-1500:].decode('utf-8', 'replace')}{result.stderr[-1500:]}")
        line = next(x for x in result.head_tail.split(b"\n") if x.startswith(b'{"type":"CATALOG"'))
        catalog = json.loads(line)
        props = catalog["catalog"]["streams"][0]["json_schema"]["properties"]
        seen = props.get("late") == {"type": ["null", "string"]} if kind == "jsonl" else \
            props.get("id") == {"type": ["null", "string"]}
        if not seen:
            raise BenchFailure(f"scan: discover on {path} missed the last row (id: {props.get('id')}, "
                               f"late: {props.get('late')})")
        path.unlink()
        out["files"][kind] = {"bytes": size, "rows": rows, "wall_s": result.wall_s, "cpu_s": result.cpu_s,
                              "maxrss_mb": result.maxrss_kb / 1024, "mb_per_s": size / (1 << 20) / result.wall_s}
        ctx.log(f"  {kind}: {size / (1 << 20):,.0f} MB, {rows:,} rows: discover {result.wall_s:.1f} s "
                f"({out['files'][kind]['mb_per_s']:.0f} MB/s), CPU {result.cpu_s:.1f} s, "
                f"peak RSS {result.maxrss_kb / 1024:.0f} MB")
    return out


if __name__ == "__main__":
    print(write_file(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])))
