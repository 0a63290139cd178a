"""Publish/subscribe through control and the real worker with aiortc bots (127.0.0.1)."""

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
