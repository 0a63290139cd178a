"""Speech for bots that take turns: an aiortc audio track that says something in its
turns and is silent (digital zeros) otherwise, for the active-speaker tests.

The speech is espeak-ng's (resampled to 48 kHz) when `espeak-ng` is installed, else a
synthetic voice: a 140 Hz buzz rich in harmonics, shaped into syllables of 120-300 ms with
short dips between them (what the detector looks for is loudness that rises and falls
like speech). aiortc computes each frame's RFC 6464 level from these samples
(`aiortc.rtp.compute_audio_level_dbov`) and sends it in the audio-level extension.

    track = TurnTakingTrack([(0.0, 3.0), (6.0, 9.0)])   # seconds after `start()`
    bot = server.bot(meeting, "ann", audio=track)
    ...
    track.start(at=time.monotonic() + 1.0)
"""

from __future__ import annotations

import io
import math
import random
import shutil
import subprocess
import time
import wave

import av
import numpy as np

from client.media import AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE, AUDIO_TIME_BASE, _PacedTrack

TEXT = (
    "Good morning everyone. The numbers for the quarter look better than we planned, "
    "and the team shipped the new release on time. Let us go through the open questions, "
    "one by one, and then decide who takes which task for next week."
)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def espeak_speech(text: str = TEXT) -> np.ndarray:
    """espeak-ng saying `text`: 48 kHz mono int16 (espeak writes 22.05 kHz)."""
    wav = subprocess.run(["espeak-ng", "--stdout", text], capture_output=True, check=True, timeout=30).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        rate = reader.getframerate()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype=np.int16)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_SAMPLE_RATE)
    out = [f.to_ndarray().reshape(-1) for f in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(out).astype(np.int16)


def synthetic_speech(seconds: float = 12.0, seed: int = 7) -> np.ndarray:
    """A buzz in syllables: loud (~-20 dBov) for 120-300 ms, then a 40-120 ms dip (~-60 dBov)."""
    rng = random.Random(seed)
    total = int(seconds * AUDIO_SAMPLE_RATE)
    envelope = np.empty(total, dtype=np.float32)
    position = 0
    while position < total:
        loud = int(rng.uniform(0.12, 0.30) * AUDIO_SAMPLE_RATE)
        quiet = int(rng.uniform(0.04, 0.12) * AUDIO_SAMPLE_RATE)
        ramp = np.sin(np.linspace(0, math.pi, loud)) ** 0.5 * rng.uniform(0.6, 1.0)
        envelope[position : position + loud] = ramp[: max(0, total - position)]
        envelope[position + loud : position + loud + quiet] = 0.003
        position += loud + quiet
    t = np.arange(total) / AUDIO_SAMPLE_RATE
    buzz = sum(np.sin(2 * math.pi * 140 * k * t) / k for k in range(1, 12))
    signal = 0.25 * envelope * buzz / np.max(np.abs(buzz))
    return (signal * 32767).astype(np.int16)


def speech_samples() -> np.ndarray:
    return espeak_speech() if espeak_available() else synthetic_speech()


class TurnTakingTrack(_PacedTrack):
    """48 kHz mono s16 in 20 ms frames, paced in real time: `speech` during each of `turns`
    ((start, end) seconds after `start(at)`, each turn from the beginning of the speech,
    looping), digital silence before `start` and between turns."""

    kind = "audio"

    def __init__(self, turns: list[tuple[float, float]], speech: np.ndarray | None = None) -> None:
        super().__init__(AUDIO_FRAME_SAMPLES / AUDIO_SAMPLE_RATE)
        self.turns = turns
        self.speech = speech if speech is not None else speech_samples()
        self.started_at: float | None = None
        self._silence = np.zeros(AUDIO_FRAME_SAMPLES, dtype=np.int16)

    def start(self, at: float) -> None:
        """The turns count from `at` (time.monotonic())."""
        self.started_at = at

    def samples_at(self, now: float) -> np.ndarray:
        if self.started_at is not None:
            elapsed = now - self.started_at
            for start, end in self.turns:
                if start <= elapsed < end:
                    first = int((elapsed - start) * AUDIO_SAMPLE_RATE) // AUDIO_FRAME_SAMPLES * AUDIO_FRAME_SAMPLES
                    indices = (np.arange(first, first + AUDIO_FRAME_SAMPLES)) % len(self.speech)
                    return self.speech[indices]
        return self._silence

    async def recv(self) -> av.AudioFrame:
        index = await self._next_index()
        samples = self.samples_at(time.monotonic())
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = index * AUDIO_FRAME_SAMPLES
        frame.time_base = AUDIO_TIME_BASE
        return frame
