"""control.meeting.viewers: which track a WHEP viewer's two slots forward (pure choices),
and the service against the fake workers of tests/support/fake_workers.py: a viewer's
transport and offer, its consumers, a source switched on the worker without a new
consumer, the notice taking the audio slot for its length, the cap, the meeting's end."""

from __future__ import annotations

import pytest

from control.meeting.conference import NOTICE_TRACK_ID
from control.meeting.viewers import ViewerRefused, Viewers, choose_audio, choose_video
from control.store.base import MeetingRecord, ViewerToken
from sfu import api
from tests.control.meeting.test_conference import Setup, settle

pytestmark = pytest.mark.unit

RECORD = MeetingRecord(id="meeting1", meeting_number="12345678901", host_id="h", customer_id="c", title="T",
                       passcode="123456")  # fmt: skip


def token(label: str = "lobby") -> ViewerToken:
    return ViewerToken(f"tok-{label}", "meeting1", label, 0.0, 1e12)


def track(s: Setup, participant, source: str):
    return next(t for t in participant.tracks.values() if t.source == source)


async def meeting_with_viewers():
    s = Setup()
    s.viewers = Viewers(registry=s.registry, conference=s.conference, clock=s.clock, tasks=s.tasks)
    s.conference.add_listener(s.viewers)
    s.workers.add_notification_listener(s.viewers.worker_notification)
    ann, ann_peer = await s.join("ann")
    bob, _ = await s.join("bob")
    await s.publish(ann, "microphone", "camera")
    await s.publish(bob, "microphone", "camera")
    return s, ann, ann_peer, bob


def forwarded(s: Setup, viewer) -> dict[str, str | None]:
    """What the fake worker's consumers of the viewer forward, by slot."""
    return {kind: s.worker.consumers.get(slot.consumer_id, (None, None))[1] for kind, slot in viewer.slots.items()}


async def test_choices_screen_first_then_the_hosts_pick_then_the_speaker():
    s, ann, _, bob = await meeting_with_viewers()
    meeting = s.meeting
    assert choose_video(meeting, None) is track(s, ann, "camera")  # nobody spoke: the first camera
    meeting.active_speaker = "bob"
    assert choose_video(meeting, None) is track(s, bob, "camera")
    assert choose_video(meeting, "ann") is track(s, ann, "camera")  # the host's choice wins
    assert choose_audio(meeting, False) is track(s, bob, "microphone")
    assert choose_audio(meeting, True) is meeting.server_tracks[NOTICE_TRACK_ID]
    await s.publish(ann, "microphone", "camera", "screen")
    assert choose_video(meeting, "bob") is track(s, ann, "screen")


async def test_a_viewer_gets_two_slots_that_switch_without_new_consumers():
    s, ann, ann_peer, bob = await meeting_with_viewers()
    viewer, answer = await s.viewers.start(RECORD, token(), "offer")
    assert answer == "answer" and sorted(viewer.slots) == ["audio", "video"]
    assert s.worker.transports[viewer.transport_id] == ("meeting1", "subscribe")
    assert forwarded(s, viewer) == {"audio": track(s, ann, "microphone").producer_id,
                                    "video": track(s, ann, "camera").producer_id}  # fmt: skip
    assert ann_peer.of_type("viewers")[-1] == {"type": "viewers", "count": 1,
                                               "viewers": [{"viewer_id": viewer.viewer_id, "label": "lobby"}]}
    consumers = {slot.consumer_id for slot in viewer.slots.values()}

    s.workers.notify(0, s.meeting.placement.router_id, api.ActiveSpeaker(producer_id=track(s, bob, "microphone").producer_id))
    await settle()
    assert forwarded(s, viewer) == {"audio": track(s, bob, "microphone").producer_id,
                                    "video": track(s, bob, "camera").producer_id}  # fmt: skip
    assert {slot.consumer_id for slot in viewer.slots.values()} == consumers  # switched, not remade
    assert "CONSUMER_SET_PRODUCER" in s.worker.names()

    await s.publish(ann, "microphone", "camera", "screen")
    await settle()
    assert forwarded(s, viewer)["video"] == track(s, ann, "screen").producer_id


async def test_the_notice_takes_the_audio_slot_for_its_length_then_gives_it_back():
    s, ann, _, _ = await meeting_with_viewers()
    viewer, _ = await s.viewers.start(RECORD, token(), "offer")
    announcer = s.meeting.server_tracks[NOTICE_TRACK_ID]
    frames = ["AAAA"] * 100  # 2 s
    await s.conference.play(s.meeting, NOTICE_TRACK_ID, frames, None)
    await settle()
    assert forwarded(s, viewer)["audio"] == announcer.producer_id
    plays = [m for m in s.worker.requests if isinstance(m, api.NoticePlay)]
    assert plays[-1].consumer_ids == [viewer.slots["audio"].consumer_id]  # to the viewer's own slot too
    s.clock.advance(1.0)
    await settle()
    assert forwarded(s, viewer)["audio"] == announcer.producer_id  # still playing
    s.clock.advance(2.0)
    await settle()
    assert forwarded(s, viewer)["audio"] == track(s, ann, "microphone").producer_id


async def test_the_cap_refuses_with_503_and_the_meetings_end_drops_viewers():
    s, _, _, _ = await meeting_with_viewers()
    s.meeting.limits = type(s.meeting.limits)(type(s.meeting.limits.account)(max_viewers_per_meeting=1), 1000)
    await s.viewers.start(RECORD, token("one"), "offer")
    with pytest.raises(ViewerRefused) as full:
        await s.viewers.start(RECORD, token("two"), "offer")
    assert (full.value.status, full.value.code, full.value.outcome) == (503, "viewers_full", "full")
    await s.viewers.meeting_ended(s.meeting, "ended")
    assert s.viewers.count() == 0


async def test_a_gone_source_is_replaced_and_nothing_left_closes_the_slot():
    s, ann, _, bob = await meeting_with_viewers()
    viewer, _ = await s.viewers.start(RECORD, token(), "offer")
    await s.conference.leave(s.meeting, ann)
    await settle()
    assert forwarded(s, viewer)["video"] == track(s, bob, "camera").producer_id
    await s.conference.leave(s.meeting, bob)
    await settle()
    assert viewer.slots["video"].consumer_id is None  # nobody shows anything
    assert forwarded(s, viewer)["audio"] == s.meeting.server_tracks[NOTICE_TRACK_ID].producer_id


async def test_a_player_gone_without_its_delete_is_ended():
    s, _, ann_peer, _ = await meeting_with_viewers()
    stays, _ = await s.viewers.start(RECORD, token("stays"), "offer")
    drops, _ = await s.viewers.start(RECORD, token("drops"), "offer")
    never, _ = await s.viewers.start(RECORD, token("never"), "offer")
    for viewer in (stays, drops):
        s.workers.notify(0, viewer.transport_id, api.TransportStateChanged(state="connected"))
    s.workers.notify(0, drops.transport_id, api.TransportStateChanged(state="disconnected"))  # consent expired
    await settle()
    assert drops.closed and drops.transport_id not in s.worker.transports
    s.clock.advance(31)  # the connect deadline
    await settle()
    assert never.closed and not stays.closed
    assert [v.viewer_id for v in s.viewers.of("meeting1")] == [stays.viewer_id]
    assert ann_peer.of_type("viewers")[-1]["count"] == 1
