"""Run by tests/test_scaleout.py with .venv-scale's python: enrich a DataFrame on local[2].

    python spark_job.py CONFIG_JSON OUT_JSON
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from pyspark.sql import SparkSession

from connector.scaleout.spark import enrich_dataframe


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    started = time.monotonic()
    # Spark's Python workers run `python3` from PATH unless told: they need this venv.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = (SparkSession.builder.master("local[2]").appName("enrich-test")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
             .config("spark.sql.execution.arrow.maxRecordsPerBatch", "16").getOrCreate())
    try:
        rows = [(i, f"review number {i}") for i in range(1, 61)]
        df = spark.createDataFrame(rows, "id long, review string").repartition(2, "id")
        enriched = enrich_dataframe(df, config, workers=2, concurrency=4)
        schema = {f.name: f.dataType.simpleString() for f in enriched.schema.fields}
        out = [r.asDict() for r in enriched.collect()]
        partitions = enriched.rdd.getNumPartitions()
    finally:
        spark.stop()
    with Path(sys.argv[2]).open("w") as f:
        json.dump({"schema": schema, "rows": out, "partitions": partitions,
                   "seconds": time.monotonic() - started}, f, default=str)


if __name__ == "__main__":
    main()
