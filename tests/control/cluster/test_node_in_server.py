"""A server with `cluster.redis_url` (a real redis-server): it registers itself with its
load, says in /readyz and /metrics whether Redis answers, and recovers when Redis returns."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.control.cluster.test_cluster_redis import Node, wait_until
from tests.support.redis_server import redis_server  # noqa: F401  (fixture)

pytestmark = [pytest.mark.process, pytest.mark.timeout(90)]


async def get(server, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.base_url + path) as response:
            return response.status, await response.text()


async def metric(server, name: str) -> float:
    _, text = await get(server, "/metrics")
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples if s.name == name)


async def test_a_server_registers_in_redis_and_reports_it_in_readyz_and_metrics(redis_server,  # noqa: F811
                                                                             conclave_server_factory,
                                                                             signaling_socket):
    server = await conclave_server_factory(cluster={"redis_url": redis_server.url, "node_id": "node-a",
                                                    "heartbeat_s": 0.2, "node_ttl_s": 1.0})  # fmt: skip
    other = Node(redis_server.url, "node-b", participants=3)
    await other.cluster.start()
    try:
        nodes = await other.cluster.registry.nodes()
        assert set(nodes) == {"node-a", "node-b"}
        assert nodes["node-a"].public_url == server.services.cfg.http.public_url
        await wait_until(lambda: _ready_is(server, 200), 20, "/readyz (the recorder starting)")
        assert '"redis": "up"' in (await get(server, "/readyz"))[1]
        await wait_until(lambda: _metric_is(server, "conclave_cluster_nodes", 2), 5, "both nodes in /metrics")
        assert await metric(server, "conclave_cluster_redis_up") == 1

        meeting = await server.create_meeting()
        socket = await signaling_socket(server.ws_url(meeting["meeting_id"]))
        await socket.join("alice")
        await wait_until(lambda: _participants_of(other, "node-a", 1), 5, "node-a's load: one participant")

        redis_server.stop()
        await wait_until(lambda: _ready_is(server, 503), 5, "/readyz failing on Redis")
        status, body = await get(server, "/readyz")
        assert '"failing": ["redis"]' in body
        assert await metric(server, "conclave_cluster_redis_up") == 0
        redis_server.start()
        await wait_until(lambda: _ready_is(server, 200), 10, "/readyz recovering")
        assert "node-a" in await other.cluster.registry.nodes()
    finally:
        await other.cluster.stop()


async def _metric_is(server, name: str, value: float) -> bool:
    return await metric(server, name) == value


async def _ready_is(server, status: int) -> bool:
    return (await get(server, "/readyz"))[0] == status


async def _participants_of(node: Node, node_id: str, count: int) -> bool:
    found = (await node.cluster.registry.nodes()).get(node_id)
    return found is not None and found.participants == count
