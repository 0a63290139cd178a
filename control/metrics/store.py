"""The store in Prometheus (control.store): which database it is, and how many write
transactions PostgreSQL refused for a conflict with another and that were run again (a
rising rate: hosts or meetings contended across nodes)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from control.store import Store


class StoreCollector(Collector):
    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        stats = self._store.stats()
        info = GaugeMetricFamily("conclave_store_backend", "The database the store is on (1 for it)",
                                 labels=["backend"])  # fmt: skip
        info.add_metric([stats.backend], 1)
        yield info
        yield CounterMetricFamily("conclave_store_transactions_retried", "Write transactions the database "
                                  "refused for a conflict with another and that were run again",
                                  value=stats.transactions_retried)  # fmt: skip
