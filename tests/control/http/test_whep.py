"""WHEP playback over HTTP (control/http/whep.py, control/meeting/viewers.py) with a real
server and worker, the player being aiortc (no browser: tests/control/test_whep_playback.py
has Chromium and GStreamer decoding): the host's viewer tokens, the player's POST / DELETE
/ PATCH / OPTIONS and every refusal as JSON with the status a WHEP client expects; the
participants hear of viewers; the meeting's end and a revoked token end them."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.whep import aiortc_offer, viewer_token, whep

pytestmark = pytest.mark.timeout(60)


async def wait_until(predicate, what: str, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_player_starts_and_ends_a_session_and_participants_hear_of_it(conclave_server):
    server = conclave_server
    meeting = await server.create_meeting()
    host = server.bot(meeting, "Hana", token=meeting["host_token"])
    await host.start()
    pc, offer = await aiortc_offer()
    try:
        issued = await viewer_token(server, meeting, "Lobby screen")
        assert issued["whep_url"] == f"/whep/{meeting['number']}" and issued["token"].count(".") == 2
        status, answer, headers = await whep(server, "POST", issued["whep_url"], token=issued["token"], body=offer)
        assert status == 201, answer
        assert headers["Content-Type"].startswith("application/sdp") and "a=ice-lite" in answer
        assert headers["Access-Control-Allow-Origin"] == "*" and "Location" in headers["Access-Control-Expose-Headers"]
        location = headers["Location"]
        assert location.startswith(issued["whep_url"] + "/")
        viewers = server.services.viewers
        assert viewers.count() == 1

        def told(count: int):
            return lambda: any(p.get("type") == "viewers" and p.get("count") == count for p in host.pushes)

        await wait_until(told(1), "the host to hear of the viewer")
        seen = next(p for p in reversed(host.pushes) if p.get("type") == "viewers")
        assert seen["viewers"][0]["label"] == "Lobby screen"
        listed = await server.call("GET", f"/meetings/{meeting['number']}/viewers", token=meeting["host_session"])
        assert listed["count"] == 1

        trickle = "a=ice-ufrag:x\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n"
        status, _, _ = await whep(server, "PATCH", location, token=issued["token"], body=trickle,
                                  content_type="application/trickle-ice-sdpfrag")  # fmt: skip
        assert status == 204
        other = await viewer_token(server, meeting, "someone else")
        status, body, _ = await whep(server, "DELETE", location, token=other["token"])
        assert status == 403 and '"forbidden"' in body  # only the session's own token ends it
        status, _, _ = await whep(server, "DELETE", location, token=issued["token"])
        assert status == 200 and viewers.count() == 0
        await wait_until(told(0), "the host to hear the viewer left")
        status, _, _ = await whep(server, "DELETE", location, token=issued["token"])
        assert status == 404
        metrics = (await server.api("GET", "/../../metrics"))[1]
        assert "conclave_whep_viewers 0.0" in metrics
        assert 'conclave_whep_sessions_total{outcome="started"} 1.0' in metrics
    finally:
        await pc.close()
        await host.stop()


async def test_refusals_are_json_with_the_status_a_whep_client_expects(conclave_server_factory):
    server = await conclave_server_factory()
    host = await server.new_host(limits={"max_viewers_per_meeting": 1, "max_live_meetings_per_host": 5})
    meeting = await server.create_meeting(host=host)
    elsewhere = await server.create_meeting(host=host)
    path = f"/whep/{meeting['number']}"
    issued = await viewer_token(server, meeting)
    foreign = await viewer_token(server, elsewhere)
    pc, offer = await aiortc_offer()
    try:
        status, _, headers = await whep(server, "OPTIONS", path)
        assert status == 204 and "POST" in headers["Access-Control-Allow-Methods"]
        assert "Authorization" in headers["Access-Control-Allow-Headers"] and headers["Accept-Post"] == "application/sdp"
        cases = [
            ("wrong type", dict(token=issued["token"], body=offer, content_type="text/plain"), 415),
            ("no token", dict(body=offer), 401),
            ("not a token", dict(token="nonsense", body=offer), 401),
            ("another meeting's", dict(token=foreign["token"], body=offer), 403),
            ("not SDP", dict(token=issued["token"], body="hello"), 400),
            ("malformed SDP", dict(token=issued["token"], body="v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"), 400),
        ]
        for what, request, expected in cases:
            status, body, headers = await whep(server, "POST", path, **request)
            assert status == expected, (what, status, body)
            assert '"error"' in body and headers["Access-Control-Allow-Origin"] == "*", what
        status, _, _ = await whep(server, "POST", "/whep/00000000000", token=issued["token"], body=offer)
        assert status == 404

        status, answer, headers = await whep(server, "POST", path, token=issued["token"], body=offer)
        assert status == 201, answer
        status, body, headers = await whep(server, "POST", path, token=issued["token"], body=offer)
        assert status == 503 and '"viewers_full"' in body and headers["Retry-After"]

        revoked = await server.call("DELETE", f"/meetings/{meeting['number']}/viewer-tokens/{issued['id']}",
                                    token=meeting["host_session"])  # fmt: skip
        assert revoked["viewers_ended"] == 1 and revoked["revoked_at"]
        assert server.services.viewers.count() == 0
        status, body, _ = await whep(server, "POST", path, token=issued["token"], body=offer)
        assert status == 403 and "revoked" in body
        listed = await server.call("GET", f"/meetings/{meeting['number']}/viewer-tokens", token=meeting["host_session"])
        assert [t["id"] for t in listed["viewer_tokens"]] == [issued["id"]]
        assert "token" not in listed["viewer_tokens"][0]  # shown once, when issued

        await server.call("POST", f"/meetings/{elsewhere['number']}/end", token=elsewhere["host_session"])
        status, body, _ = await whep(server, "POST", f"/whep/{elsewhere['number']}", token=foreign["token"], body=offer)
        assert status == 409 and "meeting_not_live" in body
        metrics = (await server.api("GET", "/../../metrics"))[1]
        for outcome, count in (("full", 1), ("forbidden", 2), ("unauthorized", 2), ("bad_offer", 2), ("not_live", 1)):
            assert f'conclave_whep_sessions_total{{outcome="{outcome}"}} {count}.0' in metrics, outcome
    finally:
        await pc.close()


async def test_the_meeting_ending_ends_its_viewers(conclave_server):
    server = conclave_server
    meeting = await server.create_meeting()
    issued = await viewer_token(server, meeting)
    pc, offer = await aiortc_offer()
    try:
        status, _, _ = await whep(server, "POST", issued["whep_url"], token=issued["token"], body=offer)
        assert status == 201 and server.services.viewers.count() == 1
        await server.call("POST", f"/meetings/{meeting['number']}/end", token=meeting["host_session"])
        await wait_until(lambda: server.services.viewers.count() == 0, "the viewer to be ended")
    finally:
        await pc.close()


async def test_only_the_host_issues_viewer_tokens(conclave_server):
    server = conclave_server
    meeting = await server.create_meeting()
    guest = await server.join(meeting, "Gus")
    path = f"/meetings/{meeting['number']}/viewer-tokens"
    status, body, _ = await server.api("POST", path, token=guest["token"], json_body={"label": "x"})
    assert status == 403, body
    status, body, _ = await server.api("POST", path, token=meeting["host_session"], json_body={})
    assert status == 400 and body["error"]["code"] == "invalid_field"


async def test_a_suspended_customer_ends_the_viewers_and_stops_the_tokens(conclave_server):
    server = conclave_server
    host = await server.new_host(limits={"max_live_meetings_per_host": 5})
    meeting = await server.create_meeting(host=host)
    issued = await viewer_token(server, meeting)
    pc, offer = await aiortc_offer()
    try:
        status, _, _ = await whep(server, "POST", issued["whep_url"], token=issued["token"], body=offer)
        assert status == 201 and server.services.viewers.count() == 1
        await server.call("POST", f"/customers/{host['customer_id']}/suspend", token=server.operator_key)
        await wait_until(lambda: server.services.viewers.count() == 0, "the viewer to be ended")
        status, body, _ = await whep(server, "POST", issued["whep_url"], token=issued["token"], body=offer)
        assert status == 403 and "suspended" in body
    finally:
        await pc.close()
