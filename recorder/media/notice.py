"""The recording notices, pre-rendered by scripts/make_notice.py and shipped in
recorder/assets/:

- `notice_pcm(kind)`: the audio, 48 kHz mono float32, for the recorder's mix;
- `notice_frames(kind)`: the same audio as 20 ms Opus packets, for the SFU to send as
  RTP without any codec (one packet every 20 ms, RTP timestamp += 960 at 48 kHz).

`kind` is "started" ("This meeting is being recorded."), "stopped" ("Recording has
stopped."), "transcription-started" or "transcription-stopped" (the same for
transcription: the issue asks for the same notice when transcription starts, and a
transcription-only session must not claim to be a recording). The `.opus-frames` format: each packet preceded by its length, 2 bytes
big-endian; nothing else.
"""

from __future__ import annotations

import functools
from pathlib import Path

import av
import numpy as np

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
NOTICE_TEXT = {
    "started": "This meeting is being recorded.",
    "stopped": "Recording has stopped.",
    "transcription-started": "This meeting is being transcribed.",
    "transcription-stopped": "Transcription has stopped.",
}


def _check_kind(kind: str) -> None:
    if kind not in NOTICE_TEXT:
        raise ValueError(f"notice kind: {kind!r} is not one of {sorted(NOTICE_TEXT)}")


def _file_stem(kind: str) -> str:
    _check_kind(kind)
    return f"recording-{kind}" if kind in ("started", "stopped") else kind


def ogg_path(kind: str, directory: Path = ASSETS) -> Path:
    return directory / f"{_file_stem(kind)}.ogg"


def frames_path(kind: str, directory: Path = ASSETS) -> Path:
    return directory / f"{_file_stem(kind)}.opus-frames"


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
    """The notice as consecutive 20 ms Opus packets (mono), ready to be RTP payloads."""
    return list(_frames(kind))


@functools.lru_cache(maxsize=None)
def _pcm(kind: str) -> np.ndarray:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    chunks = []
    with av.open(str(ogg_path(kind))) as container:
        for frame in container.decode(audio=0):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    pcm = np.concatenate(chunks).astype(np.float32)
    pcm.flags.writeable = False  # shared by every caller
    return pcm


def notice_pcm(kind: str) -> tuple[np.ndarray, int]:
    """The notice as 48 kHz mono float32 samples in [-1, 1] (read-only), and the rate."""
    _check_kind(kind)
    return _pcm(kind), SAMPLE_RATE
