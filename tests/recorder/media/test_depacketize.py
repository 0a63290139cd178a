"""Recorder media building blocks on their own: bitstream facts, the jitter buffer, the
depacketizers (hand-made packets for the edge cases), the timeline, the notice assets."""

from __future__ import annotations

import fractions
import struct

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import notices as clips
from recorder.media import bitstream, notice
from recorder.media.depacketize import (
    Frame,
    H264Depacketizer,
    OpusDepacketizer,
    Vp8Depacketizer,
    codec_key,
    depacketizer_for,
)
from recorder.media.jitter import MAX_FORWARD_JUMP, JitterBuffer
from recorder.media.packet import MediaPacket
from recorder.media.segments import SegmentWriter
from recorder.media.timeline import ClockDomain, TrackTimeline
from sfu.wire import rtcp, rtp
from tests.support.recorder_media import FakeClock, encode_opus, encode_video, tone

HAS_X264 = "libx264" in av.codecs_available


def packet(seq: int, ts: int = 0, payload: bytes = b"x", marker: bool = False, arrival: float = 0.0) -> MediaPacket:
    return MediaPacket(seq & 0xFFFF, ts & 0xFFFFFFFF, marker, payload, arrival)


def seqs(packets) -> list[int]:
    return [p.sequence_number for p in packets]


# --- bitstream --------------------------------------------------------------------------


def test_vp8_dimensions_of_a_real_key_frame():
    frames = encode_video("vp8", 2, width=176, height=144)
    assert frames[0].keyframe and not frames[1].keyframe
    assert bitstream.vp8_dimensions(frames[0].data) == (176, 144)
    assert bitstream.vp8_is_key_frame(frames[0].data)
    assert not bitstream.vp8_is_key_frame(frames[1].data)
    with pytest.raises(ValueError, match="not a key frame"):
        bitstream.vp8_dimensions(frames[1].data)


@pytest.mark.skipif(not HAS_X264, reason="this av build has no H.264 encoder")
@pytest.mark.parametrize("size", [(320, 240), (322, 242), (176, 100)])
def test_h264_sps_dimensions_with_cropping(size):
    frames = encode_video("h264", 1, width=size[0], height=size[1])
    assert bitstream.h264_access_unit_dimensions(frames[0].data) == size


@pytest.mark.skipif(not HAS_X264, reason="this av build has no H.264 encoder")
def test_h264_sps_dimensions_of_a_high_profile_stream():
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 200, 120, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 30)
    encoder.profile = "High"
    frame = av.VideoFrame(200, 120, "yuv420p")
    frame.pts = 0
    data = b"".join(bytes(p) for p in [*encoder.encode(frame), *encoder.encode(None)])
    sps = [n for n in bitstream.annex_b_nal_units(data) if n[0] & 0x1F == 7][0]
    assert sps[1] == 100  # profile_idc: High, with chroma format and bit depths
    assert bitstream.h264_sps_dimensions(sps) == (200, 120)


def test_opus_samples_from_the_toc_byte():
    assert bitstream.opus_samples(bytes([0b11111000])) == 960  # CELT 20 ms, one frame
    assert bitstream.opus_samples(bytes([0b00001000])) == 960  # SILK 20 ms
    assert bitstream.opus_samples(bytes([0b00011001])) == 5760  # SILK 60 ms, two frames
    assert bitstream.opus_samples(bytes([0b10000011, 0x03])) == 360  # CELT 2.5 ms x 3
    for packet in encode_opus(tone(440, 0.2)):
        assert bitstream.opus_samples(packet.data) == 960
    with pytest.raises(ValueError, match="empty"):
        bitstream.opus_samples(b"")
    with pytest.raises(ValueError, match="frame count"):
        bitstream.opus_samples(bytes([0b11111011]))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_bitstream_readers_raise_only_value_error(data):
    for read in (bitstream.vp8_dimensions, bitstream.opus_samples, bitstream.h264_sps_dimensions):
        try:
            read(data)
        except ValueError:
            pass
    bitstream.h264_starts_picture(data)
    try:
        bitstream.h264_access_unit_dimensions(b"\x00\x00\x00\x01\x67" + data)
    except ValueError:
        pass


# --- jitter buffer ----------------------------------------------------------------------


def test_jitter_holds_the_first_packets_then_passes_in_order_packets_through():
    clock = FakeClock(0.0)
    jitter = JitterBuffer(clock=clock, max_delay_seconds=0.1)
    assert jitter.push(packet(11)) == []  # the very first may not be the first sent
    assert jitter.push(packet(10)) == []
    assert jitter.next_deadline() == pytest.approx(0.1)
    clock.now = 0.1
    assert seqs(jitter.poll()) == [10, 11]
    assert seqs(jitter.push(packet(12))) == [12]
    assert jitter.stats.lost == 0


def test_jitter_reorders_across_the_sequence_wrap():
    clock = FakeClock(0.0)
    jitter = JitterBuffer(clock=clock, max_delay_seconds=0.1)
    out = []
    for seq in (65533, 65535, 65534, 1, 0, 2):
        out += jitter.push(packet(seq))
    clock.now = 0.2
    out += jitter.poll()
    assert seqs(out) == [65533, 65534, 65535, 0, 1, 2]
    assert jitter.stats.released == 6


def test_jitter_waits_for_a_hole_then_gives_up_and_counts_it():
    clock = FakeClock(0.0)
    jitter = JitterBuffer(clock=clock, max_delay_seconds=0.1)
    jitter.flush()
    jitter.push(packet(100))
    clock.now = 0.1
    assert seqs(jitter.poll()) == [100]
    clock.now = 0.25
    assert jitter.push(packet(102)) == []
    assert jitter.missing() == [101]
    clock.now = 0.3
    assert jitter.poll() == []
    clock.now = 0.5
    assert seqs(jitter.poll()) == [102]
    assert jitter.stats.lost == 1
    assert jitter.push(packet(101)) == []  # too late now
    assert jitter.stats.late == 1
    assert jitter.push(packet(102)) == []
    assert jitter.stats.duplicates == 1


def test_jitter_bounds_the_packets_waiting_behind_a_hole():
    clock = FakeClock(0.0)
    jitter = JitterBuffer(clock=clock, max_delay_seconds=10, max_delay_packets=3)
    jitter.push(packet(0))
    clock.now = 10
    jitter.poll()
    out = []
    for seq in (2, 3, 4):
        out += jitter.push(packet(seq))
    assert out == []
    assert seqs(jitter.push(packet(5))) == [2, 3, 4, 5]
    assert jitter.stats.lost == 1


def test_jitter_nacks_each_hole_at_an_interval_and_a_limited_number_of_times():
    clock = FakeClock(0.0)
    jitter = JitterBuffer(clock=clock, max_delay_seconds=1.0, nack_interval_seconds=0.05, max_nacks_per_packet=2)
    jitter.push(packet(65534))
    clock.now = 1.0
    jitter.poll()
    jitter.push(packet(2))  # 65535, 0, 1 missing
    assert jitter.nacks() == [65535, 0, 1]
    assert jitter.nacks() == []  # asked a moment ago
    clock.now = 1.06
    assert jitter.push(packet(0)) == []
    assert jitter.nacks() == [65535, 1]
    clock.now = 1.2
    assert jitter.nacks() == []  # asked twice already
    assert jitter.stats.recovered == 1
    assert seqs(jitter.push(packet(65535))) == [65535, 0]
    assert jitter.missing() == [1]


def test_jitter_restarts_after_a_jump_far_ahead():
    clock = FakeClock(0.0)
    jitter = JitterBuffer(clock=clock, max_delay_seconds=0.1)
    jitter.push(packet(10))
    clock.now = 0.1
    jitter.poll()
    assert seqs(jitter.push(packet(12))) == []
    jump = 12 + MAX_FORWARD_JUMP + 5
    assert seqs(jitter.push(packet(jump))) == [12, jump]
    assert seqs(jitter.push(packet(jump + 1))) == [jump + 1]
    assert jitter.stats.resets == 1
    assert jitter.missing() == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.floats(0, 0.3)), max_size=60))
def test_jitter_releases_each_packet_at_most_once_in_increasing_order(arrivals):
    clock = FakeClock(0.0)
    jitter = JitterBuffer(clock=clock, max_delay_seconds=0.1, max_delay_packets=20)
    out = []
    for seq, step in arrivals:
        clock.now += step
        out += jitter.push(packet(seq))
        jitter.nacks()
    out += jitter.flush()
    unwrapped = []
    for p in out:
        if not unwrapped:
            unwrapped.append(p.sequence_number)
        else:
            unwrapped.append(unwrapped[-1] + rtp.seq_diff(p.sequence_number, unwrapped[-1] & 0xFFFF))
    assert unwrapped == sorted(set(unwrapped))
    assert jitter.stats.released == len(out) <= len(arrivals)


# --- depacketizers ----------------------------------------------------------------------


def vp8_payload(start: bool, data: bytes, pid: int = 0, non_reference: bool = False) -> bytes:
    """RFC 7741 §4.2 descriptor with a 15-bit PictureID, then the data."""
    first = 0x80 | (0x10 if start else 0) | (0x20 if non_reference else 0) | pid
    return bytes([first, 0x80, 0x80, 0x01]) + data


KEY = b"\x10\x02\x00\x9d\x01\x2a\x40\x01\xf0\x00"  # VP8 key frame header, 320x240
DELTA = b"\x11\x02\x00"


def test_vp8_frames_across_packets_and_partitions():
    vp8 = Vp8Depacketizer()
    out = []
    out += vp8.push(packet(1, 3000, vp8_payload(True, KEY)))
    out += vp8.push(packet(2, 3000, vp8_payload(True, b"part1", pid=1)))  # S=1, PID 1: same frame
    out += vp8.push(packet(3, 3000, vp8_payload(False, b"tail"), marker=True))
    out += vp8.push(packet(4, 6000, vp8_payload(True, DELTA), marker=True))
    assert [(f.timestamp, f.keyframe) for f in out] == [(3000, True), (6000, False)]
    assert out[0].data == KEY + b"part1" + b"tail"
    assert not vp8.needs_keyframe
    assert vp8.stats.dropped_frames == 0


def test_vp8_drops_a_frame_with_a_hole_and_waits_for_a_key_frame():
    vp8 = Vp8Depacketizer()
    assert vp8.push(packet(1, 3000, vp8_payload(True, KEY), marker=True))
    assert vp8.push(packet(2, 6000, vp8_payload(True, DELTA))) == []
    # seq 3 lost: the frame at 6000 is incomplete
    assert vp8.push(packet(4, 6000, vp8_payload(False, b"end"), marker=True)) == []
    assert vp8.stats.dropped_frames == 1 and "missing" in vp8.last_drop_reason
    assert vp8.needs_keyframe
    assert vp8.push(packet(5, 9000, vp8_payload(True, DELTA), marker=True)) == []
    assert vp8.stats.skipped_frames == 1
    frames = vp8.push(packet(6, 12000, vp8_payload(True, KEY), marker=True))
    assert [f.keyframe for f in frames] == [True]
    assert not vp8.needs_keyframe


def test_vp8_padding_packets_between_frames_are_ignored():
    vp8 = Vp8Depacketizer()
    vp8.push(packet(1, 3000, vp8_payload(True, KEY), marker=True))
    assert vp8.push(packet(2, 3000, b"")) == []  # a bandwidth probe: padding only
    frames = vp8.push(packet(3, 6000, vp8_payload(True, DELTA), marker=True))
    assert [f.timestamp for f in frames] == [6000]
    assert vp8.stats.padding == 1 and vp8.stats.dropped_frames == 0


def test_vp8_frame_without_its_first_packet_is_dropped_once():
    vp8 = Vp8Depacketizer()
    vp8.push(packet(1, 3000, vp8_payload(True, KEY), marker=True))
    assert vp8.push(packet(3, 6000, vp8_payload(False, b"a"))) == []
    assert vp8.push(packet(4, 6000, vp8_payload(False, b"b"), marker=True)) == []
    assert vp8.stats.dropped_frames == 1


def test_vp8_losing_a_non_reference_frame_needs_no_key_frame():
    vp8 = Vp8Depacketizer()
    vp8.push(packet(1, 3000, vp8_payload(True, KEY), marker=True))
    vp8.push(packet(2, 6000, vp8_payload(True, DELTA, non_reference=True)))
    # its last packet (3) is lost; the next frame starts cleanly
    frames = vp8.push(packet(4, 9000, vp8_payload(True, DELTA), marker=True))
    assert vp8.stats.dropped_frames == 1
    assert [f.timestamp for f in frames] == [9000]


def nal(nal_type: int, body: bytes = b"\x88\x84\x21", nri: int = 3) -> bytes:
    return bytes([(nri << 5) | nal_type]) + body


def stap_a(*nals: bytes) -> bytes:
    return bytes([0x78]) + b"".join(struct.pack("!H", len(n)) + n for n in nals)


def fu_a(unit: bytes, pieces: int) -> list[bytes]:
    body = unit[1:]
    step = -(-len(body) // pieces)
    chunks = [body[i : i + step] for i in range(0, len(body), step)]
    out = []
    for i, chunk in enumerate(chunks):
        header = unit[0] & 0x1F | (0x80 if i == 0 else 0) | (0x40 if i == len(chunks) - 1 else 0)
        out.append(bytes([(unit[0] & 0xE0) | 28, header]) + chunk)
    return out


# libx264's parameter sets for 640x480, Constrained Baseline (with an emulation prevention byte)
SPS = bytes.fromhex("6742c01eda0280f684000003000400000300f23c58ba80")
PPS = bytes.fromhex("68ce3c80")


def test_h264_single_stap_a_and_fu_a_become_one_annex_b_access_unit():
    h264 = H264Depacketizer()
    idr = nal(5, b"\x88" + bytes(range(200)))
    payloads = [stap_a(SPS, PPS), *fu_a(idr, 3)]
    out = []
    for i, payload in enumerate(payloads):
        out += h264.push(packet(10 + i, 90000, payload, marker=i == len(payloads) - 1))
    out += h264.push(packet(14, 93000, nal(1), marker=True))
    assert [f.keyframe for f in out] == [True, False]
    start = bitstream.ANNEX_B_START_CODE
    assert out[0].data == start + SPS + start + PPS + start + idr
    assert out[1].data == start + nal(1)
    assert bitstream.h264_access_unit_dimensions(out[0].data) == (640, 480)


def test_h264_key_frame_gets_the_parameter_sets_it_lacks():
    h264 = H264Depacketizer()
    h264.push(packet(1, 0, stap_a(SPS, PPS, nal(5)), marker=True))
    frames = h264.push(packet(2, 3000, nal(5), marker=True))
    start = bitstream.ANNEX_B_START_CODE
    assert frames[0].keyframe
    assert frames[0].data == start + SPS + start + PPS + start + nal(5)


def test_h264_drops_an_access_unit_with_a_lost_fragment_or_head():
    h264 = H264Depacketizer()
    h264.push(packet(1, 0, stap_a(SPS, PPS, nal(5)), marker=True))
    pieces = fu_a(nal(1, bytes(range(90))), 3)
    assert h264.push(packet(2, 3000, pieces[0])) == []
    assert h264.push(packet(4, 3000, pieces[2], marker=True)) == []  # middle lost
    assert h264.stats.dropped_frames == 1 and h264.needs_keyframe
    # packets before this access unit lost, and it starts mid-picture (first_mb != 0)
    assert h264.push(packet(7, 6000, nal(5, b"\x40\x00"), marker=True)) == []
    assert h264.stats.dropped_frames == 2
    # after a loss, an access unit that opens with its SPS is complete
    frames = h264.push(packet(10, 9000, stap_a(SPS, PPS, nal(5)), marker=True))
    assert [f.keyframe for f in frames] == [True]


def test_h264_unsupported_packetization_is_counted():
    h264 = H264Depacketizer()
    assert h264.push(packet(1, 0, bytes([0x19, 0, 0]), marker=True)) == []  # STAP-B
    assert h264.stats.unsupported == 1


def test_opus_one_packet_one_frame():
    opus = OpusDepacketizer()
    frames = opus.push(packet(1, 960, b"\xf8\x01\x02"))
    assert [(f.timestamp, f.duration, f.data) for f in frames] == [(960, 960, b"\xf8\x01\x02")]
    assert opus.push(packet(2, 1920, b"")) == []
    assert opus.stats.padding == 1
    assert opus.push(packet(3, 2880, b"\x03")) == []  # code 3 without its frame count
    assert opus.stats.malformed == 1


def test_codec_names():
    assert codec_key("video/VP8") == "vp8" and codec_key("H264") == "h264" and codec_key("opus") == "opus"
    with pytest.raises(ValueError, match="codec"):
        depacketizer_for("VP9")


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["vp8", "h264", "opus"]),
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3), st.booleans(), st.binary(max_size=40)), max_size=30),
)
def test_depacketizers_never_raise_on_garbage(codec, packets):
    depacketizer = depacketizer_for(codec)
    seq = ts = 0
    for seq_step, ts_step, marker, payload in packets:
        seq += seq_step
        ts += ts_step * 3000
        for frame in depacketizer.push(packet(seq, ts, payload, marker)):
            assert frame.data


# --- timeline ---------------------------------------------------------------------------


def test_timeline_before_a_sender_report_follows_arrival_and_handles_the_wrap():
    timeline = TrackTimeline(90000, recording_start=100.0)
    first = 0xFFFFFFFF - 45000  # wraps half a second in
    assert timeline.seconds(first, 100.5) == pytest.approx(0.5)
    assert timeline.seconds((first + 90000) & 0xFFFFFFFF, 101.52) == pytest.approx(1.5)
    # A packet with less delay than any before moves the anchor back by 50 ms; the
    # output follows at most 2 ms per frame, then catches up.
    assert timeline.seconds((first + 180000) & 0xFFFFFFFF, 102.45) == pytest.approx(2.498)
    ts = first + 180000
    for _ in range(30):
        ts += 3000
        last = timeline.seconds(ts & 0xFFFFFFFF, 105.0)
    assert last == pytest.approx(2.45 + 30 * 3000 / 90000)
    # The first sender report: its estimate (here: arrival, 5.0 s) is far from the
    # running one (3.48 s), so it is taken at once.
    timeline.on_sender_report(rtcp.ntp_from_unix(500.0), (ts + 3000) & 0xFFFFFFFF)
    assert timeline.seconds((ts + 3000) & 0xFFFFFFFF, 105.0) == pytest.approx(5.0)
    assert timeline.synchronized


def test_timeline_from_sender_reports_keeps_lip_sync_whatever_the_sender_clock():
    sender_skew = -3.7  # the sender's NTP clock is 3.7 s behind ours
    domain = ClockDomain()
    audio = TrackTimeline(48000, recording_start=1000.0, domain=domain)
    video = TrackTimeline(90000, recording_start=1000.0, domain=domain)
    capture = 1001.0  # on our clock
    audio.on_sender_report(rtcp.ntp_from_unix(capture + sender_skew), 0xFFFFFF00)
    video.on_sender_report(rtcp.ntp_from_unix(capture + sender_skew), 12345)
    # audio arrives 20 ms after capture, video 80 ms after: both belong at 1.0 + 0.02
    assert audio.seconds(0xFFFFFF00, capture + 0.020) == pytest.approx(1.02)
    assert video.seconds(12345, capture + 0.080) == pytest.approx(1.02)
    assert not TrackTimeline(90000, 0.0).synchronized
    # two seconds later, across the audio timestamp wrap
    assert audio.seconds((0xFFFFFF00 + 96000) & 0xFFFFFFFF, capture + 2.021) == pytest.approx(3.02)
    assert video.seconds(12345 + 180000, capture + 2.09) == pytest.approx(3.02)
    assert audio.synchronized and video.synchronized


# --- segment writer ---------------------------------------------------------------------


def test_video_segments_wait_for_a_key_frame_and_ask_for_one_early(tmp_path):
    frames = encode_video("vp8", 75, gop=1000)  # a single key frame, at the start
    writer = SegmentWriter("cam", "VP8", tmp_path, segment_seconds=2.0)
    assert writer.wants_keyframe  # nothing open yet
    wanted_from = None
    for i, f in enumerate(frames):
        writer.write(Frame(f.data, i * 3000, f.keyframe), i / 30)
        if writer.wants_keyframe and wanted_from is None:
            wanted_from = i
    assert wanted_from == 30  # one second before the segment is due
    assert writer.closed == []  # no key frame came: the segment goes on past 2 s
    assert writer.close_if_idle(2.5) is None
    closed = writer.close_if_idle(75 / 30 + 2.0)  # then nothing for two seconds
    assert closed.frames == 75 and closed.end == pytest.approx(2.5, abs=0.002)
    # the next frame is not a key frame: it cannot start a segment
    writer.write(Frame(frames[1].data, 80 * 3000, False), 5.0)
    assert writer.stats.skipped_before_keyframe == 1 and writer.close() is None


def test_segment_writer_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="track_id"):
        SegmentWriter("../x", "vp8", tmp_path)
    with pytest.raises(ValueError, match="segment_seconds"):
        SegmentWriter("x", "vp8", tmp_path, segment_seconds=11)
    with pytest.raises(ValueError, match="codec"):
        SegmentWriter("x", "AV1", tmp_path)


# --- notice assets ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", clips.NOTICE_KINDS)
def test_notice_assets_are_small_twenty_ms_opus_frames_of_the_same_audio(kind):
    for path in (clips.ogg_path(kind), clips.frames_path(kind)):
        assert path.stat().st_size < 16_000
    frames = clips.notice_frames(kind)
    assert len(frames) > 50
    assert {bitstream.opus_samples(f) for f in frames} == {960}
    pcm, rate = notice.notice_pcm(kind)
    assert rate == 48000 and pcm.dtype == np.float32 and 1.0 < len(pcm) / rate < 4.0
    assert not pcm.flags.writeable
    decoder = av.CodecContext.create("opus", "r")
    decoded = np.concatenate(
        [f.to_ndarray()[0] for packet in frames for f in decoder.decode(av.Packet(packet))]
    )
    # the frames play the same audio as the Ogg file (which skips the encoder delay)
    n = min(len(pcm), len(decoded)) - 2000
    lags = range(0, 1000)
    best = max(lags, key=lambda lag: float(np.dot(decoded[lag : lag + n], pcm[:n])))
    a, b = decoded[best : best + n], pcm[:n]
    assert float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b))) > 0.95


def test_notice_frames_format():
    assert clips.parse_frames(clips.pack_frames([b"a", b"bc"])) == [b"a", b"bc"]
    with pytest.raises(ValueError, match="overruns"):
        clips.parse_frames(b"\x00\x05ab")
    with pytest.raises(ValueError, match="notice kind"):
        clips.notice_frames("paused")
    with pytest.raises(ValueError, match="notice kind"):
        notice.notice_pcm("started")  # the kinds are common.notices.NOTICE_KINDS


def test_mixer_keeps_a_mono_voice_at_its_level():
    """WebRTC's opus/48000/2 decodes a mono voice as stereo with L = R; the mixer must
    not add the two (a downmix at 0.707 each would make everyone 3 dB louder)."""
    import av

    from recorder.media.mixer import _Source

    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "mono", "s16"
    encoder.bit_rate = 64000
    t = np.arange(48000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    packets = []
    for start in range(0, len(tone), 960):
        frame = av.AudioFrame.from_ndarray(tone[start : start + 960].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, start
        packets += [bytes(p) for p in encoder.encode(frame)]
    source = _Source()
    decoded = np.concatenate([source.decode(p) for p in packets])
    steady = decoded[len(decoded) // 4 : -len(decoded) // 4]  # past the codec's start-up
    level = np.sqrt(np.mean(steady**2)) / (0.5 / np.sqrt(2))
    assert 0.9 < level < 1.1, level
