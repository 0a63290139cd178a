"""recorder.media.bitstream: frame sizes read from VP8 and H.264 key frames, Opus samples
from the TOC byte; the readers raise nothing but ValueError."""

from __future__ import annotations

import fractions

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.media import bitstream
from tests.support.recorder_media import HAS_X264, encode_opus, encode_video, tone


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
