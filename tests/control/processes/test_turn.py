"""The managed coturn, for real: control starts it from its 0600 file, the credentials a
`joined` carries are accepted, wrong and expired ones are refused, the relay reaches the
SFU's address and nothing else, the metrics follow its log, and a killed coturn comes back."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from control.processes.turn_secrets import meeting_secret
from control.processes.turn_settings import credential
from tests.support.turn import Peer, coturn_available, turn_test_settings, uclient

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(not coturn_available(), reason="needs coturn (apt-get install coturn)"),
    pytest.mark.timeout(120),
]


async def wait_for(predicate, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_coturn_accepts_joined_credentials_and_refuses_wrong_and_expired(conclave_server_factory, signaling_socket):
    server = await conclave_server_factory(turn=turn_test_settings())
    turn = server.services.turn
    assert await turn.wait_up(15), "coturn did not start"
    settings = turn.settings
    port = settings.port
    # The secret is in the 0600 file only: not on coturn's command line, not in its environment.
    cmdline = open(f"/proc/{turn.pid}/cmdline", "rb").read()
    environ = open(f"/proc/{turn.pid}/environ", "rb").read()
    assert settings.secret.encode() not in cmdline and settings.secret.encode() not in environ

    # What a participant gets in `joined`, over a real signaling socket.
    meeting = await server.create_meeting()
    joined = await (await signaling_socket(server.ws_url(meeting["meeting_id"]))).join("Ada")
    [entry] = joined["ice_servers"]
    assert entry["urls"] == [f"turn:127.0.0.1:{port}?transport=udp", f"turn:127.0.0.1:{port}?transport=tcp"]
    expiry, participant_id = entry["username"].split(":")
    assert participant_id == joined["participant_id"]
    # The meeting may last the customer's max_meeting_minutes from its start, no longer.
    assert time.time() < int(expiry) <= time.time() + 60 * 24 * 60 + 5

    async with Peer("127.0.0.1") as peer:  # the SFU's address (sfu.listen_ip)
        code, out = await uclient(port, entry["username"], entry["credential"], ("127.0.0.1", peer.port))
        assert code == 0, out
        code, out = await uclient(port, entry["username"], entry["credential"], ("127.0.0.1", peer.port), tcp=True)
        assert code == 0, out
        await wait_for(lambda: turn.log.allocations_total >= 2, what="allocations in the log")

        failures = turn.log.auth_failures_total
        wrong = credential("another-secret-entirely", "p1", int(time.time()) + 600)
        code, out = await uclient(port, *wrong, ("127.0.0.1", peer.port), timeout=10)
        assert code != 0 and "Cannot complete Allocation" in out, out
        # Signed with the server's own secret: not a meeting's, refused (coturn has none static).
        code, out = await uclient(port, *credential(settings.secret, "p1", int(time.time()) + 600),
                                  ("127.0.0.1", peer.port), timeout=10)  # fmt: skip
        assert code != 0 and "Cannot complete Allocation" in out, out
        live_session_id = server.services.registry.get(meeting["meeting_id"]).live_session_id
        expired = credential(meeting_secret(settings.secret, live_session_id), "p1", int(time.time()) - 5)
        code, out = await uclient(port, *expired, ("127.0.0.1", peer.port), timeout=10)
        assert code != 0 and "Cannot complete Allocation" in out, out
        await wait_for(lambda: turn.log.auth_failures_total > failures, what="refusals in the log")

    async with Peer("127.0.0.2") as outsider:  # loopback, but not the SFU's address
        code, out = await uclient(port, entry["username"], entry["credential"], ("127.0.0.2", outsider.port),
                                  timeout=10)  # fmt: skip
        assert code != 0 and "403 (Forbidden IP)" in out, out
        await wait_for(lambda: turn.log.peers_denied_total >= 1, what="the denied peer in the log")

    text = server.services.metrics.render().decode()
    assert "conclave_turn_up 1.0" in text
    assert f"conclave_turn_allocations_opened_total {float(turn.log.allocations_total)}" in text
    assert turn.log.allocations_total >= 2 and turn.log.auth_failures_total >= 2

    # Killed: restarted (with backoff), up again.
    first = turn.pid
    os.kill(first, signal.SIGKILL)
    await wait_for(lambda: turn.pid not in (None, first) and turn.up, timeout=20, what="coturn restarted")
    assert turn.restarts == 1
    assert "conclave_turn_restarts_total 1.0" in server.services.metrics.render().decode()


async def test_a_meeting_credential_stops_working_when_its_meeting_ends(conclave_server_factory, signaling_socket):
    server = await conclave_server_factory(turn=turn_test_settings())
    turn = server.services.turn
    assert await turn.wait_up(15), "coturn did not start"
    first = await server.create_meeting()
    second = await server.create_meeting(host=await server.new_host())  # one live meeting per host
    ada = (await (await signaling_socket(server.ws_url(first["meeting_id"]))).join("Ada"))["ice_servers"][0]
    bob = (await (await signaling_socket(server.ws_url(second["meeting_id"]))).join("Bob"))["ice_servers"][0]
    assert turn.secrets.granted == 2
    async with Peer("127.0.0.1") as peer:
        for entry in (ada, bob):
            code, out = await uclient(turn.settings.port, entry["username"], entry["credential"], ("127.0.0.1", peer.port))
            assert code == 0, out
        # The first meeting ends: Ada's credential (hours from its expiry) is refused from
        # now on, by coturn itself; the other meeting's still works.
        await server.call("POST", f"/meetings/{first['number']}/end", token=first["host_token"])
        assert turn.secrets.granted == 1
        code, out = await uclient(turn.settings.port, ada["username"], ada["credential"], ("127.0.0.1", peer.port),
                                  timeout=10)  # fmt: skip
        assert code != 0 and "Cannot complete Allocation" in out, out
        code, out = await uclient(turn.settings.port, bob["username"], bob["credential"], ("127.0.0.1", peer.port))
        assert code == 0, out
        # Started again, the first meeting is a new live session with a new secret: the
        # credential of its last session stays refused, a new one works.
        await server.start_meeting(first)
        again = (await (await signaling_socket(server.ws_url(first["meeting_id"]))).join("Ada"))["ice_servers"][0]
        code, out = await uclient(turn.settings.port, ada["username"], ada["credential"], ("127.0.0.1", peer.port),
                                  timeout=10)  # fmt: skip
        assert code != 0 and "Cannot complete Allocation" in out, out
        code, out = await uclient(turn.settings.port, again["username"], again["credential"], ("127.0.0.1", peer.port))
        assert code == 0, out


async def test_bots_relay_only_exchange_media_through_the_managed_coturn(conclave_server_factory):
    """The bot SDK with iceTransportPolicy relay: its only path to the SFU is coturn."""
    server = await conclave_server_factory(turn=turn_test_settings())
    turn = server.services.turn
    assert await turn.wait_up(15), "coturn did not start"
    meeting = await server.create_meeting()
    ada, bob = server.bot(meeting, "Ada", relay_only=True), server.bot(meeting, "Bob", relay_only=True)
    try:
        await ada.start()
        await bob.start()
        await bob.wait_for_frames(ada.participant_id, "camera", count=5, timeout=30)
        await ada.wait_for_frames(bob.participant_id, "camera", count=5, timeout=30)
        await ada.wait_for_frames(bob.participant_id, "microphone", count=10, timeout=30)
        # Both peer connections of both bots are relayed: four allocations at least.
        assert turn.log.allocations >= 4, turn.log.allocations
    finally:
        await asyncio.gather(ada.stop(), bob.stop(), return_exceptions=True)
