"""recorder.media.mixer: the audio mix of the recording (the mix in a whole recording is
in test_pipeline.py)."""

from __future__ import annotations

import numpy as np


def test_mixer_keeps_a_mono_voice_at_its_level():
    """WebRTC's opus/48000/2 decodes a mono voice as stereo with L = R; the mixer must
    not add the two (a downmix at 0.707 each would make everyone 3 dB louder)."""
    import av

    from recorder.media.mixer import _Source

    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "mono", "s16"
    encoder.bit_rate = 64000
    t = np.arange(48000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    packets = []
    for start in range(0, len(tone), 960):
        frame = av.AudioFrame.from_ndarray(tone[start : start + 960].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, start
        packets += [bytes(p) for p in encoder.encode(frame)]
    source = _Source()
    decoded = np.concatenate([source.decode(p) for p in packets])
    steady = decoded[len(decoded) // 4 : -len(decoded) // 4]  # past the codec's start-up
    level = np.sqrt(np.mean(steady**2)) / (0.5 / np.sqrt(2))
    assert 0.9 < level < 1.1, level
