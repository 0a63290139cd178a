"""Adaptive media as the bot SDK sees it (docs/signaling.md, "Adaptive media").

- `client.adaptive.TrackStates` reads the three events (pure).
- Control → bot: what a worker's allocator says of one subscriber (SUBSCRIBER_ALLOCATION,
  handed to control where the worker supervisor hands it) reaches that bot and no other.
- Last-N with real workers: five bots publish video, the meeting's last_n is 2, three of
  them speak in turns (espeak-ng speech); afterwards each bot receives the video of exactly
  the two latest speakers other than itself, measured by frames decoded per track over a
  window. The worker must have taken ROUTER_SET_LAST_N (control counts what it accepted);
  a worker that refused it would send every bot every video.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from client.adaptive import TrackStates
from sfu import api
from tests.support.speech_audio import TurnTakingTrack, speech_samples


@pytest.mark.unit
def test_track_states_follow_pauses_resumes_and_quality():
    states = TrackStates()
    states.handle({"type": "track_quality", "track_id": "t", "spatial": 2, "temporal": 1, "layers": 3, "height": 720,
                   "paused": None})  # fmt: skip
    states.handle({"type": "track_paused", "track_id": "t", "reason": "last_n"})
    states.handle({"type": "track_paused", "track_id": "t", "reason": "last_n"})  # no change
    assert states.paused() == {"t": "last_n"}
    states.handle({"type": "track_resumed", "track_id": "t"})
    states.handle({"type": "track_paused", "track_id": 5})  # not a track: ignored
    state = states["t"]
    assert (state.paused, state.spatial, state.temporal, state.layers, state.height) == (None, 2, 1, 3, 720)
    assert [paused for _, paused in state.changes] == ["last_n", None]
    assert states.paused() == {} and set(states) == {"t"}


def camera_consumer(server, meeting_id: str, subscriber_id: str, publisher_id: str) -> tuple[object, str, str]:
    meeting = server.services.registry.get(meeting_id)
    subscriber = meeting.participants[subscriber_id]
    track = next(t for t in meeting.participants[publisher_id].tracks.values() if t.source == "camera")
    return meeting, subscriber, track.track_id


@pytest.mark.process
@pytest.mark.timeout(90)
async def test_a_bot_hears_what_the_allocator_decided_for_it_only(conclave_server):
    server = conclave_server
    meeting = await server.create_meeting()
    bots = [server.bot(meeting, name, width=512, height=64, fps=10) for name in ("ann", "bob", "cy")]
    try:
        for bot in bots:
            await bot.start(publish_audio=False)
        ann, bob, cy = bots
        await bob.wait_for_frames(ann.participant_id, "camera", count=3, timeout=30)
        live, subscriber, track_id = camera_consumer(server, meeting["meeting_id"], bob.participant_id,
                                                     ann.participant_id)  # fmt: skip
        consumer_id = subscriber.active_consumer_for(track_id).consumer_id
        placement = live.placement

        def allocate(paused: str, spatial: int) -> None:
            entry = {"consumer_id": consumer_id, "spatial": spatial, "temporal": 0, "layers": 1,
                     "height": 64 if spatial == 0 else 0, "paused": paused}  # fmt: skip
            message = api.SubscriberAllocation(estimate_bps=80_000, tracks=[entry])
            server.services.adaptive.worker_notification(placement.worker_index, placement.generation,
                                                         subscriber.subscribe_transport_id, message)  # fmt: skip

        allocate("bandwidth", -1)
        await bob.wait_track_paused(track_id, "bandwidth", timeout=5)
        allocate("", 0)
        await bob.wait_track_paused(track_id, None, timeout=5)
        assert bob.track_states[track_id].height == 64
        assert [p for _, p in bob.track_states[track_id].changes][-2:] == ["bandwidth", None]
        await asyncio.sleep(0.3)  # anything misdirected would have arrived by now
        # The others hear their own allocations (the worker reports each consumer's first
        # decision), never bob's pause.
        for other in (ann, cy):
            assert all("bandwidth" not in [p for _, p in state.changes] for state in other.track_states.values())
    finally:
        await asyncio.gather(*(bot.stop() for bot in bots))


# Last-N: seconds after the start, each speaker's one turn; then a quiet window to measure.
TURNS = {"s1": [(0.0, 2.5)], "s2": [(2.5, 5.0)], "s3": [(5.0, 7.5)]}
MEASURE_FROM_S, MEASURE_S = 8.5, 3.0
LAST_N = 2


def frames_by_sender(bot) -> dict[str, int]:
    return {pid: sources["camera"].frames for pid, sources in bot.received.items() if "camera" in sources}


@pytest.mark.process
@pytest.mark.timeout(180)
async def test_each_bot_receives_the_video_of_the_last_n_speakers_only(conclave_server):
    server = conclave_server
    meeting = await server.create_meeting(last_n=LAST_N)
    speech = speech_samples()
    names = ["s1", "s2", "s3", "q1", "q2"]  # three speak in turns, two never do
    tracks = {name: TurnTakingTrack(TURNS.get(name, []), speech) for name in names}
    bots = {name: server.bot(meeting, name, audio=tracks[name], width=512, height=64, fps=10) for name in names}
    try:
        for bot in bots.values():
            await bot.start()
        assert server.services.adaptive.last_n_sent > 0, "the SFU worker did not take ROUTER_SET_LAST_N"
        ids = {bot.participant_id: name for name, bot in bots.items()}
        start = time.monotonic() + 1.0
        for track in tracks.values():
            track.start(start)
        await asyncio.sleep(start + MEASURE_FROM_S - time.monotonic())
        before = {name: frames_by_sender(bot) for name, bot in bots.items()}
        await asyncio.sleep(MEASURE_S)
        after = {name: frames_by_sender(bot) for name, bot in bots.items()}
        for name, bot in bots.items():
            receiving = {ids[pid] for pid, n in after[name].items() if n > before[name].get(pid, 0)}
            # The latest speakers but themselves: s3 then s2, then s1 for the two who spoke last.
            expected = {"s1": {"s3", "s2"}, "s2": {"s3", "s1"}, "s3": {"s2", "s1"}}.get(name, {"s3", "s2"})
            assert receiving == expected, (name, receiving, before[name], after[name])
            paused = {ids.get(t["participant_id"]) for tid, t in bot.remote_tracks.items()
                      if t["source"] == "camera" and bot.track_states.paused().get(tid) == "last_n"}  # fmt: skip
            assert paused == set(names) - expected - {name}, (name, paused)
    finally:
        await asyncio.gather(*(bot.stop() for bot in bots.values()))
