"""Scale-out on engines data teams already run: Spark and Ray.

Each adapter runs the connector's own engine (:class:`~connector.pipeline.enrich.RowEnricher`,
:func:`~connector.pipeline.ordered.ordered_map` and the :class:`~connector.endpoint.limits.Limiter`) on
every partition or batch, with the connector's config:

- :mod:`connector.scaleout.spark`: a function for ``DataFrame.mapInArrow`` (extra ``spark``);
- :mod:`connector.scaleout.ray`: a callable class for
  ``ray.data.Dataset.map_batches(batch_format="pyarrow")`` (extra ``ray``).

Neither engine is imported by the connector's core; :mod:`connector.scaleout.worker`
needs only pyarrow.
"""

from connector.scaleout.worker import BatchEnricher, worker_config

__all__ = ["BatchEnricher", "worker_config"]
