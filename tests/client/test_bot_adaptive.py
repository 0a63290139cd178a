"""Adaptive media as the bot SDK sees it (docs/signaling.md, "Adaptive media").

- `client.adaptive.TrackStates` reads the three events (pure).
- Control → bot: what a worker's allocator says of one subscriber (SUBSCRIBER_ALLOCATION,
  handed to control where the worker supervisor hands it) reaches that bot and no other.
- Last-N with real workers: twelve bots publish video, the meeting's last_n is 4, five of
  them speak in turns (espeak-ng speech); afterwards each bot receives the video of exactly
  the four latest speakers other than itself, measured by frames decoded per track over a
  window (a track whose bytes stopped decodes nothing), and is told the others are paused
  for last-N. The worker must have taken ROUTER_SET_LAST_N (control counts what it accepted);
  a worker that refused it would send every bot every video.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from client.adaptive import TrackStates
from sfu import api
from tests.support.bot_processes import BotProcess, BotSpec, Join


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


# Last-N: twelve bots, N = 4; five speak one turn each (seconds after the start), seven never
# do (and publish no audio: twelve bots decoding eleven Opus streams each is a load test of
# aiortc, not of last-N); then a quiet window to measure. The bots run in two child
# processes (tests/support/bot_processes.py): in the test's own process, which runs control
# too, a dozen of them fall seconds behind and lose everything.
SPEAKERS = ["s1", "s2", "s3", "s4", "s5"]
TURN_S = 2.5
TURNS = {name: [(i * TURN_S, (i + 1) * TURN_S)] for i, name in enumerate(SPEAKERS)}
MEASURE_FROM_S, MEASURE_S = len(SPEAKERS) * TURN_S + 1.0, 3.0
LAST_N = 4
QUIET = [f"q{i}" for i in range(1, 8)]
BOT_PROCESSES = 2


def latest_speakers_but(name: str) -> set[str]:
    """The LAST_N most recent speakers other than `name` (s5 spoke last)."""
    return set([s for s in reversed(SPEAKERS) if s != name][:LAST_N])


@pytest.mark.process
@pytest.mark.timeout(240)
async def test_each_bot_receives_the_video_of_the_last_n_speakers_only(conclave_server):
    server = conclave_server
    meeting = await server.create_meeting(last_n=LAST_N)
    join = Join(server.base_url, meeting["meeting_number"], meeting["passcode"])
    names = SPEAKERS + QUIET
    specs = [BotSpec(name, TURNS.get(name, []), publish_audio=name in SPEAKERS) for name in names]
    groups = [BotProcess(join, specs[i::BOT_PROCESSES]) for i in range(BOT_PROCESSES)]
    try:
        ids: dict[str, str] = {}
        for group in groups:
            ids |= {pid: name for name, pid in (await group.start()).items()}
        assert server.services.adaptive.last_n_sent > 0, "the SFU worker did not take ROUTER_SET_LAST_N"
        start = time.monotonic() + 1.0
        moments = [start + MEASURE_FROM_S, start + MEASURE_FROM_S + MEASURE_S]
        results = await asyncio.gather(*(group.run(start, moments) for group in groups))
    finally:
        await asyncio.gather(*(asyncio.to_thread(group.stop) for group in groups))
    before = {name: snap for result in results for name, snap in result[0].items()}
    after = {name: snap for result in results for name, snap in result[1].items()}
    assert set(after) == set(names)
    for name in names:
        expected = latest_speakers_but(name)
        was, now = before[name]["frames"], after[name]["frames"]
        receiving = {ids[pid] for pid, n in now.items() if n > was.get(pid, 0)}
        assert receiving == expected, (name, receiving, was, now)
        cameras, paused = after[name]["cameras"], after[name]["paused"]
        paused_for_last_n = {ids.get(cameras[tid]) for tid, reason in paused.items()
                             if tid in cameras and reason == "last_n"}  # fmt: skip
        assert paused_for_last_n == set(names) - expected - {name}, (name, paused_for_last_n)
