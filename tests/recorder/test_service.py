"""The recorder as a process: control's channel in, real RTP over loopback in, files in
customer storage out (recorder/service.py, session.py, track.py, manifest.py).

Each test runs the real `python -m recorder` on a socketpair channel, as control spawns
it, with a stand-in for the SFU's plain transport sending VP8 and Opus encoded with av
(some packets lost and answered from a cache when NACKed, some reordered) and RTCP
sender reports; storage is a local directory in tmp_path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import signal
import socket
import time
from pathlib import Path

import av
import numpy as np
import pytest

from common.channel import ChannelError
from common.messages import Empty
from common.notices import NOTICE_KINDS, notice_frames
from config.schema import Config, RecorderConfig
from recorder import api
from recorder.media.notice import notice_pcm
from sfu.wire import rtp
from tests.support.recorder_media import AUDIO_RATE, FPS
from tests.support.recorder_process import (
    FakeSfu,
    RecorderProcess,
    make_stream,
    play,
    read_manifest,
    schedule,
    speech,
    storage_files,
)

pytestmark = pytest.mark.process

RECORDING_ID = "rec-0001"
PREFIX = f"recordings/12345678901/{RECORDING_ID}/"
CONTROL_MANIFEST = {
    "meeting": {"id": "m-1", "number": "12345678901", "title": "Weekly"},
    "participants": [
        {"participant_id": "p-alice", "name": "Alice"},
        {"participant_id": "p-bob", "name": "Bob"},
    ],
    "consent": [{"participant_id": "p-bob", "decision": "continued", "channels": ["banner", "audio"]}],
    "chat": [{"from": "Alice", "text": "hello"}],
    "software": {"control": "test"},
}


def recording_start(storage_root: Path, started_at: float, **overrides) -> api.RecordingStart:
    fields = dict(
        recording_id=RECORDING_ID,
        meeting_id="m-1",
        meeting_number="12345678901",
        title="Weekly",
        customer_id="c-1",
        storage={"kind": "local", "root": str(storage_root)},
        key_prefix=PREFIX,
        started_at=started_at,
        segment_seconds=2.0,
    )
    fields.update(overrides)
    return api.RecordingStart(**fields)


def decoded_seconds(path: Path) -> tuple[float, int]:
    """(seconds of decoded media, frames) of a file opened on its own."""
    with av.open(str(path)) as container:
        stream = container.streams[0]
        is_audio = stream.type == "audio"
        frames = list(container.decode(stream))
    if is_audio:
        return sum(f.samples for f in frames) / frames[0].sample_rate, len(frames)
    return len(frames) / FPS, len(frames)


def decode_audio(paths: list[Path]) -> np.ndarray:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
    chunks = []
    for path in paths:
        with av.open(str(path)) as container:
            for frame in container.decode(audio=0):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    return np.concatenate(chunks)


def without_tones(pcm: np.ndarray, freqs: tuple[float, ...], width: float = 20.0) -> np.ndarray:
    """pcm with narrow bands around `freqs` removed (the participants' test tones)."""
    spectrum = np.fft.rfft(pcm)
    bins = np.fft.rfftfreq(len(pcm), 1 / AUDIO_RATE)
    for freq in freqs:
        spectrum[np.abs(bins - freq) < width] = 0
    return np.fft.irfft(spectrum, len(pcm)).astype(np.float32)


def tone_level(pcm: np.ndarray, freq: float, at: float, seconds: float = 0.05) -> float:
    """Amplitude of a sine at `freq` in the `seconds` of pcm from `at`."""
    piece = pcm[int(at * AUDIO_RATE) : int((at + seconds) * AUDIO_RATE)]
    phase = np.exp(-2j * np.pi * freq * np.arange(len(piece)) / AUDIO_RATE)
    return float(2 * abs(np.dot(piece, phase)) / len(piece))


def notice_offset(mix: np.ndarray, tones: tuple[float, ...]) -> tuple[float, float]:
    """Where the recording notice sits in the mix's first seconds, and how strongly
    (normalized cross-correlation of the notice's waveform with the mix, both without
    the bands of the participants' tones, which talk over it)."""
    notice = without_tones(np.array(notice_pcm("recording-started")[0]), tones)
    window = without_tones(mix[: len(notice) + AUDIO_RATE // 2], tones)
    best, best_lag = 0.0, 0
    for lag in range(0, len(window) - len(notice), 48):
        piece = window[lag : lag + len(notice)]
        score = float(np.dot(piece, notice) / (np.linalg.norm(piece) * np.linalg.norm(notice) + 1e-9))
        if score > best:
            best, best_lag = score, lag
    return best_lag / AUDIO_RATE, best


@pytest.mark.timeout(90)
async def test_records_tracks_mix_and_manifest_into_customer_storage(tmp_path):
    storage = tmp_path / "storage"
    # Alice: camera + microphone from 0.3 s; Bob: microphone from 1.3 s (recording time).
    # Each sender's wall clock is its own (the recorder learns how it relates to its own).
    cam = make_stream("alice-cam", "p-alice", "Alice", "video", 4.0, ssrc=1111, sender_epoch=5e8, begin=0.3)
    mic = make_stream("alice-mic", "p-alice", "Alice", "audio", 4.0, ssrc=2222, sender_epoch=5e8, begin=0.3)
    bob = make_stream(
        "bob-mic", "p-bob", "Bob", "audio", 3.0, ssrc=3333, sender_epoch=7e8, begin=1.3, freq=660
    )
    lost = {(1111, i) for i in (5, 40, 41, 90)} | {(2222, i) for i in (20, 21, 100)}
    events = schedule([cam, mic, bob], lose=lost, swap_every=17)
    recorder = await RecorderProcess.start(tmp_path / "data")
    sfu = await FakeSfu.open()
    try:
        started_at = time.time()
        origin = time.monotonic()  # the recording's t=0 on this process's clock
        started = await recorder.request(recording_start(storage, started_at))
        assert isinstance(started, api.RecordingStarted) and started.ip == "127.0.0.1" and started.port > 0
        sfu.destination = (started.ip, started.port)
        await recorder.request(api.RecordingConnect(RECORDING_ID, *sfu.address))
        for stream in (cam, mic):
            assert await recorder.request(stream.track_add(RECORDING_ID)) == Empty()

        async def announce_bob_late() -> None:
            # As with a real worker: the consumer sends before control's TRACK_ADD lands.
            await asyncio.sleep(max(0.0, origin + bob.packets[0][0] + 0.15 - time.monotonic()))
            assert await recorder.request(bob.track_add(RECORDING_ID)) == Empty()

        late = asyncio.create_task(announce_bob_late())
        await play(sfu, events, origin)
        await late

        live = await recorder.stats()
        assert live.gauges["active_recordings"] == 1
        assert live.counters["packets_received"] > 0 and live.gauges["lag_seconds"] < 1.0

        # Bad input is counted and dropped: a copy of a real packet from another local
        # port (not the SFU), and garbage from the SFU's own address.
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            stranger.sendto(next(iter(sfu.cache.values())), sfu.destination)
        finally:
            stranger.close()
        for junk in (b"\x80\xc8\x00\xff" + b"\x00" * 4, b"\x80", b"\xff" * 40):
            sfu.transport.sendto(junk, sfu.destination)
        deadline = time.monotonic() + 5
        while True:
            counters = (await recorder.stats()).counters
            if counters["packets_unknown_peer"] >= 1 and counters["packets_malformed"] >= 1:
                break
            assert time.monotonic() < deadline, counters
            await asyncio.sleep(0.05)

        stopped = await recorder.request(api.RecordingStop(RECORDING_ID, CONTROL_MANIFEST))
        duration = time.time() - started_at
        assert isinstance(stopped, api.RecordingStopped)
        assert abs(stopped.duration - duration) < 0.5
        assert stopped.manifest_key == PREFIX + "meeting.json"

        uploaded = await recorder.wait_for(
            lambda: (
                recorder.of(api.RecordingFileUploaded)
                if any(m.kind == "manifest" for m in recorder.of(api.RecordingFileUploaded))
                else None
            ),
            30,
        )
    finally:
        sfu.close()

    # What the SFU heard back: a PLI for the camera, NACKs for what it lost, reports.
    assert 1111 in sfu.plis
    lost_seqs = {
        (ssrc, rtp.parse_header(stream.packets[i][1]).sequence_number)
        for ssrc, i in lost
        for stream in (cam, mic)
        if stream.ssrc == ssrc
    }
    assert lost_seqs <= set(sfu.nacked)
    assert sfu.resent >= len(lost) and sfu.receiver_reports

    files = storage_files(storage)
    manifest = read_manifest(storage, PREFIX + "meeting.json")
    # Control's part is kept whole; the recorder's part lists every file it made.
    for key, value in CONTROL_MANIFEST.items():
        assert manifest[key] == value
    assert manifest["recording"]["id"] == RECORDING_ID
    assert manifest["recording"]["started_at"] == pytest.approx(started_at)
    assert abs(manifest["recording"]["duration"] - duration) < 0.5
    assert [a["attempt"] for a in manifest["recording"]["attempts"]] == [0]
    assert manifest["recorder"]["version"]
    tracks = {t["track_id"]: t for t in manifest["tracks"]}
    assert set(tracks) == {"alice-cam", "alice-mic", "bob-mic"}
    assert tracks["bob-mic"]["display_name"] == "Bob"
    listed = [s["key"] for t in manifest["tracks"] for s in t["segments"]] + [
        s["key"] for s in manifest["mix"]["segments"]
    ]
    assert set(files) == {*listed, PREFIX + "meeting.json"}

    # Notifications: one per file, telling exactly what storage holds.
    assert {m.key: m.sha256 for m in uploaded} == files
    assert all(m.recording_id == RECORDING_ID for m in uploaded)
    assert sorted(m.kind for m in uploaded if m.kind in ("manifest",)) == ["manifest"]

    # Tracks line up (one sender, one clock) and start where they were sent.
    assert tracks["alice-cam"]["offset"] == pytest.approx(0.3, abs=0.15)
    assert abs(tracks["alice-cam"]["offset"] - tracks["alice-mic"]["offset"]) < 0.1
    assert tracks["bob-mic"]["offset"] == pytest.approx(1.3, abs=0.15)

    # Every file decodes on its own; together the segments hold what was sent.
    video_frames = 0
    for segment in tracks["alice-cam"]["segments"]:
        seconds, frames = decoded_seconds(storage / segment["key"])
        video_frames += frames
    assert video_frames >= cam.frames - 2  # every loss was recovered by a NACK
    assert len(tracks["alice-cam"]["segments"]) >= 2
    for track_id, sent in (("alice-mic", 4.0), ("bob-mic", 3.0)):
        total = sum(decoded_seconds(storage / s["key"])[0] for s in tracks[track_id]["segments"])
        assert abs(total - sent) < 0.2, (track_id, total)
    mix_paths = [storage / s["key"] for s in manifest["mix"]["segments"]]
    mix = decode_audio(mix_paths)
    assert abs(len(mix) / AUDIO_RATE - duration) < 1.0
    offset, score = notice_offset(mix, (440.0, 660.0))
    assert offset < 0.02 and score > 0.8, (offset, score)
    # Bob (660 Hz) is in the mix from 1.3 s to 4.3 s, not before.
    assert tone_level(mix, 660, 1.0) < 0.02
    assert tone_level(mix, 660, 1.6) > 0.1 and tone_level(mix, 660, 3.9) > 0.1

    stats = await recorder.stats()
    try:
        assert stats.gauges["active_recordings"] == 0
        assert stats.counters["segments_flushed"] == len(files)
        assert stats.counters["bytes_written"] == sum((storage / key).stat().st_size for key in files)
        assert stats.counters["nacks_sent"] > 0 and stats.counters["plis_sent"] >= 1
        # Loopback loses nothing: every packet sent (or resent) was received, once.
        assert stats.counters["packets_received"] == sfu.sent_rtp + sfu.resent
        assert stats.counters["upload_attempts"] >= len(files)
        assert stats.gauges["spool_bytes"] == 0
    finally:
        await recorder.stop()
    # No local copy is left once storage confirmed everything.
    assert not (tmp_path / "data" / "recordings" / RECORDING_ID).exists()
    assert not [p for p in (tmp_path / "data" / "spool").iterdir()]


def media_files(data: Path) -> list[str]:
    media = data / "recordings" / RECORDING_ID / "media"
    return sorted(p.name for p in media.iterdir()) if media.is_dir() else []


@pytest.mark.timeout(120)
async def test_kill_9_mid_recording_then_the_next_process_continues_into_new_files(tmp_path):
    storage, data = tmp_path / "storage", tmp_path / "data"
    # Segments of 2 s; the kill comes at 4.4 s. Video has a key frame every half second, so
    # its open segment starts at 2.2-2.7 s; audio's starts at 2.9 s. Both have had at
    # least one second written out (the muxers write a cluster a second).
    cam = make_stream(
        "alice-cam", "p-alice", "Alice", "video", 7.0, ssrc=1111, sender_epoch=5e8, begin=0.2, gop=15
    )
    mic = make_stream("alice-mic", "p-alice", "Alice", "audio", 6.3, ssrc=2222, sender_epoch=5e8, begin=0.9)
    events = schedule([cam, mic])
    sfu = await FakeSfu.open()
    first = await RecorderProcess.start(data)
    second = None
    try:
        started_at, origin = time.time(), time.monotonic()
        start = recording_start(storage, started_at, segment_seconds=2.0)
        started = await first.request(start)
        sfu.destination = (started.ip, started.port)
        await first.request(api.RecordingConnect(RECORDING_ID, *sfu.address))
        for stream in (cam, mic):
            await first.request(stream.track_add(RECORDING_ID))
        sent = await play(sfu, events, origin, until=4.4)
        await first.wait_for(
            lambda: len([m for m in first.of(api.RecordingFileUploaded) if m.kind == "track"]) >= 2, 10
        )

        first.kill()  # kill -9: no chance to close anything
        await first.process.wait()
        killed_at = time.monotonic() - origin
        before = storage_files(storage)
        keys_before = [m.key for m in first.of(api.RecordingFileUploaded)]
        assert set(keys_before) <= set(before) and keys_before
        left = media_files(data)
        assert any(name.endswith(".part") for name in left), left  # the open segments

        # Control's supervisor restarts the recorder and continues the recording.
        second = await RecorderProcess.start(data)
        started = await second.request(recording_start(storage, started_at, segment_seconds=2.0, attempt=1))
        assert not [n for n in media_files(data) if n.endswith(".part")]  # salvaged
        sfu.destination = (started.ip, started.port)
        await second.request(api.RecordingConnect(RECORDING_ID, *sfu.address))
        for stream in (cam, mic):
            await second.request(stream.track_add(RECORDING_ID))
        resumed_at = time.monotonic() - origin
        # What the SFU sent while no recorder listened is gone; the rest arrives.
        await play(sfu, [e for e in events[sent:] if e[0] > resumed_at], origin)
        stopped = await second.request(api.RecordingStop(RECORDING_ID, CONTROL_MANIFEST))
        assert stopped.duration > 6.0
        await second.wait_for(
            lambda: any(m.kind == "manifest" for m in second.of(api.RecordingFileUploaded)), 30
        )
        await second.wait_for(lambda: not (data / "recordings" / RECORDING_ID).exists(), 10)
    finally:
        sfu.close()
        for process in (first, second):
            if process is not None:
                await process.stop()

    after = storage_files(storage)
    # Nothing delivered before the kill was overwritten or removed; no key was used twice.
    assert {key: after[key] for key in before} == before
    keys_after = [m.key for m in second.of(api.RecordingFileUploaded)]
    assert len(set(keys_after)) == len(keys_after) and not set(keys_after) & set(keys_before)
    assert set(after) == set(keys_before) | set(keys_after)

    manifest = read_manifest(storage, PREFIX + "meeting.json")
    assert [a["attempt"] for a in manifest["recording"]["attempts"]] == [0, 1]
    listed = {s["key"]: s for t in manifest["tracks"] for s in t["segments"]}
    listed.update({s["key"]: s for s in manifest["mix"]["segments"]})
    assert set(listed) == set(after) - {PREFIX + "meeting.json"}
    for track in manifest["tracks"]:
        segments = track["segments"]
        attempts = [s["attempt"] for s in segments]
        assert attempts == sorted(attempts) and {0, 1} <= set(attempts), track
        # The segment open at the kill was rebuilt from its .part file (at most the
        # last unflushed second of it is lost) and uploaded by the new process.
        salvaged = [s for s in segments if s["salvaged"]]
        assert len(salvaged) == 1 and salvaged[0]["key"] in keys_after, track
        assert salvaged[0]["end"] > killed_at - 1.5, (salvaged[0], killed_at)
        assert all(".a0-" in s["key"] for s in segments if s["attempt"] == 0)
        assert all(".a1-" in s["key"] for s in segments if s["attempt"] == 1 and not s["salvaged"])
        # In timeline order, without overlaps; the gap is the time no recorder ran.
        for earlier, later in zip(segments, segments[1:], strict=False):
            assert later["start"] >= earlier["end"] - 0.05, (earlier, later)
        for segment in segments:
            seconds, frames = decoded_seconds(storage / segment["key"])
            assert frames > 0 and abs(seconds - (segment["end"] - segment["start"])) < 0.25, segment
    # The mix goes on where the killed one stopped (what it had flushed), in new files.
    mix = manifest["mix"]["segments"]
    assert {0, 1} <= {s["attempt"] for s in mix}
    first_new = min((s for s in mix if s["attempt"] == 1 and not s["salvaged"]), key=lambda s: s["start"])
    assert first_new["start"] == pytest.approx(
        max(s["end"] for s in mix if s is not first_new and s["start"] < first_new["start"]), abs=0.001
    )
    assert len(decode_audio([storage / s["key"] for s in mix])) / AUDIO_RATE > 5.0


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
@pytest.mark.timeout(120)
async def test_transcript_names_the_speaker_and_places_the_phrase_on_the_meeting_timeline(tmp_path):
    storage = tmp_path / "storage"
    phrase = "the quarterly review is on tuesday"
    # Bob's microphone starts 0.4 s into the recording and he says the phrase 1.0 s later.
    bob = make_stream(
        "bob-mic",
        "p-bob",
        "Bob",
        "audio",
        4.0,
        ssrc=3333,
        sender_epoch=7e8,
        begin=0.4,
        pcm=speech(phrase, 4.02, at=1.0),
    )
    events = schedule([bob])
    recorder = await RecorderProcess.start(tmp_path / "data")
    sfu = await FakeSfu.open()
    try:
        started_at, origin = time.time(), time.monotonic()
        started = await recorder.request(recording_start(storage, started_at))
        sfu.destination = (started.ip, started.port)
        await recorder.request(bob.track_add(RECORDING_ID))
        # The host turns transcription on after the recording started, with a hint.
        await recorder.request(api.TranscriptionSet(RECORDING_ID, True, [phrase, "Conclave"]))
        await play(sfu, events, origin)
        assert (await recorder.stats()).gauges["transcription_backlog_seconds"] > 3.0
        await recorder.request(api.RecordingStop(RECORDING_ID, CONTROL_MANIFEST))
        ready = await recorder.wait_for(lambda: recorder.of(api.TranscriptReady), 60)
        await recorder.wait_for(lambda: not (tmp_path / "data" / "recordings" / RECORDING_ID).exists(), 10)
        stats = await recorder.stats()
    finally:
        sfu.close()
        await recorder.stop()

    keys = [PREFIX + "transcript.vtt", PREFIX + "transcript.json"]
    assert [m.keys for m in ready] == [keys]
    uploaded = {m.key: m for m in recorder.of(api.RecordingFileUploaded)}
    assert uploaded[keys[0]].kind == uploaded[keys[1]].kind == "transcript"
    assert uploaded[keys[1]].content_type == "application/json"
    document = json.loads((storage / keys[1]).read_text(encoding="utf-8"))
    assert document["disclaimer"] == "Transcripts may be incomplete or inaccurate."
    assert document["meta"]["recording_id"] == RECORDING_ID and document["meta"]["engine"] == "pocketsphinx"
    assert document["speakers"] == ["Bob"]
    [segment] = document["segments"]
    assert segment["text"] == phrase and segment["speaker"] == "Bob"
    assert abs(segment["start"] - 1.4) < 0.5 and segment["end"] > segment["start"] + 1.0
    vtt = (storage / keys[0]).read_text(encoding="utf-8")
    assert vtt.startswith("WEBVTT") and f"<v Bob>{phrase}</v>" in vtt and "incomplete or inaccurate" in vtt
    manifest = read_manifest(storage, PREFIX + "meeting.json")
    assert manifest["transcript"] == {"keys": keys}
    assert stats.gauges["transcription_backlog_seconds"] == 0


@pytest.mark.timeout(90)
async def test_a_full_spool_stops_the_recording_and_uploads_resume_when_storage_is_back(tmp_path):
    storage = tmp_path / "storage"
    storage.mkdir()
    (storage / "recordings").write_text("in the way")  # the key prefix cannot be created
    cam = make_stream(
        "alice-cam", "p-alice", "Alice", "video", 3.0, ssrc=1111, sender_epoch=5e8, begin=0.2, gop=15
    )
    events = schedule([cam])
    recorder = await RecorderProcess.start(tmp_path / "data", spool_limit_bytes=40_000)
    sfu = await FakeSfu.open()
    try:
        started_at, origin = time.time(), time.monotonic()
        started = await recorder.request(recording_start(storage, started_at, segment_seconds=1.0))
        sfu.destination = (started.ip, started.port)
        await recorder.request(cam.track_add(RECORDING_ID))
        await play(sfu, events, origin)
        [failed] = await recorder.wait_for(lambda: recorder.of(api.RecordingFailed), 10)
        assert failed.recording_id == RECORDING_ID and failed.reason == "spool_full"
        # The recording is over: nothing more is taken for it.
        with pytest.raises(ChannelError) as caught:
            await recorder.request(cam.track_add(RECORDING_ID))
        assert caught.value.code == "not_found"
        stats = await recorder.stats()
        assert stats.gauges["active_recordings"] == 0
        assert stats.gauges["spool_bytes"] >= 40_000 and stats.counters["upload_failures"] > 0
        assert not recorder.of(api.RecordingFileUploaded)

        # Control stops it (its part of meeting.json comes now), and storage comes back.
        stopped = await recorder.request(api.RecordingStop(RECORDING_ID, CONTROL_MANIFEST))
        assert stopped.manifest_key == PREFIX + "meeting.json" and 1.0 < stopped.duration < 5.0
        (storage / "recordings").unlink()  # the retries go through
        await recorder.wait_for(lambda: not (tmp_path / "data" / "recordings" / RECORDING_ID).exists(), 40)
        stats = await recorder.stats()
    finally:
        sfu.close()
        await recorder.stop()
    assert stats.gauges["spool_bytes"] == 0
    manifest = read_manifest(storage, PREFIX + "meeting.json")
    assert manifest["recording"]["failure"] == "spool_full"
    assert manifest["consent"] == CONTROL_MANIFEST["consent"]
    segments = manifest["tracks"][0]["segments"]
    assert segments and set(storage_files(storage)) == {
        PREFIX + "meeting.json",
        *(s["key"] for s in segments),
        *(s["key"] for s in manifest["mix"]["segments"]),
    }
    for segment in segments:
        assert decoded_seconds(storage / segment["key"])[1] > 0


@pytest.mark.timeout(60)
async def test_requests_are_checked_and_answered(tmp_path):
    storage = tmp_path / "storage"
    recorder = await RecorderProcess.start(tmp_path / "data")
    try:

        async def error_of(message) -> ChannelError:
            with pytest.raises(ChannelError) as caught:
                await recorder.request(message)
            return caught.value

        assert (await error_of(api.RecordingConnect("nope", "127.0.0.1", 4000))).code == "not_found"
        secret = "s3cr3t-do-not-show"
        s3 = {"kind": "s3", "access_key_id": "AK", "secret_access_key": secret}  # no bucket
        error = await error_of(recording_start(storage, time.time(), storage=s3))
        assert error.code == "invalid" and "bucket" in error.message and secret not in error.message
        assert secret not in repr(recording_start(storage, time.time(), storage=s3))
        assert (await error_of(recording_start(storage, time.time(), key_prefix="../up/"))).code == "invalid"

        started_at = time.time()
        started = await recorder.request(recording_start(storage, started_at))
        again = await recorder.request(recording_start(storage, started_at))
        assert again == started  # a repeated request is answered the same way
        video = make_stream("cam", "p", "P", "video", 0.1, ssrc=1, sender_epoch=0).track_add(RECORDING_ID)
        assert (await error_of(dataclasses.replace(video, codec_name="VP9"))).code == "invalid"
        assert (await error_of(dataclasses.replace(video, codec_name="opus"))).code == "invalid"
        assert await recorder.request(video) == Empty()
        assert (await error_of(dataclasses.replace(video, track_id="other"))).code == "invalid"  # same SSRC
        assert (await error_of(api.RecordingConnect(RECORDING_ID, "localhost", 4000))).code == "invalid"
        # A malformed request gets an error too (unknown field).
        envelope = {
            "type": "request",
            "id": 999,
            "name": "TRACK_REMOVE",
            "data": {"recording_id": "x", "bogus": 1},
        }
        with pytest.raises(ChannelError) as caught:
            await recorder.raw_request(envelope)
        assert caught.value.code == "bad_request" and "bogus" in caught.value.message
        assert await recorder.request(api.TrackRemove(RECORDING_ID, "cam")) == Empty()

        stopped = await recorder.request(api.RecordingStop(RECORDING_ID, {}))
        assert stopped.duration >= 0
        assert (await error_of(recording_start(storage, started_at, attempt=1))).code == "invalid"  # stopped
        await recorder.wait_for(
            lambda: any(m.kind == "manifest" for m in recorder.of(api.RecordingFileUploaded)), 20
        )
    finally:
        await recorder.stop()
    manifest = read_manifest(storage, PREFIX + "meeting.json")
    assert [t["track_id"] for t in manifest["tracks"]] == ["cam"] and manifest["tracks"][0]["segments"] == []
    # Nothing was sent, yet the mix holds the notice, from t=0 to the stop.
    assert manifest["mix"]["offset"] == 0.0 and manifest["mix"]["end"] > 0


def test_api_messages_notice_and_command():
    start = recording_start(
        Path("/srv/x"),
        1.5,
        storage={"kind": "s3", "bucket": "b", "access_key_id": "a", "secret_access_key": "hidden"},
    )
    assert api.RecordingStart.from_dict(start.to_dict()) == start
    assert api.response_type(start) is api.RecordingStarted
    for kind in NOTICE_KINDS:
        frames = notice_frames(kind)
        assert len(frames) > 25 and all(0 < len(f) < 400 for f in frames)
    # Transcription has words of its own: it must not announce a recording.
    assert notice_frames("transcription-started") != notice_frames("recording-started")
    with pytest.raises(ValueError):
        notice_frames("meeting-ended")

    cfg = Config(
        data_dir="/var/lib/conclave",
        recorder=RecorderConfig(
            transcription_engine="openai",
            openai_base_url="https://stt.example.com",
            openai_api_key="sk-hidden",
        ),
    )
    command = api.recorder_command(7, api.recorder_config_json(cfg), base_env={"PATH": "/usr/bin"})
    assert command.argv[1:] == ["-m", "recorder", "--channel-fd", "7"]
    assert "sk-hidden" not in " ".join(command.argv) and "sk-hidden" not in repr(command)
    settings = json.loads(command.env[api.CONFIG_ENVIRONMENT_VARIABLE])
    assert (
        settings["recorder"]["openai_api_key"] == "sk-hidden" and settings["data_dir"] == "/var/lib/conclave"
    )
    assert command.env["PATH"] == "/usr/bin"


async def record_for(recorder: RecorderProcess, storage: Path, streams, until: float, **start_fields):
    """Start the recording, add the streams, send their media up to `until` seconds."""
    sfu = await FakeSfu.open()
    started_at, origin = time.time(), time.monotonic()
    started = await recorder.request(recording_start(storage, started_at, **start_fields))
    sfu.destination = (started.ip, started.port)
    await recorder.request(api.RecordingConnect(RECORDING_ID, *sfu.address))
    for stream in streams:
        await recorder.request(stream.track_add(RECORDING_ID))
    await play(sfu, schedule(streams), origin, until=until)
    sfu.close()
    return started_at


@pytest.mark.timeout(90)
async def test_sigterm_closes_every_open_segment_and_a_new_process_continues(tmp_path):
    storage, data = tmp_path / "storage", tmp_path / "data"
    mic = make_stream("alice-mic", "p-alice", "Alice", "audio", 3.0, ssrc=2222, sender_epoch=5e8, begin=0.2)
    first = await RecorderProcess.start(data)
    try:
        started_at = await record_for(first, storage, [mic], until=2.9, segment_seconds=2.0)
        first.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.process.wait(), 15) == 0
    finally:
        await first.stop()
    # Drained: the open segments were closed, queued and (storage being up) uploaded.
    assert not media_files(data) and not list((data / "spool").iterdir())
    keys = [m.key for m in first.of(api.RecordingFileUploaded)]
    assert PREFIX + "alice-mic.a0-00001.webm" in keys and any(".a0-00001.ogg" in k for k in keys)

    second = await RecorderProcess.start(data)
    try:
        await second.request(recording_start(storage, started_at, segment_seconds=2.0, attempt=1))
        await second.request(api.RecordingStop(RECORDING_ID, {}))
        await second.wait_for(
            lambda: any(m.kind == "manifest" for m in second.of(api.RecordingFileUploaded)), 20
        )
    finally:
        await second.stop()
    manifest = read_manifest(storage, PREFIX + "meeting.json")
    [track] = manifest["tracks"]
    assert [(s["attempt"], s["salvaged"]) for s in track["segments"]] == [(0, False), (0, False)]
    assert track["segments"][-1]["end"] == pytest.approx(2.9, abs=0.15)
    mix = manifest["mix"]["segments"]
    # The mix was closed at the SIGTERM too; the second process's mix goes on from there.
    assert [s["attempt"] for s in mix][:2] == [0, 0] and mix[2]["start"] == pytest.approx(
        mix[1]["end"], abs=0.001
    )


@pytest.mark.timeout(90)
async def test_a_recording_stopped_after_its_recorder_was_killed_is_salvaged_and_closed(tmp_path):
    storage, data = tmp_path / "storage", tmp_path / "data"
    mic = make_stream("alice-mic", "p-alice", "Alice", "audio", 4.0, ssrc=2222, sender_epoch=5e8, begin=0.2)
    first = await RecorderProcess.start(data)
    try:
        # Killed 1.5 s into the second segment (the muxer has written its first second).
        await record_for(first, storage, [mic], until=3.7, segment_seconds=2.0)
        first.kill()
        await first.process.wait()
    finally:
        await first.stop()
    assert PREFIX + "alice-mic.a0-00000.webm" in [m.key for m in first.of(api.RecordingFileUploaded)]
    assert "alice-mic.a0-00001.webm.part" in media_files(data)

    # Control stops the recording before (instead of) continuing it.
    second = await RecorderProcess.start(data)
    try:
        stopped = await second.request(api.RecordingStop(RECORDING_ID, {"chat": []}))
        assert stopped.manifest_key == PREFIX + "meeting.json"
        await second.wait_for(
            lambda: any(m.kind == "manifest" for m in second.of(api.RecordingFileUploaded)), 20
        )
        await second.wait_for(lambda: not (data / "recordings" / RECORDING_ID).exists(), 10)
    finally:
        await second.stop()
    manifest = read_manifest(storage, PREFIX + "meeting.json")
    assert manifest["chat"] == []
    [track] = manifest["tracks"]
    assert [(s["key"].rsplit("/", 1)[1], s["salvaged"]) for s in track["segments"]] == [
        ("alice-mic.a0-00000.webm", False),
        ("alice-mic.a0-00001.webm", True),
    ]
    assert decoded_seconds(storage / track["segments"][1]["key"])[0] >= 0.5


# --- deletion, orphans, quotas, file modes (issue 10) ------------------------------------


def world_readable(root: Path) -> list[str]:
    """Files and directories under root (root too) that anyone but the owner can read."""
    found = []
    for path in [root, *root.rglob("*")]:
        if path.stat().st_mode & 0o077:
            found.append(f"{oct(path.stat().st_mode & 0o777)} {path.relative_to(root.parent)}")
    return found


def umask_of(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:"))


@pytest.mark.timeout(90)
async def test_a_discarded_recording_leaves_nothing_and_uploads_nothing_more(tmp_path):
    storage, data = tmp_path / "storage", tmp_path / "data"
    storage.mkdir()
    (storage / "recordings").write_text("in the way")  # the storage refuses for now: files wait in the spool
    cam = make_stream("alice-cam", "p-alice", "Alice", "video", 3.0, ssrc=1111, sender_epoch=5e8, begin=0.2, gop=15)
    mic = make_stream("alice-mic", "p-alice", "Alice", "audio", 3.0, ssrc=2222, sender_epoch=5e8, begin=0.2)
    recorder = await RecorderProcess.start(data)
    try:
        assert umask_of(recorder.process.pid) == "0077"
        await record_for(recorder, storage, [cam, mic], until=2.8, segment_seconds=1.0, transcribe=True)
        work = data / "recordings" / RECORDING_ID
        await recorder.wait_for(lambda: len(list((data / "spool").glob("*.data"))) >= 2, 10)
        assert list((work / "speech").iterdir()), "speech audio is kept for the transcript"
        # Recordings, speech audio and spooled files are for the recorder's user only.
        assert world_readable(data) == []

        discarded = await recorder.request(api.RecordingDiscard(RECORDING_ID))
        assert discarded.recording_id == RECORDING_ID and discarded.files >= 2 and discarded.bytes > 0
        assert not work.exists() and list((data / "spool").iterdir()) == []
        for late in (recording_start(storage, time.time(), attempt=1), api.RecordingStop(RECORDING_ID, {}),
                     cam.track_add(RECORDING_ID)):  # fmt: skip
            with pytest.raises(ChannelError) as caught:
                await recorder.request(late)
            assert caught.value.code == "discarded"
        again = await recorder.request(api.RecordingDiscard(RECORDING_ID))  # harmless twice
        assert (again.files, again.bytes) == (0, 0)

        (storage / "recordings").unlink()  # the storage is back: still nothing of it goes up
        await asyncio.sleep(3.0)
        stats = await recorder.stats()
    finally:
        await recorder.stop()
    assert storage_files(storage) == {} and not recorder.of(api.RecordingFileUploaded)
    assert not recorder.of(api.TranscriptReady)
    assert stats.gauges["active_recordings"] == 0 and stats.gauges["spool_bytes"] == 0


@pytest.mark.timeout(90)
async def test_what_a_killed_recorder_left_is_finished_after_the_grace_never_kept(tmp_path):
    storage, data = tmp_path / "storage", tmp_path / "data"
    mic = make_stream("alice-mic", "p-alice", "Alice", "audio", 4.0, ssrc=2222, sender_epoch=5e8, begin=0.2)
    first = await RecorderProcess.start(data)
    try:
        await record_for(first, storage, [mic], until=3.7, segment_seconds=2.0)
        first.kill()  # control went down with it, say: nobody continues or stops this recording
        await first.process.wait()
    finally:
        await first.stop()
    # Also left behind: a start killed before its journal, and a recording with nowhere to go.
    (data / "recordings" / "half-made" / "media").mkdir(parents=True)
    nowhere = data / "recordings" / "rec-nowhere"
    nowhere.mkdir()
    (nowhere / "journal.jsonl").write_text(json.dumps({"type": "start", "recording_id": "rec-nowhere"}) + "\n")

    second = await RecorderProcess.start(data, orphan_grace_s=1.0)
    try:
        assert not (data / "recordings" / "half-made").exists()
        await second.wait_for(
            lambda: any(m.kind == "manifest" for m in second.of(api.RecordingFileUploaded)), 30
        )
        await second.wait_for(lambda: not (data / "recordings" / RECORDING_ID).exists(), 10)
        await second.wait_for(lambda: not nowhere.exists(), 5)
    finally:
        await second.stop()
    assert list((data / "recordings").iterdir()) == []
    manifest = read_manifest(storage, PREFIX + "meeting.json")
    [track] = manifest["tracks"]
    assert [s["salvaged"] for s in track["segments"]] == [False, True]
    assert set(storage_files(storage)) >= {s["key"] for s in track["segments"]}
    assert world_readable(storage) == []  # what the local storage got is private too


@pytest.mark.timeout(90)
async def test_one_customers_dead_storage_stops_only_its_own_recordings(tmp_path):
    dead, alive, data = tmp_path / "dead", tmp_path / "alive", tmp_path / "data"
    dead.mkdir()
    (dead / "recordings").write_text("in the way")
    cam = make_stream("cam", "p-a", "A", "video", 4.0, ssrc=1111, sender_epoch=5e8, begin=0.2, gop=15)
    mic_b = make_stream("mic-b", "p-b", "B", "audio", 4.0, ssrc=3333, sender_epoch=5e8, begin=0.2)
    # A share bigger than what a healthy customer holds at once (a segment or two on its
    # way up), smaller than what piles up behind a dead storage.
    recorder = await RecorderProcess.start(data, spool_limit_bytes=10_000_000, customer_spool_limit_bytes=100_000)
    sfu_a, sfu_b = await FakeSfu.open(), await FakeSfu.open()
    try:
        started_at, origin = time.time(), time.monotonic()
        a = await recorder.request(recording_start(dead, started_at, segment_seconds=1.0, customer_id="c-dead"))
        b = await recorder.request(recording_start(alive, started_at, segment_seconds=1.0, customer_id="c-ok",
                                                   recording_id="rec-b",
                                                   key_prefix="recordings/12345678901/rec-b/"))  # fmt: skip
        sfu_a.destination, sfu_b.destination = (a.ip, a.port), (b.ip, b.port)
        await recorder.request(cam.track_add(RECORDING_ID))
        await recorder.request(mic_b.track_add("rec-b"))
        await asyncio.gather(play(sfu_a, schedule([cam]), origin), play(sfu_b, schedule([mic_b]), origin))
        [failed] = await recorder.wait_for(lambda: recorder.of(api.RecordingFailed), 10)
        assert (failed.recording_id, failed.reason) == (RECORDING_ID, "customer_spool_full")
        # The other customer records on and its files go up meanwhile.
        assert (await recorder.stats()).gauges["active_recordings"] == 1
        await recorder.wait_for(lambda: [m for m in recorder.of(api.RecordingFileUploaded) if m.recording_id == "rec-b"], 10)
        with pytest.raises(ChannelError) as caught:  # a new recording of the full customer waits
            await recorder.request(recording_start(dead, time.time(), customer_id="c-dead", recording_id="rec-c",
                                                   key_prefix="recordings/12345678901/rec-c/"))  # fmt: skip
        assert caught.value.code == "spool_full"
        await recorder.request(recording_start(alive, time.time(), customer_id="c-ok", recording_id="rec-d",
                                               key_prefix="recordings/12345678901/rec-d/"))  # fmt: skip
        await recorder.request(api.RecordingStop("rec-b", {}))
        await recorder.request(api.RecordingStop("rec-d", {}))
    finally:
        sfu_a.close()
        sfu_b.close()
        await recorder.stop()
    assert all(m.recording_id != RECORDING_ID for m in recorder.of(api.RecordingFileUploaded))
