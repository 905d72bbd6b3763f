"""Inputs of a benchmark run: the N-row Parquet table, connector configs, and the request bodies.

The bodies the peers send are built by the connector's own template and request builder
from the same rows, so every client sends byte-for-byte the same JSON work.

Tables and bodies are made in a child process (``python -m bench.data table|bodies ...``):
Linux reports a child's peak RSS as at least its parent's RSS when it forked, so the
harness must stay small and never load pyarrow or the connector itself.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

STREAM = "enriched_rows"
MODEL = "bench-model"
API_KEY = "sk-bench"
SYSTEM_PROMPT = "You label customer product reviews. Answer with one JSON object and nothing else."
PROMPT = (
    "Review #{{review_id}} of {{product}} ({{category}})\nStar rating: {{rating}} out of 5\nReview: {{review_text}}\n\n"
    'Return {"sentiment": "positive" | "negative" | "neutral"}.'
)
_WORDS = [
    "battery", "screen", "sound", "quality", "price", "delivery", "broke", "works", "great", "terrible",
    "okay", "love", "hate", "fast", "slow", "cheap", "sturdy", "flimsy", "comfortable", "noisy", "quiet",
    "bright", "dim", "easy", "hard", "setup", "manual", "support", "refund", "replacement", "box", "cable",
    "charger", "lasts", "weeks", "months", "days", "again", "recommend",
]
_PRODUCTS = ["headphones", "kettle", "novel", "backpack", "phone case", "desk lamp", "blender", "keyboard"]
_CATEGORIES = ["electronics", "kitchen", "books", "outdoor", "home"]


def write_table(path: Path, rows: int, seed: int = 42) -> Path:
    """A Parquet file of ``rows`` synthetic product reviews (about 200 bytes of text each)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    chunk = 100_000
    writer: Any = None
    try:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            table = pa.table(
                {
                    "review_id": pa.array(range(start + 1, start + n + 1), pa.int64()),
                    "product": [rng.choice(_PRODUCTS) for _ in range(n)],
                    "category": [rng.choice(_CATEGORIES) for _ in range(n)],
                    "rating": pa.array([rng.randint(1, 5) for _ in range(n)], pa.int8()),
                    "review_text": [" ".join(rng.choices(_WORDS, k=30)).capitalize() + "." for _ in range(n)],
                }
            )
            if writer is None:
                writer = pq.ParquetWriter(str(path), table.schema)
            writer.write_table(table, row_group_size=65_536)
    finally:
        if writer is not None:
            writer.close()
    return path


def connector_config(table: Path, base_url: str, concurrency: int, **extra: Any) -> dict[str, Any]:
    """The connector's config for a run: short-form prompt, 16 output tokens, no streaming."""
    config: dict[str, Any] = {
        "url": base_url,
        "api_key": API_KEY,
        "model": MODEL,
        "system_prompt": SYSTEM_PROMPT,
        "prompt": PROMPT,
        "input": {"path": str(table), "primary_key": "review_id"},
        "parameters": {"max_tokens": 16, "temperature": 0},
        "concurrency": concurrency,
        "timeout": 120,
        "max_retries": 2,
        "stream_name": STREAM,
    }
    config.update(extra)
    return config


def catalog() -> dict[str, Any]:
    return {
        "streams": [
            {
                "stream": {"name": STREAM, "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"]},
                "sync_mode": "full_refresh",
                "destination_sync_mode": "overwrite",
            }
        ]
    }


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value, indent=1))
    return path


def write_bodies(config: dict[str, Any], out: Path, limit: int | None = None) -> int:
    """One request body per input row, as JSON lines, built by the connector's own code."""
    import orjson

    from connector.config.load import load_config
    from connector.dialects import dialect_for
    from connector.requests.templates import RequestTemplate
    from connector.rows.files import InputTable

    parsed = load_config(config)
    dialect = dialect_for(parsed)  # the run's one dialect builds the bodies, as in a read
    template = RequestTemplate.from_config(parsed, dialect.conversation_key)
    written = 0
    with out.open("wb") as f:
        for batch in InputTable(parsed.input).batches():
            for row in batch:
                if limit is not None and written >= limit:
                    return written
                f.write(orjson.dumps(dialect.build(template.render(row))) + b"\n")
                written += 1
    return written


def make_table(path: Path, rows: int) -> Path:
    """``write_table`` in a child process (keeps the harness small)."""
    subprocess.run([sys.executable, "-m", "bench.data", "table", str(path), str(rows)], check=True)
    return path


def make_bodies(config: dict[str, Any], out: Path, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> int:
    """``write_bodies`` in a child process (``env``: where the connector's code is); returns the count."""
    config_path = write_json(out.with_suffix(".config.json"), config)
    done = subprocess.run([sys.executable, "-m", "bench.data", "bodies", str(config_path), str(out)],
                          check=True, capture_output=True, text=True, env=env, cwd=cwd)
    return int(done.stdout.strip())


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a table ``write_table`` made, read in a child process (keeps the harness small)."""
    done = subprocess.run([sys.executable, "-m", "bench.data", "rows", str(path)],
                          check=True, capture_output=True, text=True)
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def main() -> None:
    kind, *args = sys.argv[1:]
    if kind == "table":
        write_table(Path(args[0]), int(args[1]))
    elif kind == "bodies":
        print(write_bodies(json.loads(Path(args[0]).read_text()), Path(args[1])))
    elif kind == "rows":
        import pyarrow.parquet as pq

        print(json.dumps(pq.read_table(args[0]).to_pylist()))
    else:
        raise SystemExit(f"usage: python -m bench.data table PATH ROWS | bodies CONFIG OUT | rows PATH (not {kind})")


if __name__ == "__main__":
    main()
