"""Webinars with bots against the real server (control + SFU worker, 127.0.0.1): an
attendee joins receive-only and receives the host, raises a hand, is promoted and its
media reaches everyone, is demoted and its tracks stop for everyone; its publish attempt
as an attendee is refused; the REST equivalents and the setting; the recording notice and
consent hold an attendee as they hold everyone."""

import asyncio

import pytest

from client.signaling import SignalingError
from tests.control.recording.test_service import NOTICE_FRAMES, frames, recording_host, wait_state

pytestmark = pytest.mark.timeout(120)

FRAMES = 5


async def webinar(server):
    meeting = await server.create_meeting("webinar", attendees_publish=False)
    host = server.bot(meeting, "host", token=meeting["host_token"])
    return meeting, host


async def test_an_attendee_receives_raises_a_hand_is_promoted_then_demoted(conclave_server):
    meeting, host = await webinar(conclave_server)
    ann = conclave_server.bot(meeting, "ann")
    viewer = conclave_server.bot(meeting, "viewer")
    bots = [host, ann, viewer]
    try:
        await host.start(publish_audio=False)
        await ann.start(publish_audio=False)
        await viewer.start(publish_audio=False)
        assert ann.stage.may_publish is False and ann.publisher is None  # receive-only
        await ann.wait_for_frames(host.participant_id, "camera", count=FRAMES, timeout=30)

        await ann.raise_hand()
        await host.wait_until(lambda: host.stage.hand_ids() == [ann.participant_id], 10, "ann's hand")
        assert host.stage.hands[0]["name"] == "ann" and ann.stage.hand_raised

        await host.promote(ann.participant_id)
        await ann.wait_may_publish(True, timeout=20)
        assert ann.stage.role == "speaker" and not ann.stage.hand_raised
        assert host.stage.speakers == [ann.participant_id] and host.stage.hands == []
        for receiver in (host, viewer):
            await receiver.wait_for_frames(ann.participant_id, "camera", count=FRAMES, timeout=30)

        await host.demote(ann.participant_id)
        await ann.wait_may_publish(False, timeout=20)
        for receiver in (host, viewer):
            stats = receiver.find_stats(ann.participant_id, "camera")
            await receiver.wait_until(lambda stats=stats: not stats.active, 10, "ann's camera to stop")
            assert not any(t["participant_id"] == ann.participant_id for t in receiver.remote_tracks.values())
        # Still in the meeting, still receiving the host.
        before = ann.find_stats(host.participant_id, "camera").frames
        await ann.wait_for_frames(host.participant_id, "camera", count=before + FRAMES, timeout=30)
    finally:
        await asyncio.gather(*(bot.stop() for bot in bots))


async def test_an_attendees_publish_and_stage_changes_are_refused_by_the_server(conclave_server):
    meeting, host = await webinar(conclave_server)
    ann = conclave_server.bot(meeting, "ann")
    bob = conclave_server.bot(meeting, "bob")
    try:
        await host.start(publish_audio=False, publish_video=False)
        await ann.start(publish_audio=False, publish_video=False)
        await bob.start(publish_audio=False, publish_video=False)
        with pytest.raises(SignalingError) as refused:  # an offer as a browser would make it
            await ann.signaling.request({"type": "publish", "sdp": "v=0", "tracks": []}, expect=("publish_answer",))
        assert refused.value.code == "not_a_speaker"
        with pytest.raises(SignalingError) as refused:
            await ann.promote(bob.participant_id)
        assert refused.value.code == "forbidden"
        with pytest.raises(SignalingError) as refused:
            await host.demote(host.participant_id)
        assert refused.value.code == "cannot_demote_host"
        with pytest.raises(SignalingError) as refused:
            await host.promote("not an id")
        assert refused.value.code == "invalid_field"
    finally:
        await asyncio.gather(*(bot.stop() for bot in (host, ann, bob)))


async def test_rest_sets_the_webinar_and_promotes_and_demotes(conclave_server):
    server = conclave_server
    meeting, host = await webinar(server)
    number, hs = meeting["number"], meeting["host_session"]
    assert (await server.call("GET", f"/meetings/{number}", token=hs))["attendees_publish"] is False
    assert (await server.join(meeting, "peek"))["may_publish"] is False
    ann = server.bot(meeting, "ann")
    try:
        await host.start(publish_audio=False, publish_video=False)
        await ann.start(publish_audio=False)
        promoted = await server.call("POST", f"/meetings/{number}/participants/{ann.participant_id}/promote", token=hs)
        assert promoted["stage_role"] == "speaker"
        await ann.wait_may_publish(True, timeout=20)
        await host.wait_for_frames(ann.participant_id, "camera", count=FRAMES, timeout=30)
        listed = await server.call("GET", f"/meetings/{number}/participants", token=hs)
        roles = {p["participant_id"]: p.get("stage_role") for p in listed["admitted"]}  # "peek" never connected
        assert roles[ann.participant_id] == "speaker" and roles[meeting["host_participant_id"]] == "host"
        await server.call("POST", f"/meetings/{number}/participants/{ann.participant_id}/demote", token=hs)
        await ann.wait_may_publish(False, timeout=20)
        refused = await server.call("POST", f"/meetings/{number}/participants/{meeting['host_participant_id']}/demote",
                                    token=hs, expect=409)  # fmt: skip
        assert refused["error"]["code"] == "cannot_demote_host"
        # Everyone may publish from now on: the attendee is told and publishes by itself.
        changed = await server.call("PATCH", f"/meetings/{number}", token=hs, json_body={"attendees_publish": True})
        assert changed["attendees_publish"] is True
        await ann.wait_may_publish(True, timeout=20)
        bad = await server.call("PATCH", f"/meetings/{number}", token=hs, json_body={"attendees_publish": "no"},
                                expect=400)  # fmt: skip
        assert bad["error"]["code"] == "invalid_field"
    finally:
        await asyncio.gather(host.stop(), ann.stop())


async def test_the_recording_notice_and_consent_hold_an_attendee_as_everyone(conclave_server, tmp_path):
    server = conclave_server
    owner = await recording_host(server, tmp_path / "storage", consent_policy="require")
    meeting = await server.create_meeting("recorded webinar", host=owner, attendees_publish=False)
    host = server.bot(meeting, "host", token=meeting["host_token"])
    ann = server.bot(meeting, "ann")
    try:
        await host.start(publish_video=False)
        await host.signaling.request({"type": "recording", "action": "start"}, timeout=30)
        await wait_state(host, True)
        # An attendee joining a recorded webinar is told and hears the notice like anyone.
        await ann.start(publish_video=False)
        assert (await wait_state(ann, True))["consent_required"] is True
        await ann.wait_for_frames(None, "announcement", NOTICE_FRAMES, timeout=15)
        # Promoted before consenting: it publishes, and nothing of it reaches anyone yet.
        await host.promote(ann.participant_id)
        await ann.wait_may_publish(True, timeout=20)
        await asyncio.sleep(2.0)
        assert frames(host, ann.participant_id, "microphone") == 0
        assert (await ann.signaling.request({"type": "consent", "decision": "continue"}))["type"] == "ok"
        await host.wait_for_frames(ann.participant_id, "microphone", 25, timeout=15)
        rows = await server.services.store.list_consent(meeting["meeting_id"])
        assert {r.participant_id: r.decision for r in rows}.get(ann.participant_id) == "continued"
    finally:
        await asyncio.gather(host.stop(), ann.stop())
