"""recorder.media.notice: the shipped notice assets (common/notices), as the recorder
decodes and mixes them."""

from __future__ import annotations

import av
import numpy as np
import pytest

from common import notices as clips
from recorder.media import bitstream, notice


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
