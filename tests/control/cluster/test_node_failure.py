"""Node failure, the clients' side (issue 13, item 6): two nodes (`conclave serve`
processes) on one PostgreSQL and one Redis; a meeting held by node A, its host and two
participants (bots) reaching it through node B's REST (the address a load balancer would
give them). A is killed (kill -9): the bots reconnect by themselves through that REST
address, which places the meeting on B once A's heartbeat has expired, and they are back
in as themselves (the host as host, nobody through the waiting room) with each other's
media."""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path

import pytest
import yaml

from client.bot import Bot
from tests.support.redis_server import redis_server  # noqa: F401  (fixture)
from tests.support.seaweed import free_ports
from tests.support.servers import (
    OPERATOR_KEY,
    ServerProcess,
    child_pids,
    kill_if_alive,
    spawn_serve,
    stop_serve,
    wait_ready,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(180)]

NODE_TTL_S = 3.0
BACK_WITHIN_S = NODE_TTL_S + 10.0  # A's key expires first, then the 10 s of the issue
MEDIA_TIMEOUT = 40.0


def node_config(tmp_path: Path, name: str, port: int, store_url: str, redis_url: str, secret: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / name),
        "http": {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}"},
        "sfu": {"workers": 1, "port_base": 0, "listen_ip": "127.0.0.1"},
        "auth": {"operator_key": OPERATOR_KEY, "token_secret": secret},
        "store": {"url": store_url},
        "cluster": {"redis_url": redis_url, "node_id": name, "heartbeat_s": 0.5, "node_ttl_s": NODE_TTL_S},
        "shutdown": {"drain_timeout_s": 0},
        "turn": {"mode": "off"},
        "logging": {"level": "info"},
    }))  # fmt: skip
    return path




async def test_the_clients_of_a_killed_node_come_back_through_another(tmp_path, redis_server, postgres_url):  # noqa: F811
    secret = secrets.token_urlsafe(32)
    port_a, port_b = free_ports(2)
    a = spawn_serve(node_config(tmp_path, "a", port_a, postgres_url, redis_server.url, secret), tmp_path / "a.log")
    a_children = a.worker_pids()
    b: ServerProcess | None = None
    bots: list[Bot] = []
    try:
        await wait_ready(a)
        meeting = await a.create_meeting("Held by a")  # the only node: placed on a
        b = spawn_serve(node_config(tmp_path, "b", port_b, postgres_url, redis_server.url, secret), tmp_path / "b.log")
        await wait_ready(b)
        number = meeting["meeting_number"]
        host = Bot(b.base_url, number, "Host", token=meeting["host_token"])
        bots = [host, Bot(b.base_url, number, "Ada", passcode=meeting["passcode"]),
                Bot(b.base_url, number, "Bob", passcode=meeting["passcode"])]  # fmt: skip
        for bot in bots:
            await bot.start()
            assert bot.ws_url.startswith(f"ws://127.0.0.1:{port_a}/"), bot.ws_url  # b sent them to a
        for bot in bots:
            for other in bots:
                if other is not bot:
                    await bot.wait_for_frames(other.participant_id, "camera", count=5, timeout=MEDIA_TIMEOUT)
        pushes = [len(bot.pushes) for bot in bots]
        frames = {(bot.name, other.participant_id): bot.find_stats(other.participant_id).frames
                  for bot in bots for other in bots if other is not bot}  # fmt: skip

        a_children = sorted(set(a_children) | set(child_pids(a.pid)))
        os.kill(a.pid, signal.SIGKILL)
        a.process.wait()
        killed = time.monotonic()

        for bot in bots:
            await bot.wait_until(lambda b_=bot: b_.reconnects >= 1 and b_.admitted.is_set(), BACK_WITHIN_S, "back in")
            assert bot.ws_url.startswith(f"ws://127.0.0.1:{port_b}/"), bot.ws_url
        for bot in bots:
            for other in bots:
                if other is not bot:
                    left = max(4.0, BACK_WITHIN_S - (time.monotonic() - killed))
                    count = frames[(bot.name, other.participant_id)] + 10
                    await bot.wait_for_frames(other.participant_id, "camera", count=count, timeout=left)
        for bot, since in zip(bots, pushes):
            assert not [m for m in bot.pushes[since:] if m.get("type") == "waiting"], bot.name
        assert host.participant_id == meeting["host_participant_id"]
        roles = {p["participant_id"]: p.get("role") for p in bots[1].participants.values()}
        assert roles.get(host.participant_id) == "host", roles
        assert "Traceback" not in b.log_text()
    finally:
        for bot in bots:
            await bot.stop()
        if b is not None:
            stop_serve(b, b.worker_pids())
        stop_serve(a, a_children)
        for pid in a_children:
            kill_if_alive(pid)
