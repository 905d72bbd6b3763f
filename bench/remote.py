"""The ``remote`` stage: reading the table where it lives, beside the same table read from a local file.

- a ~1 GB Parquet file (``BENCH_REMOTE_MB``) read from a local path and from moto's S3 server;
- a 1,000,000-row PostgreSQL table (``BENCH_REMOTE_PG_ROWS``) read by ``input.sql``, and the same rows
  from a local Parquet file.

Each read is the connector's own input layer in a child process (the table opened as ``read`` opens
it, every row made into the dict the enricher takes), so rows/s and peak RSS are what reading costs a
sync. Then ``read`` itself, at 512 in flight against the zero-latency mock, on the first
``BENCH_REMOTE_ENRICH_ROWS`` rows (``input.limit``) of each source: when the remote sources give
the rows/s of the local file, reading is not what bounds an enrichment. The servers are the tests'
(tests/storage_servers.py, ``make storage``), started on free ports and stopped by PID.

    python -m bench.remote write PATH MEGABYTES      # the Parquet file (the child process)
    python -m bench.remote read CONFIG               # open the input and read every row; prints the count
    python -m bench.remote upload FILE FACTS_JSON    # the file into moto's bucket
    python -m bench.remote fill URL ROWS PARQUET     # the PostgreSQL table, and its rows as a Parquet file
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import data
from bench.procs import BenchFailure, run_measured

_BLOCK_ROWS = 100_000
_PASSWORD = "bench-pg-secret-1"


def write_file(path: Path, megabytes: int) -> int:
    """A Parquet file of data.write_table's reviews, a 100,000-row block repeated (ids shifted) to the size."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    block = pq.read_table(data.write_table(path.with_suffix(".block.parquet"), _BLOCK_ROWS))
    rows = 0
    with pq.ParquetWriter(str(path), block.schema) as writer:
        while path.stat().st_size < megabytes << 20:
            ids = pc.add(block["review_id"], pa.scalar(rows, pa.int64()))
            writer.write_table(block.set_column(0, "review_id", ids), row_group_size=65_536)
            rows += _BLOCK_ROWS
    return rows


def read_all(config_path: Path) -> int:
    """Open the config's input as ``read`` does and read every row (the enricher's dicts); the row count."""
    from connector.config.load import load_config
    from connector.rows.opening import open_input

    table = open_input(load_config(json.loads(config_path.read_text())).input)
    return sum(len(batch) for batch in table.batches())


def _config(ctx: Any, source: dict[str, Any], **input_extra: Any) -> dict[str, Any]:
    config = data.connector_config(Path("unused"), ctx.base_url(0), 512)
    config["input"] = {**source, **input_extra}
    return config


def _measure(ctx: Any, label: str, config: dict[str, Any], rows: int) -> dict[str, Any]:
    path = data.write_json(ctx.work / f"remote_{label}.json", config)
    out = run_measured([sys.executable, "-m", "bench.remote", "read", str(path)], timeout_s=3600)
    counted = out.head_tail.split(b"\n")[0].strip()
    if out.returncode != 0 or counted != str(rows).encode():
        raise BenchFailure(f"remote: reading {label} failed or miscounted (exit {out.returncode}, {counted!r} rows "
                           f"of {rows:,}): {out.stderr[-1500:]}")
    result = {"rows": rows, "wall_s": out.wall_s, "cpu_s": out.cpu_s, "rows_per_s": rows / out.wall_s,
              "maxrss_mb": out.maxrss_kb / 1024, "harness_rss_mb": out.parent_rss_kb / 1024}
    ctx.log(f"  read {label}: {rows:,} rows in {out.wall_s:.1f} s ({result['rows_per_s']:,.0f} rows/s), CPU "
            f"{out.cpu_s:.1f} s, peak RSS {result['maxrss_mb']:.0f} MB")
    return result


def _enrich(ctx: Any, label: str, source: dict[str, Any], rows: int) -> dict[str, Any]:
    from bench.stages import run_connector

    r = run_connector(ctx, rows, ctx.base_url(0), 512, input={**source, "limit": rows})
    ctx.log(f"  enrich {label}: {rows:,} rows at 512 in flight: {r['rows_per_s']:,.0f} rows/s steady, peak RSS "
            f"{r['maxrss_mb']:.0f} MB")
    return {k: r[k] for k in ("rows", "rows_per_s", "rows_per_s_e2e", "cpu_us_row", "maxrss_mb")}


def upload(local: Path, facts: dict[str, str]) -> None:
    """The file into moto's bucket ``bench`` (the child process: the harness stays small)."""
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(access_key=facts["access_key_id"], secret_key=facts["secret_access_key"],
                           endpoint_override=facts["endpoint_url"].removeprefix("http://"), scheme="http",
                           region="us-east-1", allow_bucket_creation=True)
    fs.create_dir("bench")
    pafs.copy_files(str(local), "bench/reviews.parquet", destination_filesystem=fs)


def _s3(ctx: Any, local: Path) -> tuple[dict[str, Any], Any]:
    """moto started, the file uploaded; (input section, the server)."""
    from tests.storage_servers import start_moto

    server = start_moto(ctx.work)
    facts = server.facts
    started = time.monotonic()
    _child("upload", str(local), json.dumps(facts))
    ctx.log(f"  uploaded {local.stat().st_size / (1 << 20):,.0f} MB to moto in {time.monotonic() - started:.0f} s")
    return {"path": "s3://bench/reviews.parquet",
            "s3": {"endpoint_url": facts["endpoint_url"], "region": "us-east-1",
                   "access_key_id": facts["access_key_id"], "secret_access_key": facts["secret_access_key"]}}, \
        server


def _child(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "bench.remote", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchFailure(f"remote: python -m bench.remote {args[0]} failed: {done.stderr[-2000:]}")
    return done.stdout.strip()


def fill(url: str, rows: int, local: Path) -> None:
    """A ``reviews`` table of ``rows`` rows (data.write_table's, ids shifted), and the same rows in a local
    Parquet file (the child process)."""
    import adbc_driver_postgresql.dbapi as pg
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    block = pq.read_table(data.write_table(local.with_suffix(".block.parquet"), _BLOCK_ROWS))
    with pg.connect(url) as conn, conn.cursor() as cur, pq.ParquetWriter(str(local), block.schema) as writer:
        for start in range(0, rows, _BLOCK_ROWS):
            part = block.slice(0, min(_BLOCK_ROWS, rows - start))
            part = part.set_column(0, "review_id", pc.add(part["review_id"], pa.scalar(start, pa.int64())))
            cur.adbc_ingest("reviews", part, mode="append" if start else "create")
            writer.write_table(part, row_group_size=65_536)
        cur.execute("ALTER TABLE reviews ADD PRIMARY KEY (review_id)")
        conn.commit()


def _postgres(ctx: Any, rows: int) -> tuple[dict[str, Any], Path, Any]:
    """PostgreSQL started with a ``reviews`` table of ``rows`` rows; (input section, the same rows as a local
    Parquet file, the server)."""
    from tests.storage_servers import start_postgres

    server = start_postgres(_PASSWORD)
    local = ctx.work / "pg_rows.parquet"
    started = time.monotonic()
    _child("fill", f"postgresql://postgres:{_PASSWORD}@127.0.0.1:{server.port}/postgres", str(rows), str(local))
    ctx.log(f"  filled PostgreSQL with {rows:,} rows in {time.monotonic() - started:.0f} s")
    source = {"sql": "SELECT * FROM reviews ORDER BY review_id",
              "database": {"url": f"postgresql://postgres@127.0.0.1:{server.port}/postgres", "password": _PASSWORD}}
    return source, local, server


def stage_remote(ctx: Any, megabytes: int, pg_rows: int, enrich_rows: int) -> dict[str, Any]:
    """Reads from local Parquet, S3 (moto) and PostgreSQL; then ``read`` at 512 in flight on each."""
    from tests.servers import stop

    big = ctx.work / "remote.parquet"
    ctx.log(f"  writing a {megabytes:,} MB Parquet file")
    big_rows = int(_child("write", str(big), str(megabytes)))
    out: dict[str, Any] = {"megabytes": big.stat().st_size / (1 << 20), "big_rows": big_rows, "pg_rows": pg_rows,
                           "enrich_rows": enrich_rows, "reads": {}, "enrich": {}, "load_start": os.getloadavg()}
    servers: list[Any] = []
    try:
        s3_source, server = _s3(ctx, big)
        servers.append(server)
        pg_source, pg_local, server = _postgres(ctx, pg_rows)
        servers.append(server)
        sources = {"parquet_local": {"path": str(big)}, "parquet_s3": s3_source,
                   "pg_local_parquet": {"path": str(pg_local)}, "postgresql": pg_source}
        for label, source in sources.items():
            rows = big_rows if label.startswith("parquet") else pg_rows
            out["reads"][label] = _measure(ctx, label, _config(ctx, source), rows)
        for label, source in sources.items():
            out["enrich"][label] = _enrich(ctx, label, source, enrich_rows)
        out["load_end"] = os.getloadavg()
    finally:
        for server in servers:
            stop(server.pid)
            shutil.rmtree(server.facts.get("workdir") or ctx.work / "none", ignore_errors=True)  # PostgreSQL's
    return out


def section(result: dict[str, Any]) -> str:
    """The report's section for this stage."""
    d = result["data"]
    names = {"parquet_local": f"Parquet, local file ({d['megabytes']:,.0f} MB)",
             "parquet_s3": f"Parquet, S3 (moto, {d['megabytes']:,.0f} MB)",
             "pg_local_parquet": "the PostgreSQL rows as a local Parquet file",
             "postgresql": "PostgreSQL table (input.sql, ADBC)"}
    head = ["source", "rows", "read wall", "rows/s", "CPU", "peak RSS", f"enrich {d['enrich_rows']:,} rows at 512: "
            "rows/s", "its peak RSS"]
    rows = []
    for label, r in d["reads"].items():
        e = d["enrich"][label]
        rows.append([names[label], f"{r['rows']:,}", f"{r['wall_s']:.1f} s", f"{r['rows_per_s']:,.0f}",
                     f"{r['cpu_s']:.1f} s", f"{r['maxrss_mb']:,.0f} MB", f"{e['rows_per_s']:,.0f}",
                     f"{e['maxrss_mb']:,.0f} MB"])
    table = "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                      + ["| " + " | ".join(r) + " |" for r in rows])
    return ("Reading alone: the connector's input layer in a child process (`python -m bench.remote read`: the "
            "table opened as `read` opens it, every row made into the enricher's dict), not pinned. Then `read` "
            "end to end at 512 in flight against the zero-latency mock (pinned like the matrix) on the first rows "
            "of each source (`input.limit`), steady-state rows/s: when the remote sources match the local file, "
            "reading is not what bounds the enrichment. moto answers from memory in one Python process; "
            "PostgreSQL 15 runs on this machine (tests/storage_servers.py). A child's peak RSS includes what it "
            f"inherited from the harness at fork ({max(r.get('harness_rss_mb', 0) for r in d['reads'].values()):,.0f} "
            "MB at most here). Load average (1, 5, 15 min, `uptime`) at the stage's start "
            f"{_load(d.get('load_start'))}, at its end {_load(d.get('load_end'))}, on 2 cores.\n\n" + table
            + "\n\n" + _verdict(d))


def _verdict(d: dict[str, Any]) -> str:
    """Is reading the bottleneck at 512 in flight? The slowest read against the fastest enrichment."""
    reads, enrich = d["reads"], d["enrich"]
    slowest = min(r["rows_per_s"] for r in reads.values())
    fastest = max(e["rows_per_s"] for e in enrich.values())
    s3 = enrich["parquet_s3"]["rows_per_s"] / enrich["parquet_local"]["rows_per_s"]
    pg = enrich["postgresql"]["rows_per_s"] / enrich["pg_local_parquet"]["rows_per_s"]
    return (f"The slowest read ({slowest:,.0f} rows/s) is {slowest / fastest:,.0f}x the fastest enrichment at 512 in "
            f"flight ({fastest:,.0f} rows/s) in the same run; enriching from S3 ran at {s3:.0%} of the rate from "
            f"the local file, from PostgreSQL at {pg:.0%} of the rate from the same rows in a local file. moto "
            "answers a ranged GET of a large object in seconds (it was 1-2 s per GET of the 1 GB object in the "
            "run of 2026-12-06, seen in its log), so its read time counts its GETs: the reader's CPU is the local "
            "file's.")


def _load(values: Any) -> str:
    return " / ".join(f"{v:.1f}" for v in values) if values else "not recorded"


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "write":
        print(write_file(Path(rest[0]), int(rest[1])))
    elif command == "upload":
        upload(Path(rest[0]), json.loads(rest[1]))
    elif command == "fill":
        fill(rest[0], int(rest[1]), Path(rest[2]))
    elif command == "read":
        print(read_all(Path(rest[0])))
    else:
        raise SystemExit("usage: python -m bench.remote write PATH MEGABYTES | read CONFIG | upload FILE FACTS | "
                         "fill URL ROWS PARQUET")
