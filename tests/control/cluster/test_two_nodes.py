"""Two nodes on one PostgreSQL and one Redis (both real): what the operator or a host does
through one node reaches a meeting that runs on the other, within 2 s (issue 13's proof
"operator suspend issued on node A ends the host's meeting running on node B")."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.cluster_nodes import start_nodes, stop_nodes
from tests.support.redis_server import redis_server  # noqa: F401  (fixture)
from tests.support.servers import OPERATOR_KEY

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

REACH_S = 2.0


async def test_a_suspension_and_an_end_through_node_a_reach_the_meeting_on_node_b(tmp_path, redis_server,  # noqa: F811
                                                                                  postgres_url, signaling_socket):
    started = await start_nodes(tmp_path, postgres_url, redis_server.url)
    (a, _), (b, _) = started
    try:
        assert set(await a.services.cluster.registry.nodes()) == {"a", "b"}

        # A meeting, a participant connected to the node holding it; the operator suspends
        # its host through the other node.
        host = await b.new_host()
        meeting = await b.create_meeting("started through b", host=host)
        holder = await b.services.cluster.placements.node_of(meeting["meeting_id"])
        home, away = (a, b) if holder == "a" else (b, a)  # the node holding it, the other one
        home.meetings[meeting["meeting_id"]] = meeting
        pat = await signaling_socket(home.ws_url(meeting))
        await pat.join("Pat")
        loop = asyncio.get_running_loop()
        asked = loop.time()
        await away.call("POST", f"/hosts/{host['host_id']}/suspend", token=OPERATOR_KEY)
        ended = await pat.recv_type("meeting_ended", timeout=REACH_S)
        assert ended["reason"] == "host_suspended" and loop.time() - asked < REACH_S
        assert await pat.expect_close() == 4002
        assert home.services.registry.get(meeting["meeting_id"]) is None

        # Another host's meeting, ended by the operator through the node not holding it.
        other = await home.new_host()
        second = await home.create_meeting("started through the holder", host=other)
        holder = await b.services.cluster.placements.node_of(second["meeting_id"])
        home, away = (a, b) if holder == "a" else (b, a)
        home.meetings[second["meeting_id"]] = second
        sam = await signaling_socket(home.ws_url(second))
        await sam.join("Sam")
        await away.call("POST", f"/meetings/{second['number']}/end", token=OPERATOR_KEY)
        assert (await sam.recv_type("meeting_ended", timeout=REACH_S))["reason"] == "ended_by_operator"
        assert home.services.cluster.bus.received >= 2 and home.services.cluster.bus.handler_errors == 0
    finally:
        await stop_nodes(started)
