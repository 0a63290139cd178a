"""Nodes of one cluster in this process: each a whole server (control and its worker) on
its own port, announcing its own public URL, sharing one store URL, one Redis and one token
secret (a join token made by one node is checked by another)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from tests.support.seaweed import free_ports
from tests.support.servers import conclave_test_config, start_in_process, stop_in_process


async def start_nodes(tmp_path, store_url: str | None, redis_url: str, names: str = "ab",
                      **sections: dict[str, Any]) -> list:  # fmt: skip
    """[(server, runner)] per name, each subscribed to the cluster's events."""
    token_secret = secrets.token_urlsafe(32)
    started = []
    for name, port in zip(names, free_ports(len(names))):
        store = {"store": {"url": store_url}} if store_url else {}
        cfg = conclave_test_config(
            tmp_path / name, auth={"token_secret": token_secret},
            http={"port": port, "public_url": f"http://127.0.0.1:{port}"},
            cluster={"redis_url": redis_url, "node_id": name, "heartbeat_s": 0.5, "node_ttl_s": 3.0},
            **store, **sections,
        )  # fmt: skip
        started.append(await start_in_process(cfg))
    for server, _ in started:
        await asyncio.wait_for(server.services.cluster.bus.subscribed.wait(), 10)
    return started


async def stop_nodes(started: list) -> None:
    for server, runner in reversed(started):
        await stop_in_process(server, runner)
