"""The active speaker end to end: two aiortc bots (client.bot) take turns speaking, with
espeak-ng speech (a synthetic voice where espeak-ng is missing) and silence; aiortc puts
each frame's RFC 6464 level in the audio-level extension, the real SFU worker's detector
decides, control tells everyone `active_speaker`. Everything on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.speech_audio import TurnTakingTrack, speech_samples

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

FOLLOW_WITHIN_S = 1.5
# Seconds after the start: ann, bob, ann (with a 0.3 s pause in her turn), bob.
ANN_TURNS = [(0.0, 3.0), (6.0, 7.5), (7.8, 9.5)]
BOB_TURNS = [(3.0, 6.0), (9.5, 12.0)]
CHANGES = [(0.0, "ann"), (3.0, "bob"), (6.0, "ann"), (9.5, "bob")]  # when each turn starts: who
END_S = 13.0


async def test_active_speaker_follows_two_bots_speaking_in_turns(conclave_server):
    meeting = await conclave_server.create_meeting()
    speech = speech_samples()
    tracks = {"ann": TurnTakingTrack(ANN_TURNS, speech), "bob": TurnTakingTrack(BOB_TURNS, speech)}
    bots = {name: conclave_server.bot(meeting, name, audio=track) for name, track in tracks.items()}
    try:
        for bot in bots.values():
            await bot.start(publish_video=False)
        ann, bob = bots["ann"], bots["bob"]
        ids = {ann.participant_id: "ann", bob.participant_id: "bob"}
        # Both hear each other before anyone speaks (silence, level 127, names nobody).
        await ann.wait_for_frames(bob.participant_id, "microphone", count=25, timeout=30)
        await bob.wait_for_frames(ann.participant_id, "microphone", count=25, timeout=30)
        assert ann.active_speakers == [] and bob.active_speakers == []

        start = time.monotonic() + 0.5
        for track in tracks.values():
            track.start(start)
        await asyncio.sleep(start + END_S - time.monotonic())

        for observer in bots.values():
            changes = [(at - start, ids.get(who, who)) for at, who in observer.active_speakers]
            print(observer.name, [(round(at, 2), who) for at, who in changes])
            # Each turn is followed once, within 1.5 s; nothing else (no flap in the pause).
            assert [who for _, who in changes] == [who for _, who in CHANGES], changes
            for (at, _), (turn, _) in zip(changes, CHANGES):
                assert turn < at <= turn + FOLLOW_WITHIN_S, changes
            assert ids[observer.active_speaker] == "bob"
        scrape = conclave_server.services.metrics.render().decode()
        assert "conclave_sfu_active_speaker_changes_total 4.0" in scrape
    finally:
        await asyncio.gather(*(bot.stop() for bot in bots.values()))
