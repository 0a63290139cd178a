"""The conference with real media (control/meeting/conference.py over a real worker,
aiortc bots on 127.0.0.1): publish and subscribe with renegotiation, the waiting room and
the host's mute, what bots hear when removed or when the meeting ends. The same service
against fake workers is tested in test_conference.py."""

from __future__ import annotations

import asyncio

from client.bot import Bot


def tracks_of(bot: Bot, participant_id: str, active: bool | None = None) -> dict[str, dict]:
    """source -> the latest offer entry for `participant_id`'s tracks on bot's subscribe side."""
    entries = bot.subscriber.tracks.values() if bot.subscriber else []
    return {
        e["source"]: e
        for e in entries
        if e["participant_id"] == participant_id and (active is None or e["active"] is active)
    }


async def test_two_bots_exchange_media_and_renegotiate(conclave_server):
    meeting_id = (await conclave_server.create_meeting())["meeting_id"]
    alice = conclave_server.bot(meeting_id, "alice")
    bob = conclave_server.bot(meeting_id, "bob")
    carol = conclave_server.bot(meeting_id, "carol")
    try:
        await alice.start()
        await bob.start()
        await alice.wait_for_frames(bob.participant_id, "camera", 5, timeout=30)
        await bob.wait_for_frames(alice.participant_id, "camera", 5, timeout=30)
        await bob.wait_until(lambda: alice.find_stats(bob.participant_id, "microphone") is not None, 10, "audio")

        # Offer metadata names the publisher and source of every m-line.
        offered = tracks_of(alice, bob.participant_id)
        assert set(offered) == {"microphone", "camera"}
        assert {offered[s]["kind"] for s in offered} == {"audio", "video"}
        assert set(alice.remote_tracks) == {e["track_id"] for e in offered.values()}

        # Turning one track off renegotiates with that m-line inactive.
        camera_id = offered["camera"]["track_id"]
        await alice.signaling.send({"type": "subscribe", "track_id": camera_id, "enabled": False})
        await alice.wait_until(lambda: "camera" not in tracks_of(alice, bob.participant_id, True), 10, "camera off")
        assert tracks_of(alice, bob.participant_id, True).keys() == {"microphone"}
        await alice.signaling.send({"type": "subscribe", "track_id": camera_id, "enabled": True})
        await alice.wait_until(lambda: "camera" in tracks_of(alice, bob.participant_id, True), 10, "camera on")

        # A late joiner is offered the existing tracks right away.
        await carol.start(publish_audio=False, publish_video=False)
        await carol.wait_for_frames(alice.participant_id, "camera", 3, timeout=30)
        assert set(tracks_of(carol, bob.participant_id, True)) == {"microphone", "camera"}

        # Leaving unpublishes everything of bob for the others.
        bob_tracks = set(tracks_of(carol, bob.participant_id))
        await bob.stop()
        await carol.wait_until(lambda: bob.participant_id not in carol.participants, 10, "bob gone")
        await carol.wait_until(lambda: not tracks_of(carol, bob.participant_id, True), 10, "bob's m-lines inactive")
        assert set(tracks_of(carol, bob.participant_id, False)) == bob_tracks
        assert not [t for t in carol.remote_tracks.values() if t["participant_id"] == bob.participant_id]
        assert alice.errors == [] and carol.errors == []
        await asyncio.sleep(0)
        services = conclave_server.services
        assert services.registry.track_count() == 2  # alice's microphone and camera
    finally:
        for bot in (alice, bob, carol):
            await bot.stop()


async def test_waiting_bot_gets_nothing_until_admitted_then_media_flows_both_ways(conclave_server):
    server = conclave_server
    meeting = await server.create_meeting(waiting_room=True)
    host = server.bot(meeting, "host", token=meeting["host_token"])
    guest = server.bot(meeting, "guest")
    try:
        joined = await host.start()
        assert joined["type"] == "joined" and joined["role"] == "host"
        reply = await guest.start()
        assert reply["type"] == "waiting" and reply["reason"] == "waiting_room"
        assert guest.join_status == "waiting_room" and guest.waiting.is_set()
        await host.wait_until(lambda: [p["name"] for p in host.waiting_room] == ["guest"], 10, "the knock")

        # While the host publishes, the waiting guest gets no media, no offer, no list...
        await guest.signaling.send({"type": "chat", "text": "let me in"})
        await host.wait_until(lambda: host.publisher is not None, 10, "host publishing")
        await asyncio.sleep(2.0)  # give media every chance to (wrongly) arrive
        assert guest.received == {} and guest.subscriber is None and guest.publisher is None
        assert {m["type"] for m in guest.pushes} <= {"waiting", "error"}, guest.pushes
        assert [e["code"] for e in guest.errors] == ["not_admitted"]
        # ...and nothing of the guest reaches the meeting.
        assert guest.participant_id not in host.participants
        assert host.received == {} and host.chat == []
        meeting_state = server.services.registry.get(meeting["meeting_id"])
        waiting = meeting_state.waiting[guest.participant_id]
        assert waiting.publish_transport_id is None and waiting.subscribe_transport_id is None

        await server.call(
            "POST", f"/meetings/{meeting['number']}/participants/{guest.participant_id}/admit",
            token=meeting["host_token"],
        )  # fmt: skip
        await guest.wait_admitted(timeout=20)
        await guest.wait_for_frames(host.participant_id, "camera", count=5, timeout=30)
        await host.wait_for_frames(guest.participant_id, "camera", count=5, timeout=30)
        await host.wait_until(lambda: host.find_stats(guest.participant_id, "microphone") is not None, 20, "audio")
        await guest.wait_until(lambda: guest.find_stats(host.participant_id, "microphone") is not None, 20, "audio")
    finally:
        await guest.stop()
        await host.stop()


async def test_host_mute_stops_forwarding(conclave_server):
    server = conclave_server
    meeting = await server.create_meeting()
    host = server.bot(meeting, "host", token=meeting["host_token"])
    guest = server.bot(meeting, "guest")
    try:
        await host.start(publish_audio=False, publish_video=False)
        await guest.start(publish_audio=False)
        stats = await host.wait_for_frames(guest.participant_id, "camera", count=5, timeout=30)
        await server.call(
            "POST", f"/meetings/{meeting['number']}/participants/{guest.participant_id}/mute",
            token=meeting["host_session"], json_body={"source": "camera", "muted": True},
        )  # fmt: skip
        await guest.wait_until(lambda: "camera" in guest.muted_by_host, 10, "muted_by_host")
        await host.wait_until(
            lambda: host.participants.get(guest.participant_id, {}).get("muted", {}).get("camera") is True,
            10,
            "participants_changed: updated",
        )
        await asyncio.sleep(1.0)  # what was on its way when the producer paused
        paused_at = stats.frames
        await asyncio.sleep(2.0)
        assert stats.frames - paused_at <= 1, "the SFU kept forwarding a camera the host muted"
        # The guest cannot lift it; the host can allow it again, and the guest unmutes.
        await guest.set_muted("camera", False)
        await guest.wait_until(lambda: any(e.get("code") == "muted_by_host" for e in guest.errors), 10, "refusal")
        await server.call(
            "POST", f"/meetings/{meeting['number']}/participants/{guest.participant_id}/mute",
            token=meeting["host_session"], json_body={"source": "camera", "muted": False},
        )  # fmt: skip
        await guest.wait_until(lambda: "camera" not in guest.muted_by_host, 10, "allowed again")
        await guest.set_muted("camera", False)
        await host.wait_for_frames(guest.participant_id, "camera", count=stats.frames + 5, timeout=30)
    finally:
        await guest.stop()
        await host.stop()


async def test_bot_events_when_removed_and_when_the_meeting_ends(conclave_server):
    server = conclave_server
    meeting = await server.create_meeting()
    first = server.bot(meeting, "first")
    second = server.bot(meeting, "second", link_token=meeting["link_token"], passcode=None)
    try:
        await first.start(publish_audio=False, publish_video=False)
        await second.start(publish_audio=False, publish_video=False)
        await server.call(
            "POST", f"/meetings/{meeting['number']}/participants/{first.participant_id}/remove",
            token=meeting["host_session"],
        )  # fmt: skip
        await asyncio.wait_for(first.removed.wait(), 5)
        await server.call("POST", f"/meetings/{meeting['number']}/end", token=meeting["host_session"])
        await asyncio.wait_for(second.meeting_ended.wait(), 5)
        assert second.end_reason == "ended_by_host"
    finally:
        await first.stop()
        await second.stop()


async def test_a_bot_tells_its_tile_sizes_and_a_hidden_single_layer_track_stops(conclave_server_factory):
    # aiortc publishes one layer: the worker takes the tile (CONSUMER_SET_VIEWPORT); the
    # track is forwarded whole whatever the size, and not at all while hidden.
    server = await conclave_server_factory(media={"accept_simulcast": True})
    meeting_id = (await server.create_meeting())["meeting_id"]
    alice = server.bot(meeting_id, "alice")
    bob = server.bot(meeting_id, "bob")
    try:
        await alice.start()
        joined = await bob.start(publish_audio=False, publish_video=False)
        assert joined["simulcast"] is True
        await bob.wait_for_frames(alice.participant_id, "camera", 3, timeout=30)
        camera = tracks_of(bob, alice.participant_id, True)["camera"]["track_id"]
        await bob.set_tile(camera, 320, 180)
        await bob.set_tile("no-such-track", 1, 1)
        before = bob.find_stats(alice.participant_id, "camera").frames
        await bob.wait_for_frames(alice.participant_id, "camera", before + 5, timeout=30)
        await bob.set_tile(camera, 320, 180, visible=False)
        await asyncio.sleep(1.0)  # what was on its way has arrived
        hidden = bob.find_stats(alice.participant_id, "camera").frames
        await asyncio.sleep(1.5)
        assert bob.find_stats(alice.participant_id, "camera").frames == hidden
        await bob.set_tile(camera, 640, 360)
        await bob.wait_for_frames(alice.participant_id, "camera", hidden + 5, timeout=30)
        assert bob.errors == []
    finally:
        for bot in (alice, bob):
            await bot.stop()
