"""Spark: enrich a DataFrame with ``mapInArrow``, the connector's engine in every task.

    from connector.scaleout.spark import enrich_dataframe

    enriched = enrich_dataframe(df, config, workers=8, concurrency=16)
    enriched.write.parquet("s3://bucket/enriched/")

``workers`` is how many tasks run at once across the cluster (executors x cores;
default: the context's ``defaultParallelism``): each task gets ``concurrency``
requests in flight and ``1/workers`` of ``requests_per_minute`` and
``tokens_per_minute``. The output schema is fixed before any row is read: the
input's columns, then the output and metadata columns (see
:mod:`connector.standalone.writers`). Needs the optional extra ``spark`` (pyspark); the
connector must be installed on the executors too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pyarrow as pa

from connector.scaleout.worker import BatchEnricher

ArrowMap = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]


def output_schema(config: Mapping[str, Any], input_schema: pa.Schema) -> pa.Schema:
    """The Arrow schema of the enriched rows."""
    return BatchEnricher(config, input_schema).schema


def enrich_function(config: Mapping[str, Any], input_schema: pa.Schema, *, workers: int = 1,
                    concurrency: int | None = None) -> ArrowMap:
    """The function to pass to ``DataFrame.mapInArrow``: each task enriches its batches in order."""
    enricher = BatchEnricher(config, input_schema, workers=workers, concurrency=concurrency)  # validates now

    def enrich_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        worker = BatchEnricher(enricher.raw_config, input_schema)  # fresh per task: its own loop and pool
        try:
            for batch in batches:
                if batch.num_rows:
                    yield worker.enrich(batch)
        finally:
            worker.close()

    return enrich_partition


def enrich_dataframe(df: Any, config: Mapping[str, Any], *, workers: int | None = None,
                     concurrency: int | None = None) -> Any:
    """``df`` with the output and metadata columns added, computed lazily by ``mapInArrow``."""
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    input_schema = to_arrow_schema(df.schema)
    workers = workers or int(df.sparkSession.sparkContext.defaultParallelism)
    function = enrich_function(config, input_schema, workers=workers, concurrency=concurrency)
    return df.mapInArrow(function, from_arrow_schema(output_schema(config, input_schema)))
