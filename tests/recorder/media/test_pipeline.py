"""The recorder's receive path end to end, without a network: real frames encoded with av,
packetized like aiortc, delayed / reordered / duplicated / dropped (with NACKs answered
or not), then jitter → depacketize → timeline → segments; the files are decoded with av.
Also: tracks line up, the mix starts with the notice, a killed writer loses at most its
open segment, and the notice script works."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap

import av
import numpy as np
import pytest

from common import notices as clips
from recorder.media import notice
from recorder.media.depacketize import Frame
from recorder.media.mixer import AudioMixer
from recorder.media.segments import SegmentWriter
from recorder.media.timeline import ClockDomain
from tests.support.recorder_media import (
    FPS,
    FakeClock,
    Network,
    Receiver,
    decode_file,
    demux_file,
    encode_opus,
    encode_video,
    receive,
    run,
    send,
    tone,
)
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
HAS_X264 = "libx264" in av.codecs_available
FRAME = 1 / FPS
SENDER_START = 50.0  # sender's capture clock when it starts (same clock as the receiver's)
RECORDING_START = SENDER_START - 0.25
NTP_BASE = 1_700_000_000.0  # the sender's wall clock at capture 0: unrelated to ours


def video_stream(codec: str, frames: int, gop: int = 15, width: int = 320, height: int = 240):
    encoded = encode_video(codec, frames, gop=gop, width=width, height=height)
    return send(
        codec, encoded, first_seq=65500, first_ts=0xFFFFFFFF - 45000, ssrc=0x1234, ntp_base=NTP_BASE, start=SENDER_START
    )


def check_segments_play_alone(closed, segment_seconds: float, gop_seconds: float) -> list:
    """Each closed segment decodes on its own from a key frame; returns all decoded frames."""
    decoded = []
    for segment in closed:
        packets = demux_file(segment.path)
        assert packets[0].is_keyframe or segment.codec == "opus"
        frames = decode_file(segment.path)
        assert len(frames) == len(packets) == segment.frames
        assert segment.end - segment.start <= segment_seconds + gop_seconds + 0.002
        assert not segment.path.with_name(segment.path.name + ".part").exists()
        decoded += frames
    return decoded


def test_vp8_survives_reordering_duplicates_and_recovered_losses(tmp_path):
    stream = video_stream("vp8", 90)
    network = Network(seed=3, jitter=0.015, duplicate=0.05, drop=0.05, answer_nacks=True)
    got = receive(stream, network, RECORDING_START, directory=tmp_path, track_id="cam", segment_seconds=1.0)

    assert got.jitter.stats.duplicates > 0 and got.jitter.stats.recovered > 0
    assert got.jitter.stats.lost == 0
    assert got.depacketizer.stats.dropped_frames == 0
    closed = got.writer.closed
    assert len(closed) >= 3 and [s.index for s in closed] == list(range(len(closed)))
    assert [s.path.name for s in closed][0] == "cam-00000.webm"
    # Remuxed, not transcoded: the very bytes the encoder produced, in order.
    muxed = [bytes(p) for s in closed for p in demux_file(s.path)]
    assert muxed == [f.data for f in stream.frames]
    decoded = check_segments_play_alone(closed, 1.0, 15 * FRAME)
    assert len(decoded) == 90
    assert (decoded[0].width, decoded[0].height) == (320, 240)
    # On the timeline: the first frame ~0.25 s + the network delay in, 3 s long.
    assert closed[0].start == pytest.approx(0.25 + network.delay, abs=0.02)
    assert closed[-1].end - closed[0].start == pytest.approx(3.0, abs=FRAME)
    for previous, following in zip(closed, closed[1:]):
        assert following.start == pytest.approx(previous.end, abs=0.0015)


def test_vp8_with_unrecovered_losses_drops_broken_frames_and_says_so(tmp_path):
    stream = video_stream("vp8", 90)
    packets_of = {}
    for order, frame in enumerate(stream.frame_of_packet):
        packets_of.setdefault(frame, []).append(order)
    # Lost for good: a packet in the middle of key frame 15, all of frame 40, the first
    # packet of key frame 60. Key frames every 15 frames.
    assert len(packets_of[15]) > 2 and len(packets_of[60]) > 2
    lose = {packets_of[15][len(packets_of[15]) // 2], *packets_of[40], packets_of[60][0]}
    network = Network(seed=7, jitter=0.01, answer_nacks=False, lose=frozenset(lose))
    got = receive(stream, network, RECORDING_START, directory=tmp_path, track_id="cam")

    assert got.jitter.stats.lost == len(lose)
    stats = got.depacketizer.stats
    # Frames with a hole (15, 60) are dropped and counted; the frames that depend on a
    # lost one wait for the next key frame (16-29, 41-44, 61-74); frame 40 never came.
    assert stats.dropped_frames == 2
    assert stats.skipped_frames == 14 + 4 + 14
    assert stats.frames == 90 - 2 - 1 - 32
    closed = got.writer.closed
    muxed = [bytes(p) for s in closed for p in demux_file(s.path)]
    originals = [f.data for f in stream.frames]
    expected = [i for i in range(90) if not (15 <= i < 30 or 40 <= i < 45 or 60 <= i < 75)]
    assert muxed == [originals[i] for i in expected]  # every frame written is intact
    decoded = check_segments_play_alone(closed, 1.0, 15 * FRAME)
    assert len(decoded) == stats.frames


@pytest.mark.skipif(not HAS_X264, reason="this av build has no H.264 encoder")
def test_h264_access_units_remux_to_matroska_and_decode_identically(tmp_path):
    stream = video_stream("h264", 60)
    network = Network(seed=5, jitter=0.02, duplicate=0.03, drop=0.05, answer_nacks=True)
    got = receive(stream, network, RECORDING_START, directory=tmp_path, track_id="screen", segment_seconds=1.0)

    assert got.jitter.stats.lost == 0 and got.depacketizer.stats.dropped_frames == 0
    closed = got.writer.closed
    assert closed[0].path.suffix == ".mkv" and closed[0].content_type == "video/x-matroska"
    decoded = check_segments_play_alone(closed, 1.0, 15 * FRAME)
    reference = av.CodecContext.create("h264", "r")
    expected = [f for e in stream.frames for f in reference.decode(av.Packet(e.data))]
    expected += reference.decode(None)
    assert len(decoded) == len(expected) == 60
    for ours, theirs in zip(decoded, expected):
        assert np.array_equal(ours.to_ndarray(), theirs.to_ndarray())


def test_opus_track_keeps_every_packet_and_its_duration(tmp_path):
    encoded = encode_opus(tone(440, 3.0))
    stream = send("opus", encoded, first_seq=65000, first_ts=123, ssrc=7, ntp_base=NTP_BASE, start=SENDER_START)
    network = Network(seed=11, jitter=0.03, duplicate=0.05, drop=0.05, answer_nacks=True)
    got = receive(stream, network, RECORDING_START, directory=tmp_path, track_id="mic", segment_seconds=1.0)

    closed = got.writer.closed
    assert closed[0].content_type == "audio/webm"
    assert [bytes(p) for s in closed for p in demux_file(s.path)] == [e.data for e in encoded]
    samples = 0
    for segment in closed:
        frames = decode_file(segment.path)  # each segment alone
        samples += sum(f.samples for f in frames)
        assert segment.end - segment.start <= 1.0 + 0.02  # a segment ends at the first packet past 1 s
    assert samples / 48000 == pytest.approx(len(encoded) * 0.02, abs=0.02)
    assert closed[0].start == pytest.approx(0.25 + network.delay, abs=0.02)
    assert closed[-1].end - closed[0].start == pytest.approx(len(encoded) * 0.02, abs=0.02)


def track_offset(received) -> float:
    """pts - capture time of a track's frames: where its clock sits on the timeline."""
    clock_rate = received.timeline.clock_rate
    first_ts = received.frames[0][0].timestamp
    offsets = [pts - ((f.timestamp - first_ts) & 0xFFFFFFFF) / clock_rate for f, pts in received.frames[5:]]
    return float(np.median(offsets))


def test_tracks_line_up_from_sender_reports_even_with_skewed_sender_clocks(tmp_path):
    # Sender A: camera and microphone, one NTP clock 3.7 s behind ours; its video takes
    # 70 ms longer to arrive than its audio. Sender B: microphone, clock 2 s ahead.
    a_video = send("vp8", encode_video("vp8", 60), first_seq=1, first_ts=5, ssrc=1,
                   ntp_base=NTP_BASE - 3.7, start=SENDER_START)
    a_audio = send("opus", encode_opus(tone(300, 2.0)), first_seq=9, first_ts=0xFFFFF000, ssrc=2,
                   ntp_base=NTP_BASE - 3.7, start=SENDER_START)
    b_audio = send("opus", encode_opus(tone(500, 2.0)), first_seq=7, first_ts=77, ssrc=3,
                   ntp_base=NTP_BASE + 2.0, start=SENDER_START)
    domain_a, domain_b = ClockDomain(), ClockDomain()
    clock = FakeClock()
    got_video = Receiver(a_video, Network(seed=1, delay=0.080), RECORDING_START, clock, domain=domain_a,
                         directory=tmp_path / "a", track_id="a-cam")
    got_audio = Receiver(a_audio, Network(seed=2, delay=0.010), RECORDING_START, clock, domain=domain_a,
                         directory=tmp_path / "a", track_id="a-mic")
    got_b = Receiver(b_audio, Network(seed=3, delay=0.030), RECORDING_START, clock, domain=domain_b,
                     directory=tmp_path / "b", track_id="b-mic")
    run([got_video, got_audio, got_b], clock)
    assert got_video.timeline.synchronized and got_audio.timeline.synchronized

    # Captured at the same instant → the same place on the timeline: A's two tracks
    # exactly (lip sync), the two senders within 100 ms.
    video_at, audio_at, b_at = track_offset(got_video), track_offset(got_audio), track_offset(got_b)
    assert abs(video_at - audio_at) < 0.005
    assert abs(audio_at - b_at) < 0.100
    assert audio_at == pytest.approx(0.25, abs=0.1)
    # And so do the files: each starts where its first frame was captured.
    firsts = [got.writer.closed[0].start for got in (got_video, got_audio, got_b)]
    assert max(firsts) - min(firsts) < 0.100


def test_tracks_line_up_before_any_sender_report(tmp_path):
    video = send("vp8", encode_video("vp8", 30), first_seq=1, first_ts=5, ssrc=1, ntp_base=0,
                 start=SENDER_START, report_every=1e9)
    audio = send("opus", encode_opus(tone(300, 1.0)), first_seq=9, first_ts=99, ssrc=2, ntp_base=0,
                 start=SENDER_START, report_every=1e9)
    video.reports.clear()
    audio.reports.clear()
    clock = FakeClock()
    got_video = Receiver(video, Network(seed=1, delay=0.030), RECORDING_START, clock)
    got_audio = Receiver(audio, Network(seed=2, delay=0.010), RECORDING_START, clock)
    run([got_video, got_audio], clock)
    assert not got_video.timeline.synchronized
    assert abs(track_offset(got_video) - track_offset(got_audio)) < 0.100


def goertzel(x: np.ndarray, freq: float) -> float:
    """Amplitude of one frequency in a window."""
    n = np.arange(len(x))
    window = np.hanning(len(x))
    return float(2 * abs(np.sum(x * window * np.exp(-2j * np.pi * freq * n / 48000))) / np.sum(window))


def onset(x: np.ndarray, freq: float, after: float, threshold: float = 0.15) -> float:
    """First 10 ms step after `after` seconds where a 20 ms window holds `freq` at
    `threshold` amplitude."""
    for start in range(int(after * 48000), len(x) - 960, 480):
        if goertzel(x[start : start + 960], freq) > threshold:
            return start / 48000
    return float("inf")


def test_mix_starts_with_the_notice_and_places_each_participant(tmp_path):
    # A says 440 Hz from 2.2 s to 4.2 s, B 1000 Hz from 3.0 s to 5.0 s (recording time),
    # loud enough that their sum clips.
    recording_start = 100.0
    a = send("opus", encode_opus(tone(440, 2.0, 0.6)), first_seq=1, first_ts=0, ssrc=1,
             ntp_base=NTP_BASE, start=recording_start + 2.2 - 0.01)
    b = send("opus", encode_opus(tone(1000, 2.0, 0.6)), first_seq=60000, first_ts=0xFFFFFF00, ssrc=2,
             ntp_base=NTP_BASE + 40.0, start=recording_start + 3.0 - 0.01)
    got_a = receive(a, Network(seed=1, delay=0.010, jitter=0.01), recording_start)
    got_b = receive(b, Network(seed=2, delay=0.010, jitter=0.01), recording_start)
    arrivals = sorted(
        [(f.arrival, "a", f, pts) for f, pts in got_a.frames] + [(f.arrival, "b", f, pts) for f, pts in got_b.frames],
        key=lambda item: item[0],
    )
    closed = []
    mixer = AudioMixer(tmp_path, segment_seconds=2.0, on_segment_closed=closed.append)
    for arrival, track, frame, pts in arrivals:
        mixer.push(track, frame.data, pts)
        mixer.mix_until(arrival - recording_start - 0.5)  # half a second behind live
    mixer.close()

    assert [s.path.name for s in closed] == ["mix-00000.ogg", "mix-00001.ogg", "mix-00002.ogg"]
    assert [s.start for s in closed] == [0.0, 2.0, 4.0]
    pcm = np.concatenate([np.concatenate([f.to_ndarray()[0] for f in decode_file(s.path)]) for s in closed])
    assert len(pcm) / 48000 == pytest.approx(5.0, abs=0.02)

    # The notice is there, at the very start (found by correlation, not assumed).
    spoken, _ = notice.notice_pcm("recording-started")
    head = pcm[: 48000 * 3]
    scores = np.correlate(head, spoken, mode="valid")
    lag = int(np.argmax(scores))
    assert lag < 480  # within 10 ms of time 0
    window = head[lag : lag + len(spoken)]
    assert scores[lag] / np.sqrt(np.dot(window, window) * np.dot(spoken, spoken)) > 0.8

    # Each participant where they spoke (after the notice, which has energy everywhere).
    notice_end = len(spoken) / 48000
    assert notice_end < 2.1
    assert onset(pcm, 440, after=notice_end) == pytest.approx(2.2, abs=0.03)
    assert onset(pcm, 1000, after=notice_end) == pytest.approx(3.0, abs=0.03)
    assert goertzel(pcm[int(4.5 * 48000) : int(4.52 * 48000)], 440) < 0.05  # A ended at 4.2
    assert goertzel(pcm[int(4.5 * 48000) : int(4.52 * 48000)], 1000) > 0.4
    assert mixer.stats.clipped_samples > 0 and float(np.max(np.abs(pcm))) <= 1.0
    assert mixer.stats.late_samples == 0


CRASHING_WRITER = textwrap.dedent(
    """
    import sys, time
    from recorder.media.depacketize import Frame
    from recorder.media.mixer import AudioMixer
    from recorder.media.segments import SegmentWriter
    from tests.support.recorder_media import encode_opus, encode_video, tone
    directory = sys.argv[1]
    writer = SegmentWriter("cam", "vp8", directory, segment_seconds=2.0)
    for i, f in enumerate(encode_video("vp8", 165, gop=15)):  # 1.0 s .. 6.5 s
        writer.write(Frame(f.data, i * 3000, f.keyframe), 1.0 + i / 30)
    mixer = AudioMixer(directory, segment_seconds=2.0, notice=None)
    for i, f in enumerate(encode_opus(tone(440, 4.6))):  # 1.0 s .. 5.6 s
        mixer.push("mic", f.data, 1.0 + i * 0.02)
    mixer.mix_until(5.5)
    print("written", flush=True)
    time.sleep(60)
    """
)


@pytest.mark.process
def test_a_killed_writer_loses_at_most_its_open_segment(tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "written"
    finally:
        child.send_signal(signal.SIGKILL)  # kill -9: no cleanup of any kind
        child.wait(timeout=30)
        child.stdout.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "cam-00000.webm", "cam-00001.webm", "cam-00002.webm.part",
        "mix-00000.ogg", "mix-00001.ogg", "mix-00002.ogg.part",
    ]
    for name in names[:2]:
        assert len(decode_file(tmp_path / name)) == 60  # finished segments are intact
    for name in names[3:5]:
        assert sum(f.samples for f in decode_file(tmp_path / name)) == 96000

    # A restarted recorder salvages what the killed one left and continues the numbering.
    handed = []
    writer = SegmentWriter("cam", "vp8", tmp_path, segment_seconds=2.0, on_segment_closed=handed.append)
    mixer = AudioMixer(tmp_path, segment_seconds=2.0, on_segment_closed=handed.append, start=5.5, notice=None)
    assert [(s.path.name, s.salvaged) for s in handed] == [("cam-00002.webm", True), ("mix-00002.ogg", True)]
    video, mix = handed
    # The open segments held 5.0 s .. 6.5 s (video) and 4.0 s .. 5.5 s (mix); what had
    # reached the disk (one-second clusters / pages) is back as playable segments.
    assert video.start == pytest.approx(5.0, abs=0.002)
    assert 25 <= video.frames == len(decode_file(video.path)) < 45
    assert mix.start == 4.0 and 0.9 <= mix.end - mix.start <= 1.5
    assert sum(f.samples for f in decode_file(mix.path)) >= 0.9 * 48000
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    for i, f in enumerate(encode_video("vp8", 20, gop=15)):
        writer.write(Frame(f.data, i * 3000, f.keyframe), 7.0 + i / 30)
    assert writer.close().path.name == "cam-00003.webm"
    mixer.push("mic", encode_opus(tone(440, 0.1))[0].data, 5.5)
    assert mixer.close().path.name == "mix-00003.ogg"


@pytest.mark.process
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_make_notice_renders_both_notices(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_notice.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
    )
    for kind in clips.NOTICE_KINDS:
        frames = clips.parse_frames(clips.frames_path(kind, tmp_path).read_bytes())
        assert len(frames) > 50
        with av.open(str(clips.ogg_path(kind, tmp_path))) as container:
            packets = [bytes(p) for p in container.demux(audio=0) if p.size]
        assert packets == frames  # the very same Opus packets in both files
