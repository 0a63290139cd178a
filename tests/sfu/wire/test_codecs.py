"""sfu.wire.codecs: hand-built descriptors, captured Chromium payloads, aiortc's encoders
and descriptor parser as cross-checks, fuzz.

Captured Chromium RTP (see test_rtp.py): VP8 (PT 96) keyframe, its second packet
and the next frame's first packet; VP8 sent with scalabilityMode L1T3 (TL0PICIDX and
TID present); H.264 (PT 102) STAP-A with SPS/PPS, FU-A start of an IDR, FU-A end.
"""

from __future__ import annotations

import fractions

import numpy
import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder, VpxPayloadDescriptor
from av import VideoFrame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfu.wire import codecs, rtp
from tests.support.paths import DATA_DIR

DATA = DATA_DIR
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def payload_of(name: str) -> tuple[bytes, int]:
    data = (DATA / f"wire_chromium_{name}.bin").read_bytes()
    return data, rtp.payload_offset(data)


# --- VP8 descriptor (RFC 7741 §4.2) --------------------------------------------------------


def test_minimal_descriptor():
    desc = codecs.vp8_descriptor(bytes([0x10, 0x9D]))
    assert desc.start_of_partition and desc.partition_id == 0 and not desc.non_reference
    assert desc.picture_id is None and desc.picture_id_bits == 0 and desc.tl0_pic_idx is None
    assert desc.tid is None and desc.layer_sync is None and desc.key_idx is None
    assert desc.header_size == 1


def test_descriptor_with_every_field():
    # X=1 N=1 S=1 PID=2 | I L T K | M=1 PictureID 0x1234 | TL0PICIDX 0x56 | TID=2 Y=1 KEYIDX=5
    payload = bytes.fromhex("b2 f0 9234 56 a5 9d")
    desc = codecs.vp8_descriptor(payload)
    assert desc.start_of_partition and desc.partition_id == 2 and desc.non_reference
    assert (desc.picture_id, desc.picture_id_bits, desc.picture_id_offset) == (0x1234, 15, 2)
    assert (desc.tl0_pic_idx, desc.tl0_pic_idx_offset) == (0x56, 4)
    assert (desc.tid, desc.layer_sync, desc.key_idx) == (2, True, 5)
    assert desc.header_size == 6


def test_descriptor_seven_bit_picture_id_and_k_without_t():
    desc = codecs.vp8_descriptor(bytes.fromhex("0000 90 90 7f 1f"), offset=2)
    assert (desc.picture_id, desc.picture_id_bits, desc.picture_id_offset) == (0x7F, 7, 4)
    assert (desc.tid, desc.layer_sync, desc.key_idx) == (None, None, 0x1F)
    assert desc.header_size == 4


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"", "empty payload"),
        (bytes([0x90]), "extension byte"),
        (bytes([0x90, 0x80]), "PictureID"),
        (bytes([0x90, 0x80, 0x80]), "15-bit PictureID"),
        (bytes([0x90, 0x40]), "TL0PICIDX"),
        (bytes([0x90, 0x20]), "TID"),
        (bytes([0x90, 0x10]), "KEYIDX"),
    ],
)
def test_truncated_descriptor_raises_value_error(payload, field):
    with pytest.raises(ValueError, match=field):
        codecs.vp8_descriptor(payload)
    assert not codecs.vp8_is_keyframe(payload)


def test_offset_validation():
    with pytest.raises(ValueError, match="offset"):
        codecs.vp8_descriptor(b"\x10\x00", offset=-1)
    with pytest.raises(ValueError, match="empty payload"):
        codecs.vp8_descriptor(b"\x10\x00", offset=2)
    assert not codecs.vp8_is_keyframe(b"\x10\x00", offset=-1)
    assert not codecs.h264_is_keyframe(b"\x65", offset=-1)
    assert not codecs.h264_is_keyframe(b"\x65", offset=1)


descriptors = st.builds(
    VpxPayloadDescriptor,
    partition_start=st.integers(0, 1),
    partition_id=st.integers(0, 7),
    picture_id=st.none() | st.integers(0, 0x7FFF),
    tl0picidx=st.none() | st.integers(0, 255),
    tid=st.none() | st.tuples(st.integers(0, 3), st.integers(0, 1)),
    keyidx=st.none() | st.integers(0, 31),
)


@FUZZ
@given(descriptors, st.binary(max_size=4), st.binary(max_size=8))
def test_descriptor_matches_aiortc(theirs, prefix, rest):
    payload = prefix + bytes(theirs) + rest
    desc = codecs.vp8_descriptor(payload, offset=len(prefix))
    parsed, remainder = VpxPayloadDescriptor.parse(payload[len(prefix) :])
    assert desc.start_of_partition == bool(parsed.partition_start)
    assert desc.partition_id == parsed.partition_id
    assert desc.picture_id == parsed.picture_id
    assert desc.tl0_pic_idx == parsed.tl0picidx
    assert (None if desc.tid is None else (desc.tid, int(desc.layer_sync))) == parsed.tid
    assert desc.key_idx == parsed.keyidx
    assert payload[len(prefix) + desc.header_size :] == remainder


def test_rewrite_descriptor_in_place():
    data, offset = payload_of("vp8_l1t3_key")
    buf = bytearray(data)
    desc = codecs.vp8_descriptor(buf, offset)
    codecs.vp8_rewrite_descriptor(buf, desc, picture_id=0x8001, tl0_pic_idx=300)
    again = codecs.vp8_descriptor(buf, offset)
    assert (again.picture_id, again.picture_id_bits, again.tl0_pic_idx) == (1, 15, 300 & 0xFF)
    assert (desc.picture_id, desc.tl0_pic_idx) == (1, 44)
    assert (again.tid, again.layer_sync, again.header_size) == (desc.tid, desc.layer_sync, desc.header_size)
    changed = {i for i in range(len(buf)) if buf[i] != data[i]}
    assert changed <= {desc.picture_id_offset, desc.picture_id_offset + 1, desc.tl0_pic_idx_offset}
    assert codecs.vp8_is_keyframe(buf, offset)

    short = bytearray.fromhex("90 80 05")
    short_desc = codecs.vp8_descriptor(short)
    codecs.vp8_rewrite_descriptor(short, short_desc, picture_id=0x81)
    assert short == bytes.fromhex("90 80 01") and short_desc.picture_id == 1
    with pytest.raises(ValueError, match="tl0_pic_idx"):
        codecs.vp8_rewrite_descriptor(short, short_desc, tl0_pic_idx=1)
    with pytest.raises(ValueError, match="picture_id"):
        codecs.vp8_rewrite_descriptor(bytearray(b"\x10"), codecs.vp8_descriptor(b"\x10"), picture_id=1)


# --- VP8 keyframes (RFC 7741 §4.3) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "keyframe"),
    [
        (bytes([0x10, 0x00]), True),  # S=1 PID=0, P=0
        (bytes([0x10, 0x01]), False),  # P=1: interframe
        (bytes([0x00, 0x00]), False),  # not the start of a partition
        (bytes([0x11, 0x00]), False),  # partition 1
        (bytes([0x10]), False),  # descriptor only
        (bytes.fromhex("90 80 12 50"), True),  # with a 7-bit PictureID
        (bytes.fromhex("90 80 92 34 9c"), True),  # with a 15-bit PictureID
        (bytes.fromhex("90 80 92 34 9d"), False),
    ],
)
def test_vp8_keyframe_hand_built(payload, keyframe):
    assert codecs.vp8_is_keyframe(payload) is keyframe
    assert codecs.is_keyframe("VP8", memoryview(payload)) is keyframe


@pytest.mark.parametrize(
    ("name", "keyframe", "tid"),
    [
        ("vp8_key", True, None),
        ("vp8_continuation", False, None),
        ("vp8_delta", False, None),
        ("vp8_l1t3_key", True, 0),
        ("vp8_l1t3_tid2", False, 2),
    ],
)
def test_vp8_chromium_payloads(name, keyframe, tid):
    data, offset = payload_of(name)
    assert codecs.vp8_is_keyframe(data, offset) is keyframe
    assert codecs.is_keyframe("video/VP8", data, offset) is keyframe
    desc = codecs.vp8_descriptor(data, offset)
    assert desc.picture_id_bits == 15 and desc.tid == tid  # Chromium always sends 15-bit ids
    if keyframe:
        frame = data[offset + desc.header_size :]
        assert frame[3:6] == b"\x9d\x01\x2a"  # RFC 6386 §9.1 keyframe start code


def test_vp8_l1t3_descriptor_fields():
    data, offset = payload_of("vp8_l1t3_key")
    key = codecs.vp8_descriptor(data, offset)
    assert (key.tl0_pic_idx, key.tid, key.layer_sync, key.non_reference) == (227, 0, True, False)
    data, offset = payload_of("vp8_l1t3_tid2")
    upper = codecs.vp8_descriptor(data, offset)
    assert (upper.tl0_pic_idx, upper.tid, upper.non_reference) == (227, 2, True)
    assert upper.picture_id == (key.picture_id + 1) & 0x7FFF


def _frames(count: int) -> list[VideoFrame]:
    frames = []
    for index in range(count):
        image = numpy.full((120, 160, 3), (index * 40) % 256, dtype=numpy.uint8)
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = index * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        frames.append(frame)
    return frames


def test_vp8_keyframes_from_aiortc_encoder():
    encoder = Vp8Encoder()
    first, second, forced = _frames(3)
    key_packets, _ = encoder.encode(first, force_keyframe=True)
    delta_packets, _ = encoder.encode(second)
    forced_packets, _ = encoder.encode(forced, force_keyframe=True)
    assert codecs.vp8_is_keyframe(key_packets[0])
    assert not any(codecs.vp8_is_keyframe(p) for p in key_packets[1:])
    assert not any(codecs.vp8_is_keyframe(p) for p in delta_packets)
    assert codecs.vp8_is_keyframe(forced_packets[0])


# --- H.264 (RFC 6184) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "keyframe"),
    [
        (bytes([0x65, 0x88]), True),  # single NAL: IDR slice
        (bytes([0x67, 0x42]), True),  # single NAL: SPS
        (bytes([0x68, 0xCE]), False),  # PPS
        (bytes([0x41, 0x9A]), False),  # non-IDR slice
        (bytes([0x06, 0x05]), False),  # SEI
        (bytes.fromhex("78 0002 6742 0002 68ce"), True),  # STAP-A: SPS, PPS
        (bytes.fromhex("78 0002 68ce 0003 65 8884"), True),  # STAP-A: PPS, IDR
        (bytes.fromhex("78 0002 68ce 0002 419a"), False),  # STAP-A: PPS, non-IDR
        (bytes.fromhex("78 0009 6742"), False),  # STAP-A with a truncated NAL
        (bytes.fromhex("78 0000 6742"), False),  # STAP-A with an empty NAL
        (bytes.fromhex("78"), False),
        (bytes.fromhex("7c 85 88"), True),  # FU-A start of an IDR
        (bytes.fromhex("7c 05 88"), False),  # FU-A middle of an IDR
        (bytes.fromhex("7c 45 88"), False),  # FU-A end of an IDR
        (bytes.fromhex("5c 81 9a"), False),  # FU-A start of a non-IDR slice
        (bytes.fromhex("7c"), False),  # FU-A without its header
        (bytes.fromhex("79 0000 0002 6742"), False),  # STAP-B is not used by WebRTC
        (b"", False),
    ],
)
def test_h264_keyframe_hand_built(payload, keyframe):
    assert codecs.h264_is_keyframe(payload) is keyframe
    assert codecs.is_keyframe("H264", b"\0\0" + payload, 2) is keyframe


@pytest.mark.parametrize(
    ("name", "keyframe"), [("h264_stap_a", True), ("h264_fu_a_idr", True), ("h264_fu_a_end", False)]
)
def test_h264_chromium_payloads(name, keyframe):
    data, offset = payload_of(name)
    assert codecs.h264_is_keyframe(data, offset) is keyframe
    assert codecs.is_keyframe("h264", data, offset) is keyframe


def test_h264_keyframes_from_aiortc_encoder():
    encoder = H264Encoder()
    first, second = _frames(2)
    key_packets, _ = encoder.encode(first, force_keyframe=True)
    delta_packets, _ = encoder.encode(second)
    assert codecs.h264_is_keyframe(key_packets[0])
    assert not any(codecs.h264_is_keyframe(p) for p in delta_packets)


# --- dispatch ---------------------------------------------------------------------------------


def test_is_keyframe_dispatch():
    vp8_key, h264_key = bytes([0x10, 0x00]), bytes([0x65, 0x88])
    assert codecs.is_keyframe("vp8", vp8_key) and codecs.is_keyframe("VIDEO/VP8", vp8_key)
    assert codecs.is_keyframe("H264", h264_key)
    assert not codecs.is_keyframe("h264", vp8_key)
    for name in ("opus", "audio/opus", "VP9", "AV1", "rtx", ""):
        assert not codecs.is_keyframe(name, vp8_key)
        assert not codecs.is_keyframe(name, h264_key)


# --- fuzz: only ValueError (descriptor) or a bool (keyframe checks) ----------------------------


@FUZZ
@given(st.binary(max_size=40), st.integers(-3, 45))
def test_fuzz_codecs(payload, offset):
    for view in (payload, memoryview(payload)):
        try:
            desc = codecs.vp8_descriptor(view, offset)
        except ValueError:
            pass
        else:
            assert 1 <= desc.header_size <= 6 and offset + desc.header_size <= len(payload)
        for name in ("vp8", "h264", "opus"):
            assert codecs.is_keyframe(name, view, offset) in (True, False)
