"""bench.media: VP8 frames are cut into packets that fit."""

from __future__ import annotations

from bench.media import VP8_CHUNK, chunks


def test_vp8_frames_are_cut_into_packets_that_fit():
    for size in (1, VP8_CHUNK, VP8_CHUNK + 1, 7 * VP8_CHUNK - 3):
        frame = bytes(range(256)) * (size // 256 + 1)
        frame = frame[:size]
        parts = chunks(frame)
        assert b"".join(parts) == frame
        assert all(0 < len(p) <= VP8_CHUNK for p in parts)
        assert max(map(len, parts)) - min(map(len, parts)) <= len(parts)  # even sizes
