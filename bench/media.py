"""Pre-encoded media for bench publishers: VP8 and Opus frames made once with `av`, cached.

A publisher never encodes: it loops over cached frames. Every video frame exists twice,
as the encoder's delta frame and as an intra (key) frame, so a publisher can answer a
PLI with a keyframe at the next frame, as a browser does. Frames are cut into RTP
payloads here (RFC 7741 for VP8, one Opus frame per packet) so the send path only
prepends a header.

Cache: one file per parameter set under $CONCLAVE_BENCH_CACHE (default
/tmp/conclave-bench-cache), written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

RTP_PACKET_BYTES = 1200  # the largest RTP packet a publisher sends (header included)
RTP_HEADER_BYTES = 12 + 8  # fixed header + one-byte extension block (abs-send-time, transport-cc)
VP8_DESCRIPTOR_BYTES = 4  # X, I, 15-bit picture id (RFC 7741 §4.2), as browsers send
VP8_CHUNK = RTP_PACKET_BYTES - RTP_HEADER_BYTES - VP8_DESCRIPTOR_BYTES
CACHE_VERSION = 2  # 2: one second of encoder warm-up dropped


@dataclass(frozen=True)
class MediaParams:
    width: int = 640
    height: int = 360
    fps: int = 30
    video_kbps: int = 1000
    video_frames: int = 300  # a 10 s loop at 30 fps
    audio_kbps: int = 32
    audio_frames: int = 250  # 5 s of 20 ms Opus frames

    def key(self) -> str:
        text = json.dumps({**asdict(self), "v": CACHE_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class MediaClip:
    """video_delta[i] / video_key[i]: frame i as lists of VP8 payload chunks (no descriptor);
    audio[i]: Opus frame i."""

    __slots__ = ("params", "video_delta", "video_key", "audio")

    def __init__(self, params: MediaParams, video_delta, video_key, audio) -> None:
        self.params = params
        self.video_delta: list[bytes] = video_delta
        self.video_key: list[bytes] = video_key
        self.audio: list[bytes] = audio

    @property
    def video_packets_per_second(self) -> float:
        frames = self.video_delta
        packets = sum(len(chunks(frame)) for frame in frames)
        return packets * self.params.fps / len(frames)


def chunks(frame: bytes) -> list[bytes]:
    """Split a VP8 frame into equal-ish payload chunks of at most VP8_CHUNK bytes."""
    count = max(1, -(-len(frame) // VP8_CHUNK))
    size = -(-len(frame) // count)
    return [frame[i : i + size] for i in range(0, len(frame), size)]


def cache_dir() -> Path:
    return Path(os.environ.get("CONCLAVE_BENCH_CACHE") or Path(tempfile.gettempdir()) / "conclave-bench-cache")


def load_clip(params: MediaParams) -> MediaClip:
    """The clip for `params`, encoded now if no cached copy exists."""
    path = cache_dir() / f"clip-{params.key()}.bin"
    if path.exists():
        try:
            return _read(path, params)
        except (OSError, ValueError, struct.error):
            pass  # a truncated or stale file: encode again
    clip = encode_clip(params)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    _write(tmp, clip)
    os.replace(tmp, path)
    return clip


# ----------------------------------------------------------------------- encoding


def _test_pattern(params: MediaParams, index: int) -> np.ndarray:
    """A moving picture with detail, so delta frames are not empty."""
    h, w = params.height, params.width
    y = np.arange(h, dtype=np.int32)[:, None]
    x = np.arange(w, dtype=np.int32)[None, :]
    image = np.empty((h, w, 3), dtype=np.uint8)
    image[..., 0] = ((x + 3 * index) % 256).astype(np.uint8)
    image[..., 1] = ((y * 2 + index) % 256).astype(np.uint8)
    image[..., 2] = (((x // 16 + y // 16 + index // 4) % 2) * 200).astype(np.uint8)
    box = (index * 7) % max(1, w - 80)
    image[h // 3 : h // 3 + 80, box : box + 80] = (255, 255, 255)
    rng = np.random.default_rng(index)
    noise = rng.integers(0, 24, size=(h, w, 1), dtype=np.uint8)
    return image + noise


def _vp8_encoder(params: MediaParams, intra_only: bool):
    import av

    codec = av.CodecContext.create("libvpx", "w")
    codec.width = params.width
    codec.height = params.height
    codec.pix_fmt = "yuv420p"
    codec.time_base = Fraction(1, params.fps)
    codec.framerate = Fraction(params.fps, 1)
    codec.bit_rate = params.video_kbps * 1000
    codec.gop_size = 1 if intra_only else 100_000
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    return codec


def _encode_video(params: MediaParams, intra_only: bool) -> list[bytes]:
    """The clip's frames, after one second of warm-up frames that are thrown away: the
    encoder's very first keyframe is many times the target size (125 KB at 1 Mbps), a
    burst no browser sends. The first kept delta frame refers to warm-up frames, which
    does not matter: a loop always starts with the intra version of frame 0."""
    import av

    codec = _vp8_encoder(params, intra_only)
    warmup = params.fps
    frames: list[bytes] = []
    for index in range(warmup + params.video_frames):
        frame = av.VideoFrame.from_ndarray(_test_pattern(params, index), format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        frames += [bytes(packet) for packet in codec.encode(frame)]
    frames += [bytes(packet) for packet in codec.encode(None)]
    if len(frames) != warmup + params.video_frames:
        raise RuntimeError(f"VP8 encoder gave {len(frames)} frames for {warmup + params.video_frames}")
    return frames[warmup:]


def _encode_audio(params: MediaParams) -> list[bytes]:
    import av

    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = 48000
    codec.layout = "stereo"
    codec.format = "s16"
    codec.bit_rate = params.audio_kbps * 1000
    codec.time_base = Fraction(1, 48000)
    samples = 960
    out: list[bytes] = []
    rng = np.random.default_rng(1)
    for index in range(params.audio_frames + 10):
        t = (np.arange(samples) + index * samples) / 48000
        tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(samples)
        pcm = (np.clip(tone, -1, 1) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(pcm[None, :], 2, axis=0).T.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = index * samples
        out += [bytes(packet) for packet in codec.encode(frame)]
    if len(out) < params.audio_frames:
        raise RuntimeError(f"Opus encoder gave {len(out)} frames for {params.audio_frames}")
    return out[: params.audio_frames]


def encode_clip(params: MediaParams) -> MediaClip:
    delta = _encode_video(params, intra_only=False)
    key = _encode_video(params, intra_only=True)
    return MediaClip(params, delta, key, _encode_audio(params))


# ----------------------------------------------------------------------- cache file

_MAGIC = b"CLVBENCH"
_LEN = struct.Struct("!I")


def _write(path: Path, clip: MediaClip) -> None:
    with open(path, "wb") as f:
        f.write(_MAGIC)
        for frames in (clip.video_delta, clip.video_key, clip.audio):
            f.write(_LEN.pack(len(frames)))
            for frame in frames:
                f.write(_LEN.pack(len(frame)))
                f.write(frame)


def _read(path: Path, params: MediaParams) -> MediaClip:
    data = path.read_bytes()
    if not data.startswith(_MAGIC):
        raise ValueError("not a bench clip")
    pos = len(_MAGIC)
    lists: list[list[bytes]] = []
    for _ in range(3):
        (count,) = _LEN.unpack_from(data, pos)
        pos += 4
        frames = []
        for _ in range(count):
            (size,) = _LEN.unpack_from(data, pos)
            pos += 4
            frames.append(data[pos : pos + size])
            pos += size
        lists.append(frames)
    if pos != len(data) or len(lists[0]) != params.video_frames:
        raise ValueError("clip file does not match its parameters")
    return MediaClip(params, *lists)
