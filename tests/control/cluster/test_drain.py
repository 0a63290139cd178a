"""Draining a node (issue 13, item 5) with the operator's command line: two nodes on one
PostgreSQL and one Redis (both real), a meeting of two bots on one of them. `conclave drain
--timeout 1` there: after the timeout both bots are told to reconnect to the other node
and receive each other's media again there within 10 s; `conclave cluster status`
shows the drained node draining; a new meeting is placed on the other node."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from tests.support.cluster_nodes import start_nodes, stop_nodes
from tests.support.redis_server import redis_server  # noqa: F401  (fixture)
from tests.support.servers import OPERATOR_KEY

pytestmark = [pytest.mark.process, pytest.mark.timeout(150)]

BACK_WITHIN_S = 10.0


async def conclave(server, *args: str) -> str:
    """`conclave ARGS --server ... --operator-key ...`, as the operator types it."""
    command = [sys.executable, "-m", "control.cli", *args, "--server", server.base_url, "--operator-key", OPERATOR_KEY]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_a_drained_nodes_meeting_goes_on_on_the_other_node(tmp_path, redis_server, postgres_url):  # noqa: F811
    started = await start_nodes(tmp_path, postgres_url, redis_server.url)
    (a, _), (b, _) = started
    bots = []
    try:
        meeting = await a.create_meeting("to be drained")
        holder = await a.services.cluster.placements.node_of(meeting["meeting_id"])
        home, other = (a, b) if holder == "a" else (b, a)
        home.meetings[meeting["meeting_id"]] = meeting
        bots = [home.bot(meeting, "ann", tone_hz=440.0), home.bot(meeting, "bob", tone_hz=880.0)]
        for bot in bots:
            await bot.start(publish_audio=False)
        ann, bob = bots
        await ann.wait_for_frames(bob.participant_id, "camera", count=5, timeout=30)

        out = await conclave(home, "drain", "--timeout", "1")
        assert f"node {holder} is draining" in out
        loop = asyncio.get_running_loop()
        drained_at = loop.time()
        status = await conclave(home, "cluster", "status")
        rows = {line.split()[0]: line.split() for line in status.splitlines()[1:] if line.strip()}
        assert rows[holder][2] == "yes" and rows[other.services.cluster.node_id][2] == "no"  # DRAINING

        await asyncio.wait_for(home.services.drain.wait(), 10)
        assert home.services.drain.handed_over == 1
        for receiver, sender in ((ann, bob), (bob, ann)):
            before = receiver.received[sender.participant_id]["camera"].counted_frames
            while receiver.reconnects < 1 or receiver.received[sender.participant_id]["camera"].counted_frames < before + 5:
                assert loop.time() - drained_at < 1 + BACK_WITHIN_S, f"{receiver.name}: no media again after the drain"
                await asyncio.sleep(0.2)
        other_socket = other.base_url.replace("http", "ws", 1)
        assert ann.ws_url.startswith(other_socket) and bob.ws_url.startswith(other_socket)  # told where to go
        live = other.services.registry.get(meeting["meeting_id"])
        assert live is not None and {ann.participant_id, bob.participant_id} <= set(live.participants)
        assert home.services.registry.get(meeting["meeting_id"]) is None

        fresh = await home.create_meeting("after the drain")
        assert await home.services.cluster.placements.node_of(fresh["meeting_id"]) == other.services.cluster.node_id
    finally:
        await asyncio.gather(*(bot.stop() for bot in bots))
        await stop_nodes(started)


async def test_a_stopping_node_hands_its_meeting_to_the_other(tmp_path, redis_server, postgres_url):  # noqa: F811
    """What SIGTERM does (aiohttp's shutdown, run here by the runner's cleanup): with
    `shutdown.drain_timeout_s` 0 the meeting moves at once instead of ending."""
    started = await start_nodes(tmp_path, postgres_url, redis_server.url, shutdown={"drain_timeout_s": 0.0})
    (a, _), (b, _) = started
    bots = []
    try:
        meeting = await a.create_meeting("its node stops")
        holder = await a.services.cluster.placements.node_of(meeting["meeting_id"])
        index = 0 if holder == "a" else 1
        (home, runner), (other, _) = started[index], started[1 - index]
        home.meetings[meeting["meeting_id"]] = meeting
        bots = [home.bot(meeting, "ann"), home.bot(meeting, "bob")]
        for bot in bots:
            await bot.start(publish_audio=False)
        ann, bob = bots
        await ann.wait_for_frames(bob.participant_id, "camera", count=5, timeout=30)

        started.pop(index)
        loop = asyncio.get_running_loop()
        stopped_at = loop.time()
        await stop_nodes([(home, runner)])
        assert await other.services.store.get_live_session(meeting["meeting_id"]) is not None  # not ended
        for receiver, sender in ((ann, bob), (bob, ann)):
            before = receiver.received[sender.participant_id]["camera"].counted_frames
            while receiver.received[sender.participant_id]["camera"].counted_frames < before + 5:
                assert loop.time() - stopped_at < BACK_WITHIN_S, f"{receiver.name}: no media after the node stopped"
                await asyncio.sleep(0.2)
        live = other.services.registry.get(meeting["meeting_id"])
        assert live is not None and {ann.participant_id, bob.participant_id} <= set(live.participants)
    finally:
        await asyncio.gather(*(bot.stop() for bot in bots))
        await stop_nodes(started)
