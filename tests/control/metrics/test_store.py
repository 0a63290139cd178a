"""control/metrics/store.py: the store's backend and its retried transactions on /metrics,
read from a real store."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from control.metrics.store import StoreCollector
from control.store.sqlite import SqliteStore

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


async def test_the_backend_and_its_retried_transactions_are_exported(tmp_path):
    store = SqliteStore(str(tmp_path / "conclave.db"))
    await store.open()
    try:
        await store.create_customer("Acme", api_key_hash="k")
        registry = CollectorRegistry()
        registry.register(StoreCollector(store))
        text = generate_latest(registry).decode()
    finally:
        await store.close()
    assert 'conclave_store_backend{backend="sqlite"} 1.0' in text
    assert "conclave_store_transactions_retried_total 0.0" in text  # SQLite locks first, never retries
