"""Restarts end nothing (issue 13, item 7): `conclave serve` stopped (SIGTERM) and
started again on the same data directory and port, during a meeting of one Chromium page
(the host) and two bots, recorded: all three are back in the same meeting with media
within 10 s of the restart, none through the waiting room, the host still host, and the
recording goes on into the next attempt's files (meeting.json lists both attempts and the
gap). Then a kill -9 of the server, with bots only: back the same way."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

from client.bot import Bot
from tests.support import browser
from tests.support.browser_fixtures import chromium  # noqa: F401  (the fixture)
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

pytestmark = pytest.mark.timeout(300)

BACK_WITHIN_S = 10.0  # from the restarted server's first answer
MEDIA_TIMEOUT = 40.0


class Restartable:
    """`conclave serve` on a fixed port (clients come back to the same origin), started
    again on the same configuration; every process it started is stopped at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.port = free_ports(1)[0]
        self.config = tmp_path / "conclave.yaml"
        self.config.write_text(yaml.safe_dump({
            "data_dir": str(tmp_path / "data"),
            "http": {"host": "127.0.0.1", "port": self.port},
            "sfu": {"workers": 1, "port_base": 0, "listen_ip": "127.0.0.1"},
            "auth": {"operator_key": OPERATOR_KEY},
            "outbound": {"allowed_networks": ["127.0.0.0/8", "::1/128"]},
            "recorder": {"segment_seconds": 2.0},
            "logging": {"level": "info"},
            "turn": {"mode": "off"},
        }))  # fmt: skip
        self.runs: list[tuple[ServerProcess, list[int]]] = []

    def start(self) -> ServerProcess:
        server = spawn_serve(self.config, self.tmp_path / f"conclave-serve-{len(self.runs) + 1}.log")
        self.runs.append((server, server.worker_pids()))
        return server

    def kill(self, server: ServerProcess) -> None:
        """kill -9 of the server process alone (its children see their channel close)."""
        os.kill(server.pid, signal.SIGKILL)
        server.process.wait()

    def stop_all(self) -> None:
        for server, children in self.runs:
            stop_serve(server, children)
            for pid in children + child_pids(server.pid):
                kill_if_alive(pid)


@pytest.fixture
def restartable(tmp_path: Path):
    servers = Restartable(tmp_path)
    try:
        yield servers
    finally:
        servers.stop_all()





async def metrics_text(server: ServerProcess) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.base_url + "/metrics") as response:
            return await response.text()


async def wait_files(root: Path, pattern: str, timeout: float = 30.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(root.rglob(pattern))
        if found:
            return found
        await asyncio.sleep(0.3)
    raise AssertionError(f"no {pattern} under {root} within {timeout:.0f}s: {[str(p) for p in root.rglob('*')]}")


async def frames_rise(bot: Bot, participant_id: str, timeout: float) -> None:
    """`participant_id`'s camera reaches `bot` again: 10 frames more than it had."""
    stats = bot.find_stats(participant_id, "camera")
    before = stats.frames if stats is not None else 0
    await bot.wait_for_frames(participant_id, "camera", count=before + 10, timeout=timeout)


def never_waited(bot: Bot, since: int) -> bool:
    return not any(push.get("type") == "waiting" for push in bot.pushes[since:])


async def test_sigterm_and_restart_end_nothing(restartable, chromium, tmp_path):  # noqa: F811
    server = restartable.start()
    storage = tmp_path / "storage"
    owner = await server.new_host(limits={"max_live_meetings_per_host": 2, "max_concurrent_meetings": 2})
    await server.call("PUT", f"/customers/{owner['customer_id']}/storage", token=server.operator_key,
                      json_body={"kind": "local", "root": str(storage)})  # fmt: skip
    meeting = await server.create_meeting("Standup", host=owner, start=False, waiting_room=True)
    host = await browser.open_host_page(chromium, server.base_url, owner["email"], owner["password"])
    await browser.start_from_dashboard(host, meeting["meeting_number"])
    host_id = await browser.participant_id(host)
    bots = [server.bot(meeting, name) for name in ("Ada", "Bob")]
    try:
        for bot in bots:
            await bot.start()
            if not bot.admitted.is_set():  # the waiting room: the host lets them in once
                await browser.wait_waiting_listed(host, bot.participant_id)
                await host.evaluate(f"window.conclave.hostActions.admit({json.dumps(bot.participant_id)})")
                await bot.wait_admitted(20)
        for bot in bots:
            await bot.wait_for_frames(host_id, "camera", count=5, timeout=MEDIA_TIMEOUT)
            await browser.wait_media_from(host, bot.participant_id, timeout=MEDIA_TIMEOUT)
        await host.get_by_test_id("toggle-recording").click()
        await bots[0].wait_recording_state(lambda state: state.recording, timeout=30)
        work = tmp_path / "data" / "recordings"
        await wait_files(work, "*.a0-*")  # the first attempt is being written

        pushes = [len(bot.pushes) for bot in bots]
        assert server.stop() == 0
        again = restartable.start()
        await wait_ready(again)
        started = time.monotonic()

        for bot in bots:  # back, as themselves, straight in
            await bot.wait_until(lambda b=bot: b.reconnects >= 1 and b.admitted.is_set(), BACK_WITHIN_S, "back in")
            await frames_rise(bot, host_id, BACK_WITHIN_S - (time.monotonic() - started) + 2)
        remaining = max(2.0, BACK_WITHIN_S - (time.monotonic() - started))
        await browser.wait_for(host, "window.conclave.state === 'joined'", remaining, what="the host back")
        for bot in bots:
            await browser.wait_media_from(host, bot.participant_id, timeout=max(4.0, BACK_WITHIN_S))
        assert all(never_waited(bot, since) for bot, since in zip(bots, pushes)), "someone was held in the waiting room"
        assert await host.evaluate("window.conclave.role") == "host"
        assert await browser.participant_id(host) == host_id  # the same participant, not a new one
        assert await host.evaluate("window.conclave.reconnects") >= 1
        roles = {p["participant_id"]: p.get("role") for p in bots[0].participants.values()}
        assert roles.get(host_id) == "host" and bots[1].participant_id in roles, roles
        metrics = await metrics_text(again)
        assert "conclave_meetings_resumed_total 1.0" in metrics, metrics
        assert 'conclave_rejoins_total{outcome="admitted"} 3.0' in metrics, metrics

        # The recording went on: the next attempt's files, then its end lists both.
        await wait_files(work, "*.a1-*")
        assert bots[0].recording_state.recording
        await host.get_by_test_id("toggle-recording").click()
        [manifest_path] = await wait_files(storage, "meeting.json", timeout=60)
        manifest = json.loads(manifest_path.read_text())
        attempts = [a["attempt"] for a in manifest["recording"]["attempts"]]
        assert attempts == [0, 1], manifest["recording"]
        segments = [s for track in manifest["tracks"] for s in track["segments"]]
        assert {s["attempt"] for s in segments} == {0, 1}, segments
        [gap] = manifest["recording"]["gaps"]
        assert gap["after_attempt"] == 0 and gap["seconds"] > 0, gap
        # Who was there and who was told, across the restart: once each (the ledger was read back).
        everyone = {host_id, *(bot.participant_id for bot in bots)}
        assert {p["participant_id"] for p in manifest["participants"]} == everyone, manifest["participants"]
        told = [entry["participant_id"] for entry in manifest["consent"]]
        assert sorted(told) == sorted(everyone), manifest["consent"]
        assert "Traceback" not in again.log_text()
    finally:
        for bot in bots:
            await bot.stop()
        await browser.close_page(host)


@pytest.mark.process
async def test_kill_9_and_restart_end_nothing(restartable):
    server = restartable.start()
    meeting = await server.create_meeting("Standup")
    host = Bot(server.base_url, meeting["meeting_number"], "Host", token=meeting["host_token"])
    bots = [host, server.bot(meeting, "Ada"), server.bot(meeting, "Bob")]
    try:
        for bot in bots:
            await bot.start()
        for bot in bots:
            for other in bots:
                if other is not bot:
                    await bot.wait_for_frames(other.participant_id, "camera", count=5, timeout=MEDIA_TIMEOUT)
        pushes = [len(bot.pushes) for bot in bots]
        restartable.kill(server)
        again = restartable.start()
        await wait_ready(again)
        started = time.monotonic()
        for bot in bots:
            await bot.wait_until(lambda b=bot: b.reconnects >= 1 and b.admitted.is_set(), BACK_WITHIN_S, "back in")
        for bot in bots:
            for other in bots:
                if other is not bot:
                    await frames_rise(bot, other.participant_id, max(4.0, BACK_WITHIN_S - (time.monotonic() - started)))
        assert all(never_waited(bot, since) for bot, since in zip(bots, pushes))
        assert host.participant_id == meeting["host_participant_id"]
        seen = {p["participant_id"]: p.get("role") for p in bots[1].participants.values()}
        story = [(m["type"], m.get("participant_id") or (m.get("participant") or {}).get("participant_id"))
                 for m in bots[1].pushes if m["type"].startswith("participant_")]  # fmt: skip
        assert seen.get(host.participant_id) == "host", (seen, story, [b.reconnects for b in bots])
    finally:
        for bot in bots:
            await bot.stop()
