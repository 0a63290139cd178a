"""Generated media for bots: a video pattern with a frame counter, a tone, a file.

The video track draws its frame counter as a row of black/white blocks in the
luma plane (a tiny bar code). The blocks are large enough to survive VP8/H.264
compression, so a receiver can read the counter back from a *decoded* frame with
`read_frame_counter` and prove it got this bot's frames, in order.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time

import av
import numpy as np
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
AUDIO_SAMPLE_RATE = 48_000
AUDIO_FRAME_SAMPLES = 960  # 20 ms at 48 kHz
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_SAMPLE_RATE)

# The counter bar code: MARKER bits then COUNTER_BITS bits, most significant
# first, each a BLOCK x BLOCK square of black or white luma in the top-left.
BLOCK = 16
MARKER = (1, 0, 1, 1, 0, 0, 1, 0)
COUNTER_BITS = 24
_BLACK, _WHITE = 16, 235


def _check_size(width: int, height: int) -> None:
    bar_width = (len(MARKER) + COUNTER_BITS) * BLOCK
    if width % 2 or height % 2 or width < bar_width or height < 2 * BLOCK:
        raise ValueError(f"video size {width}x{height} must be even, at least {bar_width}x{2 * BLOCK}")


def draw_frame_counter(luma: np.ndarray, counter: int) -> None:
    """Write `counter` as a bar code into the top rows of a luma plane (in place)."""
    bits = list(MARKER) + [(counter >> shift) & 1 for shift in range(COUNTER_BITS - 1, -1, -1)]
    for index, bit in enumerate(bits):
        x = index * BLOCK
        luma[0:BLOCK, x : x + BLOCK] = _WHITE if bit else _BLACK


def read_frame_counter(frame: av.VideoFrame) -> int | None:
    """Read the counter drawn by `GeneratedVideoTrack`, or None if there is no bar code.

    Samples the middle of each block of the decoded luma plane, so the lossy
    codec's blur at block edges does not matter.
    """
    bits_total = len(MARKER) + COUNTER_BITS
    if frame.width < bits_total * BLOCK or frame.height < BLOCK:
        return None
    if frame.format.name not in ("yuv420p", "yuvj420p", "nv12"):
        frame = frame.reformat(format="yuv420p")
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
    centre = BLOCK // 2
    samples = rows[centre, centre : bits_total * BLOCK : BLOCK]
    bits = [1 if value > (_BLACK + _WHITE) // 2 else 0 for value in samples]
    if tuple(bits[: len(MARKER)]) != MARKER:
        return None
    counter = 0
    for bit in bits[len(MARKER) :]:
        counter = (counter << 1) | bit
    return counter


class _PacedTrack(MediaStreamTrack):
    """Releases frame n at start + n * period, like a real capture device."""

    def __init__(self, period: float) -> None:
        super().__init__()
        self._period = period
        self._start: float | None = None
        self._index = 0

    async def _next_index(self) -> int:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        index = self._index
        self._index += 1
        delay = self._start + index * self._period - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -1.0:
            # Far behind (the loop was blocked, or nobody read us for a while):
            # restart the schedule instead of bursting the backlog.
            self._start = time.monotonic() - index * self._period
        return index


class GeneratedVideoTrack(_PacedTrack):
    """Moving diagonal stripes tinted by `hue`, with a frame-counter bar code.

    Frames are yuv420p (what the encoders want, so no conversion cost),
    pts in a 90 kHz time base.
    """

    kind = "video"

    def __init__(self, width: int = 640, height: int = 360, fps: int = 15, hue: float = 0.0) -> None:
        _check_size(width, height)
        if not 1 <= fps <= 60:
            raise ValueError(f"fps {fps} must be within 1..60")
        super().__init__(1.0 / fps)
        self.width, self.height, self.fps = width, height, fps
        # One period of the stripe pattern, twice as wide as the frame so that
        # each frame is a cheap slice of it.
        x = np.arange(2 * width, dtype=np.float32)
        y = np.arange(height, dtype=np.float32)[:, None]
        stripes = 128 + 80 * np.sin((x[None, :] + y) * (2 * math.pi / 96))
        self._stripes = stripes.astype(np.uint8)
        self._u = np.uint8(128 + 60 * math.cos(hue))
        self._v = np.uint8(128 + 60 * math.sin(hue))

    def make_frame(self, index: int) -> av.VideoFrame:
        width, height = self.width, self.height
        shift = (index * 8) % width
        buffer = np.empty((height * 3 // 2, width), np.uint8)
        buffer[:height] = self._stripes[:, shift : shift + width]
        # A bright square travelling left to right: motion a viewer can see.
        square = height // 4
        left = (index * 6) % (width - square)
        top = height // 2 - square // 2
        buffer[top : top + square, left : left + square] = _WHITE
        draw_frame_counter(buffer[:height], index)
        # Chroma: the planes are quarter size; view them as rows of half width.
        chroma = buffer[height:].reshape(-1, width // 2)
        chroma[: height // 2] = self._u
        chroma[height // 2 :] = self._v
        frame = av.VideoFrame.from_ndarray(buffer, format="yuv420p")
        frame.pts = round(index * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = VIDEO_TIME_BASE
        return frame

    async def recv(self) -> av.VideoFrame:
        index = await self._next_index()
        return self.make_frame(index)


class ToneAudioTrack(_PacedTrack):
    """A sine tone: 48 kHz mono s16, 20 ms frames, pts counted in samples."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0, volume: float = 0.3) -> None:
        if not 20 <= frequency <= AUDIO_SAMPLE_RATE / 2:
            raise ValueError(f"frequency {frequency} out of range")
        super().__init__(AUDIO_FRAME_SAMPLES / AUDIO_SAMPLE_RATE)
        self.frequency = frequency
        self._amplitude = int(32767 * max(0.0, min(volume, 1.0)))

    def make_frame(self, index: int) -> av.AudioFrame:
        first = index * AUDIO_FRAME_SAMPLES
        t = (np.arange(first, first + AUDIO_FRAME_SAMPLES) % AUDIO_SAMPLE_RATE) / AUDIO_SAMPLE_RATE
        samples = (self._amplitude * np.sin(2 * math.pi * self.frequency * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = first
        frame.time_base = AUDIO_TIME_BASE
        return frame

    async def recv(self) -> av.AudioFrame:
        index = await self._next_index()
        return self.make_frame(index)


def open_media_file(path: str, loop: bool = True) -> MediaPlayer:
    """A MediaPlayer for a local file; use `.audio` / `.video` (either may be None).

    aiortc's player decodes in a thread and paces frames in real time. Call
    `stop_media_player` when done.
    """
    return MediaPlayer(path, loop=loop)


def stop_media_player(player: MediaPlayer) -> None:
    for track in (player.audio, player.video):
        if track is not None:
            track.stop()
