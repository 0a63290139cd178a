"""recorder.media.depacketize: VP8, H.264 and Opus depacketizers on hand-made packets for
the edge cases (lost fragments, padding, missing parameter sets, garbage).

The other building blocks of recorder/media/ have their own files beside this one
(test_bitstream, test_jitter, test_timeline, test_segments, test_notice, test_mixer)."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.media import bitstream
from recorder.media.depacketize import (
    MAX_FRAME_BYTES,
    H264Depacketizer,
    OpusDepacketizer,
    Vp8Depacketizer,
    codec_key,
    depacketizer_for,
)
from tests.support.recorder_media import packet


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


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_a_frame_that_never_ends_is_dropped_at_the_size_limit(codec):
    # Found writing the fuzz target "depacketize" (tests/fuzz): a sender that never sets the
    # marker bit made the recorder hold every packet of the frame, without bound.
    depacketizer = depacketizer_for(codec)
    first = vp8_payload(True, KEY) if codec == "vp8" else b"\x7c\x85" + bytes(1200)  # FU-A start, IDR
    middle = vp8_payload(False, bytes(1200)) if codec == "vp8" else b"\x7c\x05" + bytes(1200)
    count = 2 * MAX_FRAME_BYTES // 1200
    tracemalloc.start()
    try:
        assert depacketizer.push(packet(0, 3000, first)) == []
        for seq in range(1, count):
            assert depacketizer.push(packet(seq, 3000, middle)) == []
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert depacketizer.stats.dropped_frames == 1 and "larger than" in depacketizer.last_drop_reason
    assert held < 1024 * 1024  # the dropped frame's packets are gone, the rest never kept
    # The stream goes on: the next key frame comes out.
    if codec == "vp8":
        frames = depacketizer.push(packet(count, 6000, vp8_payload(True, KEY), marker=True))
    else:
        sps, pps, idr = b"\x67\x42\xc0\x1f\xda", b"\x68\xce\x3c\x80", b"\x65\x88\x84"
        stap = b"\x78" + b"".join(len(n).to_bytes(2, "big") + n for n in (sps, pps, idr))
        frames = depacketizer.push(packet(count, 6000, stap, marker=True))
    assert [f.keyframe for f in frames] == [True]
