"""Spark: enrich a DataFrame with ``mapInArrow``, the connector's engine in every task.

    from connector.scaleout.spark import enrich_dataframe

    enriched = enrich_dataframe(df, config, workers=8, concurrency=16)
    enriched.write.parquet("s3://bucket/enriched/")

``workers`` is how many tasks run at once across the cluster (executors x cores;
default: the context's ``defaultParallelism``): each task gets ``concurrency``
requests in flight and ``1/workers`` of ``requests_per_minute`` and
``tokens_per_minute``. The output schema is fixed before any row is read: the
input's columns, then the output and metadata columns (see
:mod:`connector.standalone.writers`); an embedding vector is Spark's ``array<float>``.
Needs the optional extra ``spark`` (pyspark); the connector must be installed on the executors too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pyarrow as pa

from connector.scaleout.worker import BatchEnricher

ArrowMap = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]


def output_schema(config: Mapping[str, Any], input_schema: pa.Schema) -> pa.Schema:
    """The Arrow schema of the enriched rows, as Spark takes it (:func:`for_spark`)."""
    return for_spark(BatchEnricher(config, input_schema).schema)


def for_spark(schema: pa.Schema) -> pa.Schema:
    """``schema`` with each fixed-size list (an embedding vector) as a plain list: Spark's Arrow conversion
    refuses FixedSizeList (UNSUPPORTED_ARROWTYPE, seen with pyspark 4.3), and Spark has no fixed-size array."""
    return pa.schema([f.with_type(pa.list_(f.type.value_field)) if pa.types.is_fixed_size_list(f.type) else f
                      for f in schema], metadata=schema.metadata)


def enrich_function(config: Mapping[str, Any], input_schema: pa.Schema, *, workers: int = 1,
                    concurrency: int | None = None) -> ArrowMap:
    """The function to pass to ``DataFrame.mapInArrow``: each task enriches its batches in order."""
    enricher = BatchEnricher(config, input_schema, workers=workers, concurrency=concurrency)  # validates now

    schema = for_spark(enricher.schema)

    def enrich_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        worker = BatchEnricher(enricher.raw_config, input_schema)  # fresh per task: its own loop and pool
        try:
            for batch in batches:
                if batch.num_rows:
                    yield worker.enrich(batch).cast(schema)
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
