"""The spoken notices ("This meeting is being recorded.", ...), pre-rendered by
scripts/make_notice.py into this folder, and the reader of their Opus packets.

Each notice `kind` (one of NOTICE_KINDS) has two files here, made from the same Opus
packets:
- `<kind>.opus-frames`: 20 ms mono Opus packets, each preceded by its length as 2 bytes
  big-endian, nothing else. What the SFU's announcer sends as RTP without any codec (one
  packet every 20 ms, RTP timestamp += 960 at 48 kHz): `notice_frames(kind)`;
- `<kind>.ogg`: the same audio as 48 kHz mono Ogg/Opus, which the recorder decodes for its
  mix (recorder/media/notice.py).

Reading the packets needs neither av nor numpy: control plays notices without loading a
codec library.
"""

from __future__ import annotations

import functools
from pathlib import Path

CLIPS = Path(__file__).resolve().parent
SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
# Transcription has words of its own: a transcription-only session must not claim to be
# a recording.
NOTICE_TEXT = {
    "recording-started": "This meeting is being recorded.",
    "recording-stopped": "Recording has stopped.",
    "transcription-started": "This meeting is being transcribed.",
    "transcription-stopped": "Transcription has stopped.",
}
NOTICE_KINDS = tuple(NOTICE_TEXT)


def check_kind(kind: str) -> str:
    """kind if it is one of NOTICE_KINDS, else ValueError."""
    if kind not in NOTICE_TEXT:
        raise ValueError(f"notice kind: {kind!r} is not one of {', '.join(NOTICE_KINDS)}")
    return kind


def ogg_path(kind: str, directory: Path = CLIPS) -> Path:
    return directory / f"{check_kind(kind)}.ogg"


def frames_path(kind: str, directory: Path = CLIPS) -> Path:
    return directory / f"{check_kind(kind)}.opus-frames"


def pack_frames(packets: list[bytes]) -> bytes:
    out = bytearray()
    for packet in packets:
        if not 0 < len(packet) <= 0xFFFF:
            raise ValueError(f"Opus packet: {len(packet)} bytes does not fit a 2-byte length")
        out += len(packet).to_bytes(2, "big") + packet
    return bytes(out)


def parse_frames(data: bytes) -> list[bytes]:
    """Split a `.opus-frames` file; ValueError if a length overruns the data."""
    packets = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise ValueError(f"opus-frames: truncated length at byte {pos}")
        size = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if size == 0 or pos + size > len(data):
            raise ValueError(f"opus-frames: packet of {size} bytes at byte {pos} overruns the data")
        packets.append(bytes(data[pos : pos + size]))
        pos += size
    return packets


@functools.lru_cache(maxsize=None)
def _frames(kind: str) -> tuple[bytes, ...]:
    return tuple(parse_frames(frames_path(kind).read_bytes()))


def notice_frames(kind: str) -> list[bytes]:
    """The notice as consecutive 20 ms Opus packets (mono, 48 kHz), ready to be RTP
    payloads; ValueError for an unknown kind."""
    return list(_frames(check_kind(kind)))
