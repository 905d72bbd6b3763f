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
                         "input_tokens_per_minute": 80_000, "output_tokens_per_minute": 16_000,
                         "min_concurrency": 8}, workers=4, concurrency=4)
    assert raw["requests_per_minute"] == 150 and raw["tokens_per_minute"] == 25_000
    assert raw["input_tokens_per_minute"] == 20_000 and raw["output_tokens_per_minute"] == 4_000
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


def test_a_worker_embeds_several_rows_of_its_batch_per_request() -> None:
    """The engine groups embedding rows as a read does: 10 rows at 4 per request are 3 requests, not 10; a
    group never spans two batches the engine hands over."""
    from tests.conftest import mock_transport
    from tests.test_embeddings import FakeEmbeddings, vector

    server = FakeEmbeddings()
    schema = pa.schema([("id", pa.int64()), ("text", pa.string())])
    config = {"url": "http://embed.test/v1", "api_key": "sk-test-embeddings-1234", "model": "embedder",
              "api_compatibility": "openai_embeddings", "prompt": "{{text}}", "cache": {"enabled": False},
              "embeddings": {"inputs_per_request": 4, "dimensions": 4}}  # a worker's schema is fixed up front
    enricher = BatchEnricher(config, schema, concurrency=2, transport_factory=mock_transport(server))
    texts = [f"review {i} " + "word " * i for i in range(12)]
    batch = pa.record_batch([pa.array(range(12)), pa.array(texts)], schema=schema)
    try:
        first, second = enricher.enrich(batch.slice(0, 10)), enricher.enrich(batch.slice(10))
    finally:
        enricher.close()
    assert server.inputs == [texts[0:4], texts[4:8], texts[8:10], texts[10:12]]
    rows = first.to_pylist() + second.to_pylist()
    assert [r["embedding"] for r in rows] == [vector(t) for t in texts]
    assert [r["_prompt_tokens"] for r in rows] == [len(t.split()) for t in texts]  # each row's share
    assert first.schema.field("embedding").type == pa.list_(pa.float32(), 4)


def _scale_python() -> Path:
    if not SCALE_PYTHON.exists():
        pytest.fail(f"{SCALE_PYTHON} is missing: run `make scale` to create .venv-scale (pyspark, ray); "
                    "the scale-out tests need it.", pytrace=False)
    return SCALE_PYTHON


def _run_job(script: str, server: Server | None, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """The job's result; without ``server``, ``extra`` is the whole config."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(config_for(server, **extra) if server is not None else extra))
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


@pytest.mark.scale
@pytest.mark.parametrize("script", ["spark_job.py", "ray_job.py"])
def test_spark_and_ray_workers_embed_several_rows_per_request(script: str, tmp_path: Path) -> None:
    """60 rows, handed to the workers in Arrow batches of at most 16 (Spark's maxRecordsPerBatch, Ray's
    batch_size), 16 rows a request: each batch is one request, so a handful of requests, not 60."""
    from tests.batch_runs import KEY, fake_batch_server
    from tests.fake_batch_answers import embedding_for

    with fake_batch_server() as server:  # fake_openai's app with /v1/embeddings
        config = {"url": f"{server.origin}/v1", "api_key": KEY, "model": "embedder", "prompt": "{{review}}",
                  "api_compatibility": "openai_embeddings", "cache": {"enabled": False},
                  "embeddings": {"inputs_per_request": 16, "dimensions": 3}}
        result = _run_job(script, None, tmp_path, **config)
        requests = server.stats().get("sync_answers", 0)
    rows = result["rows"]
    assert sorted(r["id"] for r in rows) == list(range(1, 61))
    assert all(r["_status"] == "ok" for r in rows)
    assert all([float(x) for x in r["embedding"]] == embedding_for(r["review"]) for r in rows)
    assert 4 <= requests <= 8  # 60 rows in batches of at most 16 (Ray's blocks of 15): 4 to 8 batches


# A task using another's answer: a worker runs a row's tasks as a read does.
TASKS = [{"name": "gist", "prompt": "Gist of: {{review}}"}, {"name": "short", "prompt": "Shorter: {{gist.answer}}"}]


def test_batch_enricher_runs_a_rows_tasks_in_one_pass(fake_server: Server) -> None:
    schema = pa.schema([("id", pa.int64()), ("review", pa.string())])
    enricher = BatchEnricher(config_for(fake_server, prompt=None, tasks=TASKS), schema, workers=2, concurrency=3)
    assert {"gist_answer", "short_answer", "gist_status", "short_status"} <= set(enricher.schema.names)
    before = fake_server.stats().get("chat", 0)
    batch = pa.record_batch([pa.array(range(6)), pa.array([f"r{i}" for i in range(6)])], schema=schema)
    clone = pickle.loads(pickle.dumps(enricher))
    try:
        rows = clone.enrich(batch).to_pylist()
    finally:
        clone.close()
    assert [r["short_answer"] for r in rows] == [f"echo: Shorter: echo: Gist of: r{i}" for i in range(6)]
    assert {r["_status"] for r in rows} == {"ok"} and fake_server.stats()["chat"] - before == 12  # rows x tasks


def _check_task_rows(result: dict[str, Any], server_before: int, server: Server) -> None:
    rows = result["rows"]
    assert sorted(r["id"] for r in rows) == list(range(1, 61))
    assert all(r["_status"] == "ok" for r in rows)
    assert all(r["short_answer"] == f"echo: Shorter: echo: Gist of: review number {r['id']}" for r in rows)
    assert server.stats()["chat"] - server_before == 120  # rows x tasks, each asked once


@pytest.mark.scale
@pytest.mark.parametrize("job", ["spark_job.py", "ray_job.py"])
def test_spark_and_ray_run_a_rows_tasks(fake_server: Server, tmp_path: Path, job: str) -> None:
    before = fake_server.stats().get("chat", 0)
    result = _run_job(job, fake_server, tmp_path, requests_per_minute=24_000, prompt=None, tasks=TASKS)
    _check_task_rows(result, before, fake_server)
