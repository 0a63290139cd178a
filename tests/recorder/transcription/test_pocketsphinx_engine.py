"""PocketSphinxEngine on real speech made here with espeak-ng (22.05 kHz), placed at known
offsets in silence: a hinted phrase comes out exactly at the right time, speech that is not
a hint is not forced into one, the event loop keeps running while it decodes, and two
participants' transcripts merge into one WebVTT/JSON transcript with their names."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import subprocess
import wave

import av
import numpy as np
import pytest

from recorder.transcription import (
    PocketSphinxEngine,
    TranscriptionError,
    merge,
    place,
    to_json,
    to_webvtt,
)
from recorder.transcription.audio import ogg_opus_bytes, to_speech_pcm
from recorder.transcription import pocketsphinx_engine
from recorder.transcription.pocketsphinx_engine import (
    normalize_phrase,
    speech_regions,
    transcribe_blocking,
)
from tests.support.webvtt import parse_webvtt

NOTICE = "the meeting is being recorded"
REVIEW = "welcome to the quarterly review"
# Not hints, must not come out as one (the second did, with pocketsphinx's default beams).
OTHER = "the weather is nice today"
SIMILAR = "please send me the slides tomorrow"
HINTS = [NOTICE, REVIEW, "Alice Smith", "zxqv blorptang"]  # the last is not in the dictionary
TOLERANCE_S = 0.5

pytestmark = [
    pytest.mark.process,  # a transcription worker process, speech made by espeak-ng
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
]


def speak(text: str, voice: str | None = None) -> tuple[np.ndarray, int]:
    """espeak-ng's rendering of text: int16 mono and its sample rate (22050)."""
    command = ["espeak-ng", "--stdout", *(["-v", voice] if voice else []), text]
    wav = subprocess.run(command, capture_output=True, check=True, timeout=30).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        assert reader.getnchannels() == 1 and reader.getsampwidth() == 2
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype=np.int16)
        return samples, reader.getframerate()


def in_silence(seconds: float, placed: list[tuple[float, str, str | None]]) -> tuple[np.ndarray, int]:
    """seconds of silence with each (offset, text, voice) spoken at its offset."""
    rendered = [(offset, *speak(text, voice)) for offset, text, voice in placed]
    rate = rendered[0][2]
    audio = np.zeros(int(seconds * rate), dtype=np.int16)
    for offset, speech, speech_rate in rendered:
        assert speech_rate == rate
        first = int(offset * rate)
        audio[first : first + speech.size] = speech
    return audio, rate


@pytest.fixture
async def engine():
    engine = PocketSphinxEngine()
    try:
        yield engine
    finally:
        await engine.close()


async def test_hinted_phrase_is_exact_at_its_offset_and_other_speech_is_not_forced(engine):
    audio, rate = in_silence(11.0, [(2.5, NOTICE, None), (5.5, OTHER, None), (8.0, SIMILAR, "en-us")])
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    ticking = asyncio.create_task(ticker())
    try:
        segments = await engine.transcribe(audio, rate, HINTS)
    finally:
        done.set()
        await ticking
    # Decoding takes seconds; a loop blocked by it would have ticked once or twice.
    assert ticks > 20
    assert len(segments) == 3, segments
    notice, other, similar = segments
    assert notice.text == NOTICE
    assert abs(notice.start - 2.5) <= TOLERANCE_S and notice.end > notice.start
    assert abs(other.start - 5.5) <= TOLERANCE_S
    assert abs(similar.start - 8.0) <= TOLERANCE_S
    for segment in (other, similar):
        assert segment.text and segment.text not in {NOTICE, REVIEW, "Alice Smith"}


async def test_without_hints_the_language_model_transcribes_with_times(engine):
    audio, rate = in_silence(4.0, [(1.0, NOTICE, None)])
    [segment] = await engine.transcribe(audio, rate, [])
    # The default LM is poor on espeak speech: only the timing is asserted.
    assert segment.text
    assert abs(segment.start - 1.0) <= TOLERANCE_S and segment.start < segment.end <= 4.0


async def test_two_participants_merge_into_one_transcript_with_names(engine):
    # Alice's track as espeak wrote it (22.05 kHz int16); Bob's as the recorder would have
    # it: another voice, sent as Opus (24 kbit/s) and decoded to 48 kHz float stereo.
    # Each track starts at its own offset on the meeting timeline.
    alice_audio, alice_rate = in_silence(4.0, [(1.0, NOTICE, None)])
    bob_mono, bob_rate = in_silence(4.0, [(0.5, REVIEW, "en-us")])
    with av.open(io.BytesIO(ogg_opus_bytes(to_speech_pcm(bob_mono, bob_rate), bitrate=24000))) as ogg:
        bob_48k = np.concatenate([frame.to_ndarray().reshape(-1) for frame in ogg.decode(audio=0)])
    bob_audio = np.stack([bob_48k, bob_48k], axis=1)
    alice, bob = await asyncio.gather(
        engine.transcribe(alice_audio, alice_rate, HINTS),
        engine.transcribe(bob_audio, 48000, HINTS),
    )
    transcript = merge([place(alice, "Alice", offset=3.0), place(bob, "Bob", offset=1.25)])
    assert [(s.speaker, s.text) for s in transcript] == [("Bob", REVIEW), ("Alice", NOTICE)]
    bob_segment, alice_segment = transcript
    assert abs(bob_segment.start - 1.75) <= TOLERANCE_S  # 1.25 + 0.5
    assert abs(alice_segment.start - 4.0) <= TOLERANCE_S  # 3.0 + 1.0

    notes, cues = parse_webvtt(to_webvtt(transcript))
    assert notes == ["Transcripts may be incomplete or inaccurate."]
    assert [(cue["speaker"], cue["text"]) for cue in cues] == [("Bob", REVIEW), ("Alice", NOTICE)]
    assert [cue["start"] for cue in cues] == [bob_segment.start, alice_segment.start]

    document = to_json(transcript, {"meeting_id": "m-1", "engine": engine.name})
    assert document["speakers"] == ["Alice", "Bob"]
    assert [(item["speaker"], item["text"], item["start"]) for item in document["segments"]] == [
        ("Bob", REVIEW, bob_segment.start),
        ("Alice", NOTICE, alice_segment.start),
    ]
    assert document["disclaimer"] == "Transcripts may be incomplete or inaccurate."


async def test_silence_and_empty_audio_give_no_segments(engine):
    assert await engine.transcribe(np.zeros(0, dtype=np.int16), 16000, HINTS) == []
    assert await engine.transcribe(np.zeros(32000, dtype=np.float32), 16000, []) == []


def test_speech_regions_follow_the_speech():
    audio, rate = in_silence(6.0, [(1.0, NOTICE, None), (4.0, "hello", None)])
    # The endpointer works at 16 kHz: hand it what the engine would.
    regions = speech_regions(to_speech_pcm(audio, rate))
    assert len(regions) == 2
    assert abs(regions[0].first / 16000 - 1.0) <= TOLERANCE_S
    assert abs(regions[1].first / 16000 - 4.0) <= TOLERANCE_S
    assert all(region.last > region.first for region in regions)


def test_grammars_of_past_meetings_are_forgotten():
    # In this process, as a worker would: eight grammars are kept, the ninth evicts them.
    silence = np.zeros(1600, dtype=np.int16)
    numbers = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    for number in numbers:
        assert transcribe_blocking(silence, 16000, (NOTICE, f"Meeting {number}!")) == []
    grammars = pocketsphinx_engine._state["grammars"]
    assert len(grammars) == 1
    [kept] = grammars.values()
    assert kept.phrases == {NOTICE: NOTICE, "meeting nine": "Meeting nine!"}
    assert kept.phones[NOTICE] == 21


def test_hints_are_normalized_to_dictionary_words():
    assert normalize_phrase("  Alice SMITH, Bob\u2019s  team! ") == ["alice", "smith", "bob's", "team"]
    assert normalize_phrase("42 --") == []


async def test_a_killed_worker_is_an_error_and_the_next_call_starts_a_new_one(engine):
    audio, rate = in_silence(3.0, [(0.5, NOTICE, None)])
    assert [s.text for s in await engine.transcribe(audio, rate, HINTS)] == [NOTICE]
    [worker_pid] = engine.worker_pids()
    os.kill(worker_pid, signal.SIGKILL)
    with pytest.raises(TranscriptionError, match="worker process died"):
        await engine.transcribe(audio, rate, HINTS)
    assert engine.worker_pids() == []
    assert [s.text for s in await engine.transcribe(audio, rate, HINTS)] == [NOTICE]
    assert engine.worker_pids() not in ([], [worker_pid])


async def test_cancelling_a_transcription_stops_its_worker_and_close_stops_the_rest(engine):
    audio, rate = in_silence(4.0, [(1.0, NOTICE, None)])
    await engine.transcribe(audio, rate, [])  # a worker is up and idle
    [first] = engine.worker_pids()
    task = asyncio.create_task(engine.transcribe(audio, rate, []))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.worker_pids() == [] and not process_exists(first)
    await engine.transcribe(audio, rate, [])
    [second] = engine.worker_pids()
    await engine.close()
    assert engine.worker_pids() == [] and not process_exists(second)
    with pytest.raises(RuntimeError, match="closed"):
        await engine.transcribe(audio, rate, [])


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
