"""WHIP ingest (issue 12, item 4; RFC 9725): GStreamer's webrtcbin (RSA certificate,
`actpass`) publishes a test pattern and a tone into a live meeting with the token the host
made; a participant (a bot: aiortc decoding) sees it by name and decodes both; DELETE on
the Location takes it out; a wrong token is 401, a revoked one 403. The protocol's edges
(CORS, content types, PATCH, ETag) with aiortc's offers. The Chromium proofs are in
tests/control/static/test_ingest.py."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection, VideoStreamTrack

from tests.support.ingest import GstWhipPublisher, create_ingest, gstreamer_available, list_ingests

pytestmark = pytest.mark.timeout(120)
needs_gstreamer = pytest.mark.skipif(not gstreamer_available(), reason="needs GStreamer's webrtcbin and python3-gi "
                                     "(scripts/test installs them)")  # fmt: skip


async def whip(method: str, url: str, token: str | None = None, body: str | None = None,
               content_type: str = "application/sdp", **headers: str) -> tuple[int, str, Any]:  # fmt: skip
    sent = dict(headers)
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if body is not None:
        sent["Content-Type"] = content_type
    async with aiohttp.ClientSession() as session, session.request(method, url, data=body, headers=sent) as response:
        return response.status, await response.text(), response.headers


async def aiortc_offer() -> str:
    """A real browser-like offer (actpass, ECDSA): the edges need no media."""
    pc = RTCPeerConnection()
    pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def base(server: Any) -> str:
    return server.base_url


async def viewer(server: Any, meeting: dict[str, Any]) -> Any:
    bot = server.bot(meeting, "viewer")
    await bot.start(publish_audio=False, publish_video=False)
    return bot


@needs_gstreamer
async def test_webrtcbin_publishes_into_the_meeting_until_its_session_is_deleted(conclave_server):
    meeting = await conclave_server.create_meeting()
    made = await create_ingest(conclave_server, meeting, "whip", "Studio encoder")
    assert made["whip_url"] == f"{base(conclave_server)}/whip/{meeting['meeting_number']}"
    bot = await viewer(conclave_server, meeting)
    publisher = await GstWhipPublisher(made["whip_url"], made["token"]).start()
    try:
        answered = await publisher.answered()
        assert answered["status"] == 201 and answered["etag"]
        assert "a=ice-lite" in answered["answer"] and "a=setup:passive" in answered["answer"]
        session_id = answered["location"].rsplit("/", 1)[1]
        assert answered["location"] == f"/whip/{meeting['meeting_number']}/sessions/{session_id}"
        await publisher.wait_event("connection", state="connected")
        await bot.wait_until(lambda: session_id in bot.participants, 10, "the ingest listed")
        assert bot.participants[session_id]["name"] == "Studio encoder"
        video = await bot.wait_for_frames(session_id, "camera", count=20, timeout=30)
        audio = await bot.wait_for_frames(session_id, "microphone", count=50, timeout=30)
        assert (video.width, video.height) == (320, 240) and audio.peak > 0
        [listed] = await list_ingests(conclave_server, meeting)
        assert (listed["connected"], listed["participant_id"], listed["state"]) == (True, session_id, "active")

        location = base(conclave_server) + answered["location"]
        assert (await whip("DELETE", location))[0] == 401
        assert (await whip("DELETE", location, token="not-a-token"))[0] == 401
        status, _, headers = await whip("DELETE", location, token=made["token"])
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
        await bot.wait_until(lambda: session_id not in bot.participants, 10, "the ingest gone")
        assert (await whip("DELETE", location, token=made["token"]))[0] == 404
        [listed] = await list_ingests(conclave_server, meeting)
        assert (listed["connected"], listed["state"]) == (False, "active")  # the token may publish again
    finally:
        await publisher.stop()
        await bot.stop()


@needs_gstreamer
async def test_a_revoked_token_takes_the_stream_out_and_is_refused(conclave_server):
    meeting = await conclave_server.create_meeting()
    made = await create_ingest(conclave_server, meeting, "whip", "OBS")
    bot = await viewer(conclave_server, meeting)
    first = await GstWhipPublisher(made["whip_url"], made["token"]).start()
    again = None
    try:
        session_id = (await first.answered())["location"].rsplit("/", 1)[1]
        await bot.wait_for_frames(session_id, "camera", count=5, timeout=30)
        revoked = await conclave_server.call(
            "DELETE", f"/meetings/{meeting['number']}/ingests/{made['id']}", token=meeting["host_session"]
        )
        assert revoked["state"] == "revoked"
        await bot.wait_until(lambda: session_id not in bot.participants, 10, "the ingest gone")
        again = await GstWhipPublisher(made["whip_url"], made["token"]).start()
        refused = await again.wait_event("refused")
        assert refused["status"] == 403 and "ingest_revoked" in refused["body"]
    finally:
        await first.stop()
        if again is not None:
            await again.stop()
        await bot.stop()


async def test_whip_edges_cors_content_types_patch_and_etag(conclave_server):
    meeting = await conclave_server.create_meeting()
    made = await create_ingest(conclave_server, meeting, "whip", "edge")
    url, token = made["whip_url"], made["token"]
    offer = await aiortc_offer()

    status, _, headers = await whip("OPTIONS", url, Origin="https://studio.example",
                                    **{"Access-Control-Request-Method": "POST"})  # fmt: skip
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in headers["Access-Control-Allow-Methods"] and "DELETE" in headers["Access-Control-Allow-Methods"]
    assert {"Authorization", "Content-Type"} <= {h.strip() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"Location", "Link"} <= {h.strip() for h in headers["Access-Control-Expose-Headers"].split(",")}

    status, _, headers = await whip("POST", url, body=offer)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert (await whip("POST", url, token="x.y.z", body=offer))[0] == 401
    status, text, _ = await whip("POST", url, token=token, body=offer, content_type="text/plain")
    assert status == 415 and "unsupported_media_type" in text
    status, text, _ = await whip("POST", url, token=token, body="hello")
    assert status == 400 and "bad_sdp" in text
    broken = "\r\n".join(line for line in offer.split("\r\n") if not line.startswith("a=ice-ufrag"))
    status, text, _ = await whip("POST", url, token=token, body=broken)
    assert status == 400 and "ice-ufrag" in text
    assert (await list_ingests(conclave_server, meeting))[0]["connected"] is False  # nobody left behind
    assert (await whip("POST", f"{base(conclave_server)}/whip/000-0000-0000", token=token, body=offer))[0] == 404

    status, answer, headers = await whip("POST", url, token=token, body=offer)
    assert status == 201 and "a=setup:passive" in answer and headers["Content-Type"].startswith("application/sdp")
    location, etag = base(conclave_server) + headers["Location"], headers["ETag"]
    ufrag = next(line for line in offer.split("\r\n") if line.startswith("a=ice-ufrag:"))
    trickle = f"{ufrag}\r\na=ice-pwd:whatever\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n" \
              "a=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host\r\n"  # fmt: skip
    fragment = "application/trickle-ice-sdpfrag"
    assert (await whip("PATCH", location, token=token, body=trickle, content_type=fragment, **{"If-Match": etag}))[0] == 204
    restart = trickle.replace(ufrag, "a=ice-ufrag:another")
    status, text, _ = await whip("PATCH", location, token=token, body=restart, content_type=fragment, **{"If-Match": "*"})
    assert status == 422 and "ice_restart_unsupported" in text
    assert (await whip("PATCH", location, token=token, body=trickle, content_type=fragment,
                       **{"If-Match": '"stale"'}))[0] == 412  # fmt: skip
    assert (await whip("PATCH", location, token=token, body=trickle))[0] == 415
    assert (await whip("DELETE", location, token=token))[0] == 200


async def test_an_ended_meeting_or_a_suspended_host_stops_the_token(conclave_server):
    host = await conclave_server.new_host()
    meeting = await conclave_server.create_meeting(host=host)
    made = await create_ingest(conclave_server, meeting, "whip", "cam")
    offer = await aiortc_offer()
    assert (await whip("POST", made["whip_url"], token=made["token"], body=offer))[0] == 201
    await conclave_server.call("POST", f"/hosts/{host['host_id']}/suspend", token=conclave_server.operator_key)
    await asyncio.sleep(0.2)  # the ended meeting's listeners write the store
    [ended] = await list_ingests(conclave_server, {**meeting, "host_session": conclave_server.operator_key})
    assert (ended["state"], ended["end_reason"], ended["connected"]) == ("ended", "meeting_ended", False)
    status, text, _ = await whip("POST", made["whip_url"], token=made["token"], body=offer)
    assert status == 403, text
    await conclave_server.call("POST", f"/hosts/{host['host_id']}/unsuspend", token=conclave_server.operator_key)
    status, text, _ = await whip("POST", made["whip_url"], token=made["token"], body=offer)
    assert status == 403 and "ingest_revoked" in text  # ended with its live session: never again


async def test_an_ingest_token_is_for_its_meeting_only(conclave_server):
    first = await conclave_server.create_meeting()
    second = await conclave_server.create_meeting()
    made = await create_ingest(conclave_server, first, "whip", "cam")
    offer = await aiortc_offer()
    status, text, _ = await whip("POST", f"{base(conclave_server)}/whip/{second['meeting_number']}",
                                 token=made["token"], body=offer)  # fmt: skip
    assert status == 401 and "another meeting" in text


async def test_a_new_session_replaces_the_ingests_last_and_links_name_the_turn_server(conclave_server_factory):
    server = await conclave_server_factory(turn={"mode": "external", "urls": ("turn:127.0.0.1:3478?transport=udp",),
                                                 "secret": "a-turn-secret-for-tests"})  # fmt: skip
    meeting = await server.create_meeting()
    made = await create_ingest(server, meeting, "whip", "encoder")
    status, _, first = await whip("POST", made["whip_url"], token=made["token"], body=await aiortc_offer())
    assert status == 201
    [link] = first.getall("Link")
    assert link.startswith('<turn:127.0.0.1:3478?transport=udp>; rel="ice-server"; username="')
    assert 'credential-type="password"' in link
    status, _, second = await whip("POST", made["whip_url"], token=made["token"], body=await aiortc_offer())
    assert status == 201 and second["Location"] != first["Location"]
    assert (await whip("DELETE", base(server) + first["Location"], token=made["token"]))[0] == 404  # gone
    [listed] = await list_ingests(server, meeting)
    assert listed["participant_id"] == second["Location"].rsplit("/", 1)[1]
    live = server.services.registry.get(meeting["meeting_id"])
    assert [p.name for p in live.participants.values()].count("encoder") == 1
