"""control.processes.workers, the worker supervisor, with the real SFU worker: crash,
restart, reconnect, health; and /metrics naming every metric."""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp

METRIC_NAMES = [
    "conclave_meetings",
    "conclave_participants",
    "conclave_tracks",
    "conclave_worker_up",
    "conclave_worker_restarts_total",
    "conclave_worker_packets_received_total",
    "conclave_worker_bytes_received_total",
    "conclave_worker_packets_sent_total",
    "conclave_worker_bytes_sent_total",
    "conclave_worker_packets_dropped_total",
    "conclave_worker_nack_requested_total",
    "conclave_worker_nack_answered_total",
    "conclave_sfu_nack_refused_total",
    "conclave_sfu_ice_tcp_connections",
    "conclave_sfu_ice_tcp_dropped_packets_total",
    "conclave_sfu_ice_tcp_framing_errors_total",
    "conclave_worker_pli_sent_total",
    "conclave_worker_pli_received_total",
    "conclave_worker_transports",
    "conclave_worker_producers",
    "conclave_worker_consumers",
    "conclave_event_loop_lag_seconds",
    "conclave_signaling_messages_total",
    "conclave_signaling_errors_total",
]


async def get_text(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            return response.status, await response.text()


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value of every sample line."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    return values


async def wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_metrics_expose_every_name(conclave_server, signaling_socket):
    meeting_id = (await conclave_server.create_meeting())["meeting_id"]
    socket = await signaling_socket(conclave_server.ws_url(meeting_id))
    await socket.join("ann")
    await socket.send("nonsense")
    await socket.recv_type("error")
    await socket.send({"type": "chat", "text": "hi"})
    await socket.recv_type("chat")
    await conclave_server.services.workers.refresh_stats()

    status, text = await get_text(f"{conclave_server.base_url}/metrics")
    assert status == 200
    declared = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    for name in METRIC_NAMES:
        base = name.removesuffix("_total")
        assert name in declared or base in declared, f"{name} missing"
    assert "_created" not in text
    values = samples(text)
    assert values["conclave_meetings"] == 1
    assert values["conclave_participants"] == 1
    assert values["conclave_tracks"] == 0
    assert values['conclave_worker_up{worker="0"}'] == 1
    assert values['conclave_worker_restarts_total{worker="0"}'] == 0
    assert values['conclave_worker_transports{worker="0"}'] == 2  # publish + subscribe
    assert values['conclave_signaling_messages_total{type="chat"}'] == 1
    assert values['conclave_signaling_messages_total{type="invalid"}'] == 1
    assert values['conclave_signaling_errors_total{code="bad_json"}'] == 1
    assert 'conclave_event_loop_lag_seconds{process="control"}' in values
    assert 'conclave_event_loop_lag_seconds{process="worker-0"}' in values


async def test_worker_crash_restarts_and_participants_reconnect(conclave_server, signaling_socket):
    services = conclave_server.services
    worker = services.workers.workers[0]
    meeting = await conclave_server.create_meeting()
    meeting_id = meeting["meeting_id"]
    alice = await signaling_socket(conclave_server.ws_url(meeting_id))
    bob = await signaling_socket(conclave_server.ws_url(meeting_id))
    alice_id = (await alice.join("alice"))["participant_id"]
    await bob.join("bob")
    await alice.send({"type": "chat", "text": "before the crash"})
    old_pid, old_generation = worker.pid, worker.generation

    os.kill(old_pid, signal.SIGKILL)
    reconnects = {}
    for name, socket in (("alice", alice), ("bob", bob)):
        reconnects[name] = reconnect = await socket.recv_type("reconnect")
        assert reconnect["reason"] and reconnect["token"]  # a fresh join token to come back with
        closing = await socket.ws.receive(5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)

    # Control itself stays up; health says so until the worker is back.
    status, _, _ = await conclave_server.api("GET", f"/meetings/{meeting['number']}", token=meeting["host_session"])
    assert status == 200
    await wait_for(lambda: worker.up and worker.generation > old_generation, "the worker to restart")
    assert worker.pid != old_pid and worker.restarts == 1
    status, _ = await get_text(f"{conclave_server.base_url}/healthz")
    assert status == 200

    # Rejoining with the reconnect token: the same participant, straight back in; the
    # router is re-created on the new worker.
    again = await signaling_socket(conclave_server.ws_url(meeting_id))
    joined = await again.join("alice", token=reconnects["alice"]["token"])
    assert joined["participant_id"] == alice_id
    assert [m["text"] for m in joined["chat"]] == ["before the crash"]
    assert services.registry.get(meeting_id).placement.generation == worker.generation

    status, text = await get_text(f"{conclave_server.base_url}/metrics")
    assert samples(text)['conclave_worker_restarts_total{worker="0"}'] == 1


async def test_readiness_is_503_while_the_worker_is_down(conclave_server_factory):
    server = await conclave_server_factory(sfu={"restart_backoff_s": 30.0})
    worker = server.services.workers.workers[0]
    os.kill(worker.pid, signal.SIGKILL)
    await wait_for(lambda: not worker.up, "the worker to be noticed down")
    status, text = await get_text(f"{server.base_url}/readyz")
    assert status == 503 and '"0": "down"' in text and '"failing": ["workers"' in text
    status, _ = await get_text(f"{server.base_url}/healthz")
    assert status == 200  # control itself is alive: nothing to restart
    status, text = await get_text(f"{server.base_url}/metrics")
    assert samples(text)['conclave_worker_up{worker="0"}'] == 0


async def test_hung_worker_is_killed_and_restarted(conclave_server_factory):
    server = await conclave_server_factory(sfu={"stats_interval_s": 0.2})
    worker = server.services.workers.workers[0]
    old_pid, old_generation = worker.pid, worker.generation
    os.kill(old_pid, signal.SIGSTOP)  # alive but answering nothing
    try:
        await wait_for(lambda: worker.generation > old_generation and worker.up, "a fresh worker", timeout=60)
    finally:
        if worker.pid == old_pid:  # never leave a stopped process behind
            os.kill(old_pid, signal.SIGKILL)
    assert worker.restarts == 1
