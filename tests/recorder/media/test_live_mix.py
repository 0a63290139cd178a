"""recorder.media.live_mix: the WHEP viewers' live mix as pure decisions over numpy arrays
(the sum and its limiter, each source's playout buffer, the 20 ms slot clock)."""

from __future__ import annotations

import numpy as np
import pytest

from recorder.media.live_mix import (
    FRAME_SAMPLES,
    MAX_BUFFER_SAMPLES,
    MAX_BURST_FRAMES,
    PREBUFFER_SAMPLES,
    FrameClock,
    LiveMix,
    PlayoutBuffer,
    mix_frames,
)
from recorder.media.mixer import LIMIT_CEILING, LIMIT_KNEE

pytestmark = pytest.mark.unit

RATE = 48000


def sine(frequency: float, amplitude: float, samples: int = FRAME_SAMPLES, start: int = 0) -> np.ndarray:
    t = (np.arange(samples) + start) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def level(pcm: np.ndarray, frequency: float) -> float:
    t = np.arange(len(pcm)) / RATE
    return float(2 * abs(np.dot(pcm, np.exp(-2j * np.pi * frequency * t))) / len(pcm))


def test_quiet_sources_are_summed_unchanged():
    a, b = sine(440, 0.2), sine(1000, 0.2)
    mixed, clipped = mix_frames([a, b])
    assert clipped == 0
    assert np.max(np.abs(a + b)) < LIMIT_KNEE
    np.testing.assert_allclose(mixed, a + b, atol=1e-6)


def test_a_loud_sum_is_limited_below_full_scale_and_keeps_its_sign():
    sources = [sine(440, 1.0), sine(440, 1.0), sine(1000, 0.9)]  # three at full scale: up to 2.9
    plain = sum(sources)
    mixed, clipped = mix_frames(sources)
    assert clipped == int(np.count_nonzero(np.abs(plain) > 1.0)) > 0
    assert np.max(np.abs(mixed)) <= LIMIT_CEILING  # no sum goes past full scale
    assert np.all(np.sign(mixed[np.abs(plain) > 0.01]) == np.sign(plain[np.abs(plain) > 0.01]))
    # The limiter is monotonic: a louder sample of the sum never comes out quieter.
    order = np.argsort(np.abs(plain))
    assert np.all(np.diff(np.abs(mixed)[order]) >= -1e-6)


def test_no_source_is_louder_in_the_mix_than_alone():
    voice = sine(440, 0.9)
    alone, _ = mix_frames([voice])
    together, _ = mix_frames([voice, sine(1000, 0.9)])
    assert level(together, 440) <= level(alone, 440) + 1e-3


def test_a_source_plays_after_its_prebuffer_and_pauses_when_it_runs_dry():
    buffer = PlayoutBuffer()
    buffer.push(sine(440, 0.5, PREBUFFER_SAMPLES - FRAME_SAMPLES))
    assert buffer.take(FRAME_SAMPLES) is None  # still prebuffering
    buffer.push(sine(440, 0.5, FRAME_SAMPLES))
    frames = [buffer.take(FRAME_SAMPLES) for _ in range(PREBUFFER_SAMPLES // FRAME_SAMPLES)]
    assert all(f is not None and np.max(np.abs(f)) > 0.4 for f in frames)
    half = buffer.take(FRAME_SAMPLES)  # ran dry: zeros, and it waits for a prebuffer again
    assert half is not None and not half.any() and not buffer.playing and buffer.underruns == 1
    buffer.push(sine(440, 0.5, FRAME_SAMPLES))
    assert buffer.take(FRAME_SAMPLES) is None


def test_a_burst_is_cut_back_so_the_delay_stays_bounded():
    buffer = PlayoutBuffer()
    burst = np.arange(MAX_BUFFER_SAMPLES + 5 * FRAME_SAMPLES, dtype=np.float32)
    for start in range(0, len(burst), FRAME_SAMPLES):
        buffer.push(burst[start : start + FRAME_SAMPLES])
    assert buffer.waiting <= MAX_BUFFER_SAMPLES
    assert buffer.dropped_samples > 0
    out = buffer.take(FRAME_SAMPLES)
    assert out is not None and out[0] == buffer.dropped_samples  # the oldest went, order kept


def test_two_voices_at_once_are_both_in_the_mix_frame_by_frame():
    mix = LiveMix()
    mix.add("ann")
    mix.add("bob")
    mix.push("cat", sine(700, 0.5))  # not in the mix: counted, not heard
    heard = []
    for n in range(20):
        mix.push("ann", sine(440, 0.3, start=n * FRAME_SAMPLES))
        mix.push("bob", sine(1000, 0.3, start=n * FRAME_SAMPLES))
        if n >= 3:
            heard.append(mix.next_frame())
    pcm = np.concatenate(heard)
    assert level(pcm, 440) > 0.25 and level(pcm, 1000) > 0.25 and level(pcm, 700) < 0.01
    assert mix.unknown_samples == FRAME_SAMPLES and mix.playing() == 2
    mix.remove("bob")
    later = []
    for n in range(20, 30):
        mix.push("ann", sine(440, 0.3, start=n * FRAME_SAMPLES))
        later.append(mix.next_frame())
    later = np.concatenate(later)
    assert level(later, 1000) < 0.01 and level(later, 440) > 0.25


def test_silence_when_nobody_speaks():
    mix = LiveMix()
    mix.add("ann")
    frame = mix.next_frame()
    assert len(frame) == FRAME_SAMPLES and not frame.any()


def test_slots_are_due_every_20_ms_and_a_late_timer_skips_old_ones():
    clock = FrameClock(100.0)
    assert clock.due(100.0) == [0]
    assert clock.due(100.019) == []
    assert clock.due(100.041) == [1, 2]
    assert clock.at(3) == pytest.approx(100.06)
    late = clock.due(100.0 + 0.02 * 20 + 0.001)  # woke 17 slots late
    assert late == list(range(20 - MAX_BURST_FRAMES + 1, 21)) and clock.skipped == 20 - MAX_BURST_FRAMES - 2
    assert clock.due(100.0 + 0.02 * 21) == [21]  # and on from there, no slot twice


def test_the_announcer_ducks_the_others_while_it_plays():
    mix = LiveMix()
    mix.add("ann")
    mix.add("announcer", ducks_others=True)
    frames = []
    for n in range(12):
        mix.push("ann", sine(440, 0.3, start=n * FRAME_SAMPLES))
        if n < 6:
            mix.push("announcer", sine(1000, 0.3, start=n * FRAME_SAMPLES))
        frames.append(mix.next_frame())
    during, after = np.concatenate(frames[3:6]), np.concatenate(frames[-3:])
    assert level(during, 1000) > 0.25 and level(during, 440) == pytest.approx(0.03, abs=0.005)
    assert level(after, 440) > 0.25 and level(after, 1000) < 0.01  # the notice over: full level again
