"""Two nodes on one PostgreSQL and one Redis (both real): what the operator or a host does
through one node reaches a meeting that runs on the other, within 2 s (issue 13's proof
"operator suspend issued on node A ends the host's meeting running on node B")."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from tests.support.redis_server import redis_server  # noqa: F401  (fixture)
from tests.support.servers import OPERATOR_KEY, conclave_test_config, start_in_process, stop_in_process

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

REACH_S = 2.0


async def start_node(tmp_path, name: str, store_url: str, redis_url: str, token_secret: str):
    cfg = conclave_test_config(
        tmp_path / name, store={"url": store_url}, auth={"token_secret": token_secret},
        cluster={"redis_url": redis_url, "node_id": name, "heartbeat_s": 0.2, "node_ttl_s": 1.0},
    )  # fmt: skip
    return await start_in_process(cfg)


async def test_a_suspension_and_an_end_through_node_a_reach_the_meeting_on_node_b(tmp_path, redis_server,  # noqa: F811
                                                                                  postgres_url, signaling_socket):
    token_secret = secrets.token_urlsafe(32)  # the nodes' join tokens must verify on every node
    started = [await start_node(tmp_path, name, postgres_url, redis_server.url, token_secret) for name in "ab"]
    (a, _), (b, _) = started
    try:
        for server in (a, b):
            await asyncio.wait_for(server.services.cluster.bus.subscribed.wait(), 10)
        assert set(await a.services.cluster.registry.nodes()) == {"a", "b"}

        # A meeting on b, a participant connected to b; the operator suspends its host through a.
        host = await b.new_host()
        meeting = await b.create_meeting("on node b", host=host)
        pat = await signaling_socket(b.ws_url(meeting))
        await pat.join("Pat")
        loop = asyncio.get_running_loop()
        asked = loop.time()
        await a.call("POST", f"/hosts/{host['host_id']}/suspend", token=OPERATOR_KEY)
        ended = await pat.recv_type("meeting_ended", timeout=REACH_S)
        assert ended["reason"] == "host_suspended" and loop.time() - asked < REACH_S
        assert await pat.expect_close() == 4002
        assert b.services.registry.get(meeting["meeting_id"]) is None

        # Another host's meeting on b, ended by the operator through a.
        other = await b.new_host()
        second = await b.create_meeting("also on b", host=other)
        sam = await signaling_socket(b.ws_url(second))
        await sam.join("Sam")
        await a.call("POST", f"/meetings/{second['number']}/end", token=OPERATOR_KEY)
        assert (await sam.recv_type("meeting_ended", timeout=REACH_S))["reason"] == "ended_by_operator"
        assert b.services.cluster.bus.received >= 2 and b.services.cluster.bus.handler_errors == 0
    finally:
        for server, runner in reversed(started):
            await stop_in_process(server, runner)
