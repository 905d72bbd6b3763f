"""Scale-out: the worker engine here; pyspark (local[2]) and ray (local) in .venv-scale (`make scale`).

The engine tests run in the project's venv. The Spark and Ray tests run
tests/scale/spark_job.py and ray_job.py with .venv-scale's python against the fake
server, and fail (never skip) when that venv is missing.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from connector.errors import ConfigError
from connector.scaleout import BatchEnricher, worker_config
from tests.conftest import ROOT, Server

SCALE_PYTHON = ROOT / ".venv-scale" / "bin" / "python"
JOBS = Path(__file__).resolve().parent / "scale"


def config_for(server: Server, **extra: Any) -> dict[str, Any]:
    return {"url": server.base_url, "api_key": server.api_key, "model": "fake-model",
            "prompt": "Sentiment of: {{review}}", "cache": {"enabled": False}, **extra}


def test_rate_budgets_are_divided_across_workers_and_concurrency_is_per_worker() -> None:
    raw = worker_config({"requests_per_minute": 600, "tokens_per_minute": 100_000, "concurrency": 64,
                         "min_concurrency": 8}, workers=4, concurrency=4)
    assert raw["requests_per_minute"] == 150 and raw["tokens_per_minute"] == 25_000
    assert raw["concurrency"] == 4 and raw["min_concurrency"] == 4
    assert raw["input"] == {"path": "-"}
    assert worker_config({"requests_per_minute": 3}, workers=8)["requests_per_minute"] == 1
    with pytest.raises(ConfigError, match="max_requests"):
        worker_config({"max_requests": 10})
    with pytest.raises(ConfigError, match="workers"):
        worker_config({}, workers=0)


def test_batch_enricher_runs_the_engine_and_keeps_order(fake_server: Server) -> None:
    schema = pa.schema([("id", pa.int64()), ("review", pa.string())])
    enricher = BatchEnricher(config_for(fake_server, requests_per_minute=6000), schema, workers=2, concurrency=3)
    assert enricher.config.concurrency == 3 and enricher.config.requests_per_minute == 3000
    clone = pickle.loads(pickle.dumps(enricher))  # travels to workers before it starts
    batch = pa.record_batch([pa.array(range(10)), pa.array([f"r{i}" for i in range(10)])], schema=schema)
    try:
        out = clone.enrich(batch)
        again = clone.enrich(batch.slice(0, 2))
    finally:
        clone.close()
    assert out.schema == enricher.schema
    rows = out.to_pylist()
    assert [r["id"] for r in rows] == list(range(10))
    assert [r["answer"] for r in rows[:2]] == ["echo: Sentiment of: r0", "echo: Sentiment of: r1"]
    assert [r["_row_number"] for r in again.to_pylist()] == [11, 12]  # counted across the worker's batches
    with pytest.raises(Exception, match="review"):
        BatchEnricher(config_for(fake_server), pa.schema([("other", pa.string())]))


def _scale_python() -> Path:
    if not SCALE_PYTHON.exists():
        pytest.fail(f"{SCALE_PYTHON} is missing: run `make scale` to create .venv-scale (pyspark, ray); "
                    "the scale-out tests need it.", pytrace=False)
    return SCALE_PYTHON


def _run_job(script: str, server: Server, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(config_for(server, **extra)))
    out = tmp_path / "out.json"
    started = time.monotonic()
    proc = subprocess.run([str(_scale_python()), str(JOBS / script), str(config), str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(out.read_text())
    result["wall"] = time.monotonic() - started
    return result


def _check_rows(result: dict[str, Any], server_before: int, server: Server) -> None:
    rows = result["rows"]
    assert sorted(r["id"] for r in rows) == list(range(1, 61))
    assert all(r["_status"] == "ok" for r in rows)
    assert all(r["answer"] == f"echo: Sentiment of: review number {r['id']}" for r in rows)
    assert all(r["_cost"] is not None and r["_cost"] > 0 for r in rows)
    assert server.stats()["chat"] - server_before == 60  # each row asked once
    assert result["schema"]["_row_number"] in ("bigint", "int64")


@pytest.mark.scale
def test_spark_map_in_arrow_local(fake_server: Server, tmp_path: Path) -> None:
    before = fake_server.stats().get("chat", 0)
    result = _run_job("spark_job.py", fake_server, tmp_path, requests_per_minute=12_000,
                      prices={"*": {"input_per_million": 1, "output_per_million": 2}})
    _check_rows(result, before, fake_server)
    assert result["partitions"] == 2
    # _row_number counts within each task's partition: two runs 1..k and 1..60-k.
    counts = Counter(r["_row_number"] for r in result["rows"])
    assert max(counts.values()) <= 2 and set(counts) == set(range(1, max(counts) + 1))


@pytest.mark.scale
def test_ray_map_batches_local(fake_server: Server, tmp_path: Path) -> None:
    before = fake_server.stats().get("chat", 0)
    result = _run_job("ray_job.py", fake_server, tmp_path, requests_per_minute=12_000,
                      prices={"*": {"input_per_million": 1, "output_per_million": 2}})
    _check_rows(result, before, fake_server)
