"""The live mix WHEP viewers hear: pure decisions over numpy arrays, no clock, no I/O.

    decoded Opus of a source -> PlayoutBuffer (short: latency matters, not completeness)
    every 20 ms slot         -> LiveMix.next_frame(): one frame of each playing source,
                                summed and soft-limited (`mix_frames`)
    FrameClock               -> how many slots are due at a monotonic time, so the
                                owner's timer may be late without the stream drifting

Unlike the recording's mix (recorder/media/mixer.py), which waits a second for every
packet and places each on the recording's timeline, this one is heard live: a source
plays in arrival order from a small prebuffer, a late or lost packet is a short silence,
and a buffer that grew (a burst after a stall) is cut back so the delay stays bounded.
While the announcer plays, the others are ducked under it.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from common.notices import FRAME_SAMPLES, SAMPLE_RATE
from recorder.media.mixer import soft_limit

FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE  # 20 ms
# A source starts (or restarts after running dry) once this much is waiting: enough to
# ride out the arrival jitter of loopback and a loaded worker's loop.
PREBUFFER_SAMPLES = 3 * FRAME_SAMPLES
# More than this waiting means the source ran ahead of the mix (a burst after a stall):
# the oldest audio is dropped down to the prebuffer, keeping the delay bounded.
MAX_BUFFER_SAMPLES = 10 * FRAME_SAMPLES
# A timer that woke this many slots late makes at most this many frames at once; the
# rest are skipped (their timestamps too: the stream stays in step with real time).
MAX_BURST_FRAMES = 5
# While a source that ducks plays (the announcer: the recording notice), every other
# source is this much quieter (-20 dB): a viewer has no banner, the spoken notice must
# be understood over whoever is talking.
DUCK_GAIN = 0.1


def mix_frames(frames: list[np.ndarray], length: int = FRAME_SAMPLES) -> tuple[np.ndarray, int]:
    """The sum of `frames` (float samples in [-1, 1], each `length` long), bent by the
    limiter into [-LIMIT_CEILING, LIMIT_CEILING]: no sum of sources, however loud, goes
    past full scale, and a sum below the limiter's knee passes unchanged. Returns the
    mixed frame and how many of its samples the plain sum had beyond full scale."""
    out = np.zeros(length, dtype=np.float32)
    for frame in frames:
        out += frame
    clipped = int(np.count_nonzero(np.abs(out) > 1.0))
    return soft_limit(out), clipped


class PlayoutBuffer:
    """One source's decoded samples waiting for the mix, in arrival order."""

    __slots__ = ("_chunks", "_samples", "dropped_samples", "playing", "underruns")

    def __init__(self) -> None:
        self._chunks: deque[np.ndarray] = deque()
        self._samples = 0
        self.playing = False  # past its prebuffer; False again once it runs dry
        self.underruns = 0  # times it ran dry while playing
        self.dropped_samples = 0  # cut to bound the delay

    @property
    def waiting(self) -> int:
        return self._samples

    def push(self, pcm: np.ndarray) -> None:
        if not len(pcm):
            return
        self._chunks.append(np.asarray(pcm, dtype=np.float32))
        self._samples += len(pcm)
        if self._samples > MAX_BUFFER_SAMPLES:
            self._drop(self._samples - PREBUFFER_SAMPLES)

    def take(self, count: int) -> np.ndarray | None:
        """The next `count` samples (zero-padded if it runs dry within them), or None
        while it is not playing (prebuffering)."""
        if not self.playing:
            if self._samples < PREBUFFER_SAMPLES:
                return None
            self.playing = True
        out = np.zeros(count, dtype=np.float32)
        filled = 0
        while filled < count and self._chunks:
            chunk = self._chunks[0]
            used = min(count - filled, len(chunk))
            out[filled : filled + used] = chunk[:used]
            filled += used
            self._consume(used)
        if filled < count:  # ran dry: wait for a prebuffer again before playing on
            self.playing = False
            self.underruns += 1
        return out

    def _drop(self, count: int) -> None:
        self.dropped_samples += count
        while count > 0 and self._chunks:
            used = min(count, len(self._chunks[0]))
            self._consume(used)
            count -= used

    def _consume(self, count: int) -> None:
        chunk = self._chunks[0]
        if count >= len(chunk):
            self._chunks.popleft()
        else:
            self._chunks[0] = chunk[count:]
        self._samples -= count


class LiveMix:
    """Every source of one mix; `next_frame()` once per 20 ms slot."""

    def __init__(self) -> None:
        self.sources: dict[str, PlayoutBuffer] = {}
        self.ducking: set[str] = set()  # sources the others are ducked under while they play
        self.frames = 0  # frames made
        self.clipped_samples = 0  # beyond full scale before the limiter
        self.unknown_samples = 0  # pushed for a source that is not (or no longer) in

    def add(self, source_id: str, ducks_others: bool = False) -> None:
        self.sources.setdefault(source_id, PlayoutBuffer())
        if ducks_others:
            self.ducking.add(source_id)

    def remove(self, source_id: str) -> None:
        self.sources.pop(source_id, None)
        self.ducking.discard(source_id)

    def push(self, source_id: str, pcm: np.ndarray) -> None:
        source = self.sources.get(source_id)
        if source is None:
            self.unknown_samples += len(pcm)
            return
        source.push(pcm)

    def next_frame(self) -> np.ndarray:
        taken = {source_id: source.take(FRAME_SAMPLES) for source_id, source in self.sources.items()}
        ducked = any(taken[source_id] is not None for source_id in self.ducking)
        frames = [pcm if not ducked or source_id in self.ducking else pcm * DUCK_GAIN
                  for source_id, pcm in taken.items() if pcm is not None]  # fmt: skip
        frame, clipped = mix_frames(frames)
        self.frames += 1
        self.clipped_samples += clipped
        return frame

    def playing(self) -> int:
        return sum(1 for source in self.sources.values() if source.playing)


class FrameClock:
    """Which 20 ms slots are due: slot n is due at `start + n * FRAME_SECONDS`."""

    __slots__ = ("next_slot", "skipped", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.next_slot = 0  # the first slot not made yet
        self.skipped = 0

    def due(self, now: float) -> list[int]:
        """The slots to make now, in order (at most MAX_BURST_FRAMES; older ones skipped)."""
        last = int((now - self.start) / FRAME_SECONDS)
        if last < self.next_slot:
            return []
        first = max(self.next_slot, last - MAX_BURST_FRAMES + 1)
        self.skipped += first - self.next_slot
        self.next_slot = last + 1
        return list(range(first, last + 1))

    def at(self, slot: int) -> float:
        """When slot `slot` is due."""
        return self.start + slot * FRAME_SECONDS
