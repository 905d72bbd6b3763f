"""Run by tests/test_scaleout.py with .venv-scale's python: enrich a Ray Dataset locally.

    python ray_job.py CONFIG_JSON OUT_JSON
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pyarrow as pa
import ray

from connector.scaleout.ray import RayEnricher


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    started = time.monotonic()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        table = pa.table({"id": pa.array(range(1, 61), pa.int64()),
                          "review": [f"review number {i}" for i in range(1, 61)]})
        ds = ray.data.from_arrow([table.slice(i, 15) for i in range(0, 60, 15)])  # 4 blocks
        # The actors wait on the network, not the CPU: a fraction of a CPU each leaves room
        # for Ray's own tasks (two whole-CPU actors on two CPUs would starve them).
        enriched = ds.map_batches(RayEnricher, fn_constructor_kwargs={"config": config, "workers": 2,
                                                                      "concurrency": 4},
                                  batch_format="pyarrow", batch_size=16, concurrency=2, num_cpus=0.25)
        result = enriched.to_arrow_refs()
        tables = ray.get(result)
        out = pa.concat_tables(tables)
    finally:
        ray.shutdown()
    with Path(sys.argv[2]).open("w") as f:
        json.dump({"schema": {f.name: str(f.type) for f in out.schema}, "rows": out.to_pylist(),
                   "seconds": time.monotonic() - started}, f, default=str)


if __name__ == "__main__":
    main()
