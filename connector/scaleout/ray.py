"""Ray Data: a callable class for ``Dataset.map_batches(batch_format="pyarrow")``.

    from connector.scaleout.ray import RayEnricher

    enriched = ds.map_batches(
        RayEnricher, fn_constructor_kwargs={"config": config, "workers": 4, "concurrency": 16},
        batch_format="pyarrow", batch_size=512, concurrency=4)

Ray's ``concurrency`` (how many actors) and the ``workers`` argument should be
the same number: each actor gets ``concurrency`` requests in flight and
``1/workers`` of ``requests_per_minute`` and ``tokens_per_minute``. Each actor
keeps one event loop, connection pool and rate limiter for all its batches.
Needs the optional extra ``ray`` (``ray[data]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from connector.scaleout.worker import BatchEnricher


class RayEnricher:
    """Enriches each ``pyarrow.Table`` batch; Ray builds one per actor."""

    def __init__(self, config: Mapping[str, Any], *, workers: int = 1, concurrency: int | None = None) -> None:
        self._config = dict(config)
        self._workers = workers
        self._concurrency = concurrency
        self._enricher: BatchEnricher | None = None

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self._enricher is None:  # the input's schema is known with the first batch
            self._enricher = BatchEnricher(self._config, batch.schema, workers=self._workers,
                                           concurrency=self._concurrency)
        if not batch.num_rows:
            return self._enricher.schema.empty_table()
        return pa.Table.from_batches([self._enricher.enrich(batch)])

    def __del__(self) -> None:
        if self._enricher is not None:
            self._enricher.close()
