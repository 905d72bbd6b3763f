"""The openai_embeddings shape against a real server: llama.cpp serving SmolLM2-135M's embeddings.

tests/servers.py starts llama.cpp with ``--embeddings --pooling mean`` on its own port (the
chat server of the other live tests is not touched) and stops it by PID. The whole sample
table (sample_configs/product_reviews.csv) goes through ``run`` as a process, with its
production transport, into a Parquet file: first priced by a dry run, then embedded, then
run again, answered by the cache alone.
"""

from __future__ import annotations

import csv
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import CLI, LIVE_KEY, ROOT
from tests.servers import Started, running, start_llama_cpp_embeddings

pytestmark = pytest.mark.live

SAMPLE = ROOT / "sample_configs" / "product_reviews.csv"
DIMENSION = 576  # SmolLM2-135M's hidden size: its mean-pooled embedding
PRICE = 0.02  # per million input tokens, as text-embedding-3-small is priced


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("live_embeddings")


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[Started]:
    with running(start_llama_cpp_embeddings(workdir, LIVE_KEY)) as started:
        yield started


def sample_size() -> int:
    with SAMPLE.open(newline="", encoding="utf-8") as f:
        return sum(1 for _ in csv.DictReader(f))


def run(workdir: Path, server: Started, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    config = {"url": server.base_url, "api_key": server.api_key, "model": "smollm2-135m",
              "api_compatibility": "openai_embeddings", "prompt": "{{review_text}}",
              "input": {"path": str(SAMPLE), "primary_key": "review_id"},
              "embeddings": {"inputs_per_request": 16}, "concurrency": 2, "timeout": 300,
              "cache": {"path": str(workdir / "answers.sqlite")},
              "prices": {"*": {"input_per_million": PRICE, "output_per_million": 0}}}
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(config))
    return subprocess.run([*CLI, "run", "--config", str(path), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800, check=False)


def inputs_embedded(server: Started) -> int:
    """How many inputs the server has embedded so far: llama-server logs a slot launch per input it
    processes (``launch_slot_``, one per row of a merged request), whatever the client says."""
    return server.log.read_text(errors="replace").count("launch_slot_")


@pytest.fixture(scope="module")
def runs(workdir: Path, server: Started) -> dict[str, Any]:
    """The dry run, the first run and the rerun, in that order (the cache is empty before the first), and
    the inputs the server embedded after each."""
    out: dict[str, Any] = {"before": inputs_embedded(server), "dry": run(workdir, server, "dry", "--dry-run")}
    out["dry_embedded"] = inputs_embedded(server)
    for name in ("first", "again"):
        target = workdir / f"{name}.parquet"
        out[name] = run(workdir, server, name, "--output", str(target))
        out[f"{name}_table"] = pq.read_table(target) if target.exists() else None
        out[f"{name}_embedded"] = inputs_embedded(server)
        out[f"{name}_path"] = target
    return out


def test_the_sample_reviews_are_embedded_into_a_fixed_size_float_list(runs: dict[str, Any]) -> None:
    first = runs["first"]
    assert first.returncode == 0, first.stderr
    table: pa.Table = runs["first_table"]
    assert table.num_rows == sample_size()
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), DIMENSION)
    assert set(table.column("_status").to_pylist()) == {"ok"}
    vectors = table.column("embedding").to_pylist()
    assert len({tuple(v) for v in vectors}) > sample_size() * 0.9  # different reviews, different vectors
    tokens = table.column("_prompt_tokens").to_pylist()
    assert all(t > 0 for t in tokens)


def test_duckdb_reads_the_vectors_as_arrays_of_the_models_dimension(runs: dict[str, Any]) -> None:
    vectors = runs["first_table"]  # noqa: F841 - DuckDB reads the Arrow table by its name
    [(kind, rows)] = duckdb.sql("SELECT any_value(typeof(embedding)), count(*) FROM vectors").fetchall()
    assert kind == f"FLOAT[{DIMENSION}]" and rows == sample_size()
    [(same,)] = duckdb.sql("SELECT min(array_cosine_similarity(embedding, embedding)) FROM vectors").fetchall()
    assert same == pytest.approx(1.0, abs=1e-4)
    # DuckDB's own Parquet reader: a list (Parquet has no fixed-size list) of the same length, cast for arrays.
    [(kind, shortest, longest, cast)] = duckdb.sql(
        f"SELECT any_value(typeof(embedding)), min(len(embedding)), max(len(embedding)), "
        f"any_value(typeof(embedding::FLOAT[{DIMENSION}])) FROM '{runs['first_path']}'").fetchall()
    assert (kind, shortest, longest, cast) == ("FLOAT[]", DIMENSION, DIMENSION, f"FLOAT[{DIMENSION}]")


def test_the_cost_is_the_price_of_the_tokens_the_server_counted(runs: dict[str, Any]) -> None:
    table = runs["first_table"]
    tokens = sum(table.column("_prompt_tokens").to_pylist())
    cost = sum(table.column("_cost").to_pylist())
    assert cost == pytest.approx(tokens * PRICE / 1_000_000)
    assert f"tokens in {tokens}, out 0" in runs["first"].stderr


def test_a_rerun_costs_nothing(runs: dict[str, Any]) -> None:
    again = runs["again"]
    assert again.returncode == 0, again.stderr
    table = runs["again_table"]
    assert set(table.column("_cached").to_pylist()) == {True}
    assert set(table.column("_attempts").to_pylist()) == {0}
    assert sum(table.column("_cost").to_pylist()) == 0
    assert table.column("embedding").to_pylist() == runs["first_table"].column("embedding").to_pylist()
    assert f"answers from cache: {sample_size()}" in again.stderr
    assert runs["again_embedded"] == runs["first_embedded"]  # the server embedded nothing more
    assert runs["first_embedded"] - runs["dry_embedded"] == sample_size()  # the first run: each row once


def test_the_dry_run_prices_it_before_anything_is_sent(runs: dict[str, Any]) -> None:
    dry = runs["dry"]
    assert dry.returncode == 0, dry.stderr
    assert f"rows: {sample_size()}" in dry.stdout and "output tokens: ~0" in dry.stdout
    estimate = float(dry.stdout.split("estimated cost: ~")[1].split(" ")[0])
    paid = sum(runs["first_table"].column("_cost").to_pylist())
    assert estimate > 0 and 0.25 < estimate / paid < 4  # an offline estimate: characters over 4
    assert runs["dry_embedded"] == runs["before"]  # priced without sending anything
    assert f"requests: {-(-sample_size() // 16)} or more (up to 16 rows each)" in dry.stdout
