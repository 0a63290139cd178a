"""recorder.media.segments: the segment writer on its own (the whole receive path is in
test_pipeline.py)."""

from __future__ import annotations

import pytest

from recorder.media.depacketize import Frame
from recorder.media.segments import SegmentWriter
from tests.support.recorder_media import encode_video


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
