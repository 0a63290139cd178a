"""Clients routed to the node holding their meeting (issue 13, item 3): two nodes on one
PostgreSQL and one Redis (both real). A meeting is placed when it starts; a REST join
through either node answers that node's socket URL; a socket opened on the other node is
told to go there (`redirect`, close 4010), and two bots that start on different nodes
end up in the same meeting on one node, with each other's media."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.cluster_nodes import start_nodes, stop_nodes
from tests.support.redis_server import redis_server  # noqa: F401  (fixture)

pytestmark = [pytest.mark.process, pytest.mark.timeout(150)]


async def test_clients_end_up_on_the_node_that_holds_their_meeting(tmp_path, redis_server,  # noqa: F811
                                                                   postgres_url, signaling_socket):
    started = await start_nodes(tmp_path, postgres_url, redis_server.url)
    (a, _), (b, _) = started
    bots = []
    try:
        meeting = await b.create_meeting("started through b")  # placed on a: equal load, a sorts first
        holder = await b.services.cluster.placements.node_of(meeting["meeting_id"])
        home, away = (a, b) if holder == "a" else (b, a)
        # REST joins through either node answer the holder's socket.
        for server in (a, b):
            server.meetings[meeting["meeting_id"]] = meeting
            joined = await server.join(meeting, "Rest")
            assert joined["ws_url"].startswith(home.base_url.replace("http", "ws", 1) + "/api/v1/meetings/")

        # A socket on the other node: told where to go, then closed.
        away.meetings[meeting["meeting_id"]] = meeting
        socket = await signaling_socket(away.ws_url(meeting))
        await socket.send_join("Lost")
        redirect = await socket.recv_type("redirect")
        assert redirect["url"].startswith(home.base_url.replace("http", "ws", 1))
        assert await socket.expect_close() == 4010
        assert away.services.registry.get(meeting["meeting_id"]) is None  # nothing of it on the other node

        # Bots starting on both nodes meet on one, with each other's media.
        bots = [a.bot(meeting, "via-a"), b.bot(meeting, "via-b")]
        for bot in bots:
            await bot.start(publish_audio=False)
        first, second = bots
        assert first.redirects + second.redirects == 1
        for receiver, sender in ((first, second), (second, first)):
            await receiver.wait_for_frames(sender.participant_id, "camera", count=5, timeout=30)
        live = home.services.registry.get(meeting["meeting_id"])
        assert live is not None and {first.participant_id, second.participant_id} <= set(live.participants)
    finally:
        await asyncio.gather(*(bot.stop() for bot in bots))
        await stop_nodes(started)


async def test_without_redis_a_new_meeting_is_refused_cleanly(tmp_path, redis_server, postgres_url):  # noqa: F811
    started = await start_nodes(tmp_path, postgres_url, redis_server.url, names="a")
    (a, _), = started
    try:
        meeting = await a.create_meeting("scheduled", start=False)
        redis_server.stop()
        status, body, _ = await a.api("POST", f"/meetings/{meeting['number']}/start", token=a._host["token"])
        assert status == 503 and body["error"]["code"] == "cluster_unavailable"
        assert await a.services.store.get_live_session(meeting["meeting_id"]) is None  # nothing started
        redis_server.start()
        for _ in range(100):  # the node registers again by itself (its next heartbeat)
            if "a" in await a.services.cluster.registry.nodes():
                break
            await asyncio.sleep(0.05)
        await a.start_meeting(meeting)  # and starts work again
    finally:
        await stop_nodes(started)
