"""Rate limits every node shares (control.cluster.limits) on a real Redis: a window
reserved atomically for all nodes, given back, emptied by time, and let through (the
node's own limits still apply) while Redis is away; and through two real nodes, wrong
passcodes sent to both count once for the meeting."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from control.cluster.limits import RedisWindows
from control.tasks import BackgroundTasks
from tests.support.cluster_nodes import start_nodes, stop_nodes
from tests.support.redis_server import redis_server  # noqa: F401  (fixture)

pytestmark = [pytest.mark.process, pytest.mark.timeout(90)]


class Node:
    """One node's shared windows, on its own Redis connection."""

    def __init__(self, url: str, window_s: float = 60.0) -> None:
        self.redis = Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.tasks = BackgroundTasks()
        self.windows = RedisWindows(self.redis, self.tasks, window_s=window_s)

    async def close(self) -> None:
        await self.tasks.drain(2.0)
        await self.redis.aclose()


async def test_a_window_is_reserved_for_every_node_at_once_and_given_back(redis_server):  # noqa: F811
    a, b = Node(redis_server.url), Node(redis_server.url)
    try:
        on_a, on_b = a.windows("passcode_per_meeting", 3), b.windows("passcode_per_meeting", 3)
        # Twenty concurrent attempts through two nodes: exactly three places.
        answers = await asyncio.gather(*(w.reserve("m\0192.0.2.1") for w in [on_a, on_b] * 10))
        holds = [(hold, wait) for hold, wait in answers if hold is not None]
        waits = [wait for hold, wait in answers if hold is None]
        assert len(holds) == 3 and len(waits) == 17
        assert all(wait is not None and 0 < wait <= 60 for wait in waits)
        # Another key (another client, another meeting) has its own window.
        assert (await on_b.reserve("m\0203.0.113.9"))[0] is not None
        # A right credential gives its place back, for every node.
        on_a.release("m\0192.0.2.1", holds[0][0])
        await a.tasks.wait(2.0)
        hold, wait = await on_b.reserve("m\0192.0.2.1")
        assert hold is not None and wait is None
        assert (await on_a.reserve("m\0192.0.2.1"))[0] is None
    finally:
        await a.close()
        await b.close()


async def test_attempts_leave_the_window_with_time_and_the_key_expires(redis_server):  # noqa: F811
    node = Node(redis_server.url, window_s=1.0)
    try:
        window = node.windows("joins_per_client", 1)
        assert (await window.reserve("192.0.2.1"))[0] is not None
        assert (await window.reserve("192.0.2.1"))[0] is None
        await asyncio.sleep(1.2)
        assert (await window.reserve("192.0.2.1"))[0] is not None
        await asyncio.sleep(1.2)
        assert await node.redis.keys("conclave:limit:*") == []  # nothing left behind
    finally:
        await node.close()


async def test_while_redis_is_away_a_shared_window_refuses_nobody(redis_server):  # noqa: F811
    node = Node(redis_server.url)
    try:
        window = node.windows("login_per_email", 1)
        assert (await window.reserve("a@example.com\0192.0.2.1"))[0] is not None
        await asyncio.to_thread(redis_server.stop)
        assert await window.reserve("a@example.com\0192.0.2.1") == (None, None)  # the node's own limit decides
        await asyncio.to_thread(redis_server.start)  # empty: the test's Redis keeps nothing on disk
        assert (await window.reserve("a@example.com\0192.0.2.1"))[0] is not None
        assert (await window.reserve("a@example.com\0192.0.2.1"))[1] is not None  # counting again
    finally:
        await node.close()


async def test_wrong_passcodes_through_two_nodes_count_once_for_the_meeting(tmp_path, redis_server,  # noqa: F811
                                                                          postgres_url):
    started = await start_nodes(tmp_path, postgres_url, redis_server.url)
    (a, _), (b, _) = started
    try:
        meeting = await a.create_meeting("guessed at")
        limit = a.services.cfg.auth.passcode_attempts_per_minute
        statuses = []
        for n in range(limit):
            node = (a, b)[n % 2]
            status, body, _ = await node.api("POST", f"/meetings/{meeting['number']}/join",
                                             json_body={"name": "Guesser", "passcode": "000000"})  # fmt: skip
            statuses.append(status)
        assert 429 not in statuses and all(400 <= s < 500 for s in statuses), statuses
        # Each node saw about half of them, the meeting all of them: both refuse now,
        # even the right passcode (a refusal does not say whether it was right).
        for node in (a, b):
            status, body, headers = await node.api("POST", f"/meetings/{meeting['number']}/join",
                                                   json_body={"name": "Guesser", "passcode": meeting["passcode"]})  # fmt: skip
            assert status == 429 and body["error"]["code"] == "rate_limited", (status, body)
            assert 1 <= int(headers["Retry-After"]) <= 60
    finally:
        await stop_nodes(started)
