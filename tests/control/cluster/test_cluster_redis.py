"""Nodes on a real Redis (Debian's redis-server, started per test): registration with a
heartbeat and a TTL, atomic placement, cross-node events, and Redis going away and back."""

from __future__ import annotations

import asyncio

import pytest

from config import Config
from config.schema import ClusterConfig
from control.cluster.placement import NodeLoad, NoNodeAvailable
from control.cluster.service import Cluster, ClusterUnavailable
from tests.support.redis_server import redis_server  # noqa: F401  (fixture)

pytestmark = [pytest.mark.process, pytest.mark.timeout(60)]

HEARTBEAT_S = 0.1
TTL_S = 0.5


class Node:
    """One node's cluster side, with a load the test sets."""

    def __init__(self, url: str, node_id: str, **load) -> None:
        self.load = NodeLoad(node_id, f"http://{node_id}.test", **load)
        cfg = Config(cluster=ClusterConfig(redis_url=url, node_id=node_id, heartbeat_s=HEARTBEAT_S, node_ttl_s=TTL_S))
        self.cluster = Cluster(cfg, lambda: self.load)


async def started(url: str, *specs: tuple[str, dict]) -> list[Node]:
    nodes = [Node(url, node_id, **load) for node_id, load in specs]
    for node in nodes:
        await node.cluster.start()
    return nodes


async def stop_all(nodes: list[Node]) -> None:
    for node in nodes:
        await node.cluster.stop()


async def wait_until(condition, timeout: float = 5.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        assert loop.time() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.05)


async def test_nodes_see_each_other_and_a_node_that_stops_beating_expires(redis_server):  # noqa: F811
    a, b, c = await started(redis_server.url, ("a", {}), ("b", {"cpu": 0.3}), ("c", {}))
    try:
        assert set(await a.cluster.registry.nodes()) == {"a", "b", "c"}
        assert (await c.cluster.registry.nodes())["b"].cpu == 0.3
        await b.cluster.registry.stop(deregister=False)  # as if killed: no goodbye
        await wait_until(lambda: _lacks(a, "b"), 3 * TTL_S, "b's registration expiring")
        await c.cluster.registry.stop()  # a clean stop leaves at once
        assert set(await a.cluster.registry.nodes()) == {"a"}
    finally:
        await stop_all([a, b, c])


async def _lacks(node: Node, node_id: str) -> bool:
    return node_id not in await node.cluster.registry.nodes()


async def test_concurrent_first_joins_through_three_nodes_place_a_meeting_once(redis_server):  # noqa: F811
    nodes = await started(redis_server.url, ("a", {"participants": 50}), ("b", {"participants": 5}),
                          ("c", {"participants": 1, "draining": True}))  # fmt: skip
    try:
        for meeting in ("m1", "m2", "m3"):
            answers = await asyncio.gather(*(nodes[i % 3].cluster.place(meeting) for i in range(20)))
            assert set(answers) == {"b"}  # the least loaded that is not draining, for all 20
        assert nodes[0].cluster.placements.outcomes["placed"] + nodes[1].cluster.placements.outcomes["placed"] \
            + nodes[2].cluster.placements.outcomes["placed"] == 3  # fmt: skip
        # b dies: its meetings go elsewhere at their next join, once, whoever asks.
        await nodes[1].cluster.registry.stop(deregister=False)
        await wait_until(lambda: _lacks(nodes[0], "b"), 3 * TTL_S, "b expiring")
        answers = await asyncio.gather(*(nodes[i % 2 * 2].cluster.place("m1") for i in range(10)))
        assert set(answers) == {"a"}  # c drains
        replaced = sum(node.cluster.placements.outcomes["replaced"] for node in nodes)
        assert replaced == 1
        # The meeting ends on a: its placement goes, but only a's.
        assert not await nodes[2].cluster.placements.release("m1", "b")
        assert await nodes[0].cluster.placements.release("m1", "a")
        assert await nodes[0].cluster.placements.node_of("m1") is None
    finally:
        await stop_all(nodes)


async def test_with_every_node_draining_a_new_meeting_has_nowhere_to_go(redis_server):  # noqa: F811
    nodes = await started(redis_server.url, ("a", {"draining": True}))
    try:
        with pytest.raises(NoNodeAvailable):
            await nodes[0].cluster.place("m1")
    finally:
        await stop_all(nodes)


async def test_an_event_reaches_the_other_nodes_and_not_its_sender(redis_server):  # noqa: F811
    a, b, c = await started(redis_server.url, ("a", {}), ("b", {}), ("c", {}))
    heard: dict[str, list] = {"a": [], "b": [], "c": []}
    for node in (a, b, c):
        node.cluster.bus.on_event(lambda kind, data, name=node.load.node_id: _record(heard[name], kind, data))
    try:
        for node in (a, b, c):
            await asyncio.wait_for(node.cluster.bus.subscribed.wait(), 5)
        assert await a.cluster.bus.publish("host_suspended", host_id="h1", reason="host_suspended") == 3
        await wait_until(lambda: _filled(heard, "b", "c"), 5, "b and c hearing the event")
        assert heard["b"] == heard["c"] == [("host_suspended", {"host_id": "h1", "reason": "host_suspended"})]
        assert heard["a"] == []
    finally:
        await stop_all([a, b, c])


async def _record(into: list, kind: str, data: dict) -> None:
    into.append((kind, data))


async def _filled(heard: dict, *names: str) -> bool:
    return all(heard[name] for name in names)


async def test_redis_away_then_back_placement_fails_cleanly_and_everything_recovers(redis_server):  # noqa: F811
    a, b = await started(redis_server.url, ("a", {}), ("b", {}))
    heard: list = []
    b.cluster.bus.on_event(lambda kind, data: _record(heard, kind, data))
    try:
        await asyncio.wait_for(b.cluster.bus.subscribed.wait(), 5)
        redis_server.stop()
        with pytest.raises(ClusterUnavailable):
            await a.cluster.place("m1")
        await wait_until(lambda: _unreachable(a), 5, "the heartbeat noticing")
        redis_server.start()  # the same port, empty: the nodes register again by themselves
        await wait_until(lambda: _reachable(a, b), 10, "the heartbeats coming back")
        await asyncio.wait_for(b.cluster.bus.subscribed.wait(), 10)
        assert set(await a.cluster.registry.nodes()) == {"a", "b"}
        assert await a.cluster.place("m1") in {"a", "b"}
        await a.cluster.bus.publish("meeting_ended", meeting_id="m1")
        await wait_until(lambda: _filled({"x": heard}, "x"), 5, "the event after the outage")
    finally:
        await stop_all([a, b])


async def _unreachable(node: Node) -> bool:
    return not node.cluster.reachable


async def _reachable(*nodes: Node) -> bool:
    return all(node.cluster.reachable for node in nodes)
