"""control.meeting.viewer_mix: the control flow of a meeting's viewer mix against the fake
workers (tests/support/fake_workers.py) and a fake recorder channel: made with the first
viewer (recorder job, plain transport, mix producer, a consumer per voice and the
announcer), voices joining and leaving while it runs, the viewers' audio slot switched
to it and back to a microphone when the recorder dies, made again when it returns, and
stopped with the last viewer or the meeting's end."""

from __future__ import annotations

import asyncio

import pytest

from common.channel import ChannelError
from common.messages import Empty, Message
from control.meeting.conference import NOTICE_TRACK_ID
from control.meeting.viewer_mix import ViewerMixes
from control.meeting.viewers import Viewers
from recorder import api as recorder_api
from sfu import api
from tests.control.meeting.test_conference import Setup
from tests.control.meeting.test_viewers import RECORD, token, track

pytestmark = [pytest.mark.unit, pytest.mark.timeout(20)]


class FakeRecorder:
    """What ViewerMixes uses of the recorder supervisor: up, generation, request."""

    def __init__(self) -> None:
        self.up = True
        self.generation = 1
        self.requests: list[Message] = []
        self.refuse: str | None = None  # a request name answered with an error

    async def request(self, message: Message, timeout: float = 10.0) -> Message:
        if not self.up:
            raise ChannelError("recorder_down", "the recorder is not running")
        if message.NAME == self.refuse:
            raise ChannelError("internal", f"{message.NAME} refused")
        self.requests.append(message)
        if isinstance(message, recorder_api.MixStart):
            return recorder_api.MixStarted(message.mix_id, "127.0.0.1", 50000, 4242, 111)
        return Empty()

    def of(self, kind: type[Message]) -> list:
        return [m for m in self.requests if isinstance(m, kind)]


async def settle() -> None:
    for _ in range(200):
        await asyncio.sleep(0)


async def meeting_with_mixes(recorder_up: bool = True):
    s = Setup()
    s.recorder = FakeRecorder()
    s.recorder.up = recorder_up
    s.mixes = ViewerMixes(conference=s.conference, recorder=s.recorder, tasks=s.tasks)
    s.viewers = Viewers(registry=s.registry, conference=s.conference, clock=s.clock, tasks=s.tasks, mixes=s.mixes)
    s.conference.add_listener(s.viewers)
    ann, _ = await s.join("ann")
    bob, _ = await s.join("bob")
    await s.publish(ann, "microphone", "camera")
    await s.publish(bob, "microphone")
    return s, ann, bob


def audio_source(s: Setup, viewer) -> str | None:
    slot = viewer.slots["audio"]
    return s.worker.consumers.get(slot.consumer_id, (None, None))[1]


def mix_voices(s: Setup) -> dict[str, str]:
    """Producer consumed on the mix's plain transport -> its consumer."""
    (transport_id,) = [t for t, (_, kind) in s.worker.transports.items() if kind == "plain"]
    return {p: c for c, (t, p) in s.worker.consumers.items() if t == transport_id}


async def test_the_first_viewer_makes_the_mix_and_its_audio_slot_switches_to_it():
    s, ann, bob = await meeting_with_mixes()
    viewer, _ = await s.viewers.start(RECORD, token(), "offer")
    consumer = viewer.slots["audio"].consumer_id
    await settle()
    mix_producer = s.mixes.producer_for("meeting1")
    assert mix_producer is not None and s.mixes.running() == 1
    created = [m for m in s.worker.requests if isinstance(m, api.PlainProducerCreate)][-1]
    assert (created.source, created.ssrc, created.payload_type) == ("mix", 4242, 111)  # what the recorder sends
    connect = [m for m in s.worker.requests if isinstance(m, api.PlainTransportConnect)][-1]
    assert (connect.remote_ip, connect.remote_port) == ("127.0.0.1", 50000)
    voices = {track(s, ann, "microphone").producer_id, track(s, bob, "microphone").producer_id,
              s.meeting.server_tracks[NOTICE_TRACK_ID].producer_id}  # fmt: skip
    assert set(mix_voices(s)) == voices  # both microphones and the announcer, no camera
    added = s.recorder.of(recorder_api.MixTrackAdd)
    assert len(added) == 3 and len({a.ssrc for a in added}) == 3
    assert [a.track_id for a in added if a.ducks_others] == [NOTICE_TRACK_ID]  # the notice over everyone
    assert audio_source(s, viewer) == mix_producer
    assert viewer.slots["audio"].consumer_id == consumer  # switched on the worker, not remade
    assert s.mixes.events["started"] == 1
    # The mix is nobody's track: the participants are not offered it.
    assert all(mix_producer != t.producer_id for t in s.meeting.forwarded_tracks())


async def test_voices_join_and_leave_the_running_mix():
    s, _, bob = await meeting_with_mixes()
    await s.viewers.start(RECORD, token(), "offer")
    await settle()
    cat, _ = await s.join("cat")
    await s.publish(cat, "microphone", "camera")
    await settle()
    assert track(s, cat, "microphone").producer_id in mix_voices(s)
    assert len(s.recorder.of(recorder_api.MixTrackAdd)) == 4
    bob_mic = track(s, bob, "microphone")
    await s.conference.leave(s.meeting, bob)
    await settle()
    removed = s.recorder.of(recorder_api.MixTrackRemove)
    assert [r.track_id for r in removed] == [bob_mic.track_id]


async def test_a_dead_recorder_sends_viewers_back_to_a_microphone_until_it_returns():
    s, ann, _ = await meeting_with_mixes()
    viewer, _ = await s.viewers.start(RECORD, token(), "offer")
    await settle()
    first_mix = s.mixes.producer_for("meeting1")
    s.recorder.up = False
    s.mixes.recorder_down(1)
    await settle()
    assert s.mixes.producer_for("meeting1") is None and s.mixes.running() == 0
    assert audio_source(s, viewer) == track(s, ann, "microphone").producer_id  # today's fallback
    assert not [k for _, k in s.worker.transports.values() if k == "plain"]  # the mix's transport went
    assert s.mixes.events["lost"] == 1

    s.recorder.up, s.recorder.generation = True, 2
    s.mixes.recorder_up(2)
    await settle()
    second_mix = s.mixes.producer_for("meeting1")
    assert second_mix not in (None, first_mix)
    assert audio_source(s, viewer) == second_mix


async def test_without_a_recorder_the_fallback_holds_and_the_mix_comes_with_it():
    s, ann, _ = await meeting_with_mixes(recorder_up=False)
    viewer, _ = await s.viewers.start(RECORD, token(), "offer")
    await settle()
    assert s.mixes.producer_for("meeting1") is None
    assert audio_source(s, viewer) == track(s, ann, "microphone").producer_id
    s.recorder.up = True
    s.mixes.recorder_up(1)
    await settle()
    assert audio_source(s, viewer) == s.mixes.producer_for("meeting1") is not None


async def test_a_notice_plays_inside_the_mix_without_switching_the_slot():
    s, _, _ = await meeting_with_mixes()
    viewer, _ = await s.viewers.start(RECORD, token(), "offer")
    await settle()
    await s.conference.play(s.meeting, NOTICE_TRACK_ID, ["AAAA"] * 100, None)
    await settle()
    assert audio_source(s, viewer) == s.mixes.producer_for("meeting1")
    play = [m for m in s.worker.requests if isinstance(m, api.NoticePlay)][-1]
    assert play.consumer_ids == []  # to every consumer of the announcer: the mix's among them


async def test_the_last_viewer_leaving_or_the_meetings_end_stops_the_mix():
    s, _, _ = await meeting_with_mixes()
    one, _ = await s.viewers.start(RECORD, token("one"), "offer")
    two, _ = await s.viewers.start(RECORD, token("two"), "offer")
    await settle()
    assert len(s.recorder.of(recorder_api.MixStart)) == 1  # one mix per meeting
    await s.viewers.stop(one, "DELETE")
    await settle()
    assert s.mixes.running() == 1
    await s.viewers.stop(two, "DELETE")
    await settle()
    assert s.mixes.running() == 0 and len(s.recorder.of(recorder_api.MixStop)) == 1
    assert not [k for _, k in s.worker.transports.values() if k == "plain"]

    await s.viewers.start(RECORD, token("three"), "offer")
    await settle()
    assert s.mixes.running() == 1
    await s.viewers.meeting_ended(s.meeting, "ended")
    await settle()
    assert s.mixes.running() == 0 and len(s.recorder.of(recorder_api.MixStop)) == 2
    assert s.mixes.events == {"started": 2, "failed": 0, "lost": 0, "stopped": 2}


async def test_a_failed_start_leaves_nothing_behind_and_is_tried_again_with_the_next_viewer():
    s, ann, _ = await meeting_with_mixes()
    s.recorder.refuse = "MIX_CONNECT"  # after the transport and producer exist
    viewer, _ = await s.viewers.start(RECORD, token("one"), "offer")
    await settle()
    assert s.mixes.running() == 0 and s.mixes.events["failed"] == 1
    assert not [k for _, k in s.worker.transports.values() if k == "plain"]  # undone
    assert len(s.recorder.of(recorder_api.MixStop)) == 1
    assert audio_source(s, viewer) == track(s, ann, "microphone").producer_id
    s.recorder.refuse = None
    await s.viewers.start(RECORD, token("two"), "offer")
    await settle()
    assert s.mixes.running() == 1 and audio_source(s, viewer) == s.mixes.producer_for("meeting1")
