"""Fixtures for tests that drive an in-process SFU Worker over loopback (import them into
the test module: `from tests.support.worker_fixtures import loopback_ice, worker  # noqa: F401`)."""

from __future__ import annotations

import aioice.ice
import pytest

from config.schema import MediaConfig, SfuConfig
from sfu import api
from sfu.worker import Worker


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch):
    # aioice never gathers 127.0.0.1; the tests keep all traffic on loopback.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
async def worker():
    """A bound Worker on a free port with router "r"; shut down after the test."""
    worker = Worker(0, SfuConfig(port_base=0), MediaConfig(), ["127.0.0.1"])
    await worker.bind(0)
    await worker.handle(api.RouterCreate(router_id="r"))
    try:
        yield worker
    finally:
        await worker.shutdown()
