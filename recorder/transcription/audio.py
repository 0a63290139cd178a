"""Audio preparation shared by the engines: any PCM in, 16 kHz mono int16 out.

Speech recognizers (pocketsphinx's acoustic model, Whisper-style services) want 16 kHz
mono; participants' audio arrives at 48 kHz (Opus), test speech at 22.05 kHz (espeak-ng).
Resampling goes through libswresample (via `av`), which low-pass filters before
decimating: plain interpolation would fold 8-11 kHz energy back into the speech band.
"""

from __future__ import annotations

import io
import wave

import av
import numpy as np

SPEECH_RATE = 16000
MAX_SAMPLE_RATE = 384000
_RESAMPLE_BLOCK = 1 << 20  # samples handed to the resampler at a time (bounded memory)


def to_mono_float(pcm: np.ndarray) -> np.ndarray:
    """float32 mono in [-1, 1] from int16/int32/uint8/float PCM, 1-D or frames x channels."""
    samples = np.asarray(pcm)
    if samples.ndim not in (1, 2):
        raise ValueError(f"pcm must be 1-D or frames x channels, not {samples.ndim}-D")
    if samples.ndim == 2 and samples.shape[1] == 0:
        raise ValueError("pcm has no channels")
    scaled = _scale(samples, samples.dtype)
    if scaled.ndim == 2:
        # Channels are averaged, not summed: a mix of the same voice must not clip.
        scaled = scaled.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(scaled, dtype=np.float32)


def _scale(samples: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.uint8:
        return ((samples.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if np.issubdtype(dtype, np.integer):
        full_scale = float(np.iinfo(dtype).max) + 1.0
        return (samples.astype(np.float32) / full_scale).astype(np.float32)
    if np.issubdtype(dtype, np.floating):
        cleaned = np.nan_to_num(samples.astype(np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
        return np.clip(cleaned, -1.0, 1.0)
    raise ValueError(f"pcm must hold integers or floats, not {dtype}")


def check_pcm(pcm: np.ndarray, sample_rate: int) -> np.ndarray:
    """pcm as an array if it is PCM the engines take at sample_rate; ValueError otherwise."""
    valid_type = isinstance(sample_rate, (int, np.integer)) and not isinstance(sample_rate, bool)
    if not valid_type or not 0 < sample_rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be an integer in 1..{MAX_SAMPLE_RATE}")
    samples = np.asarray(pcm)
    if samples.ndim not in (1, 2):
        raise ValueError(f"pcm must be 1-D or frames x channels, not {samples.ndim}-D")
    if samples.ndim == 2 and samples.shape[1] == 0:
        raise ValueError("pcm has no channels")
    if samples.dtype.kind not in "iuf":
        raise ValueError(f"pcm must hold integers or floats, not {samples.dtype}")
    return samples


def to_speech_pcm(pcm: np.ndarray, sample_rate: int, rate: int = SPEECH_RATE) -> np.ndarray:
    """int16 mono at rate (16 kHz by default) from any supported PCM."""
    samples = check_pcm(pcm, sample_rate)
    sample_rate = int(sample_rate)
    mono = to_mono_float(samples)
    if mono.size == 0:
        return np.zeros(0, dtype=np.int16)
    if sample_rate == rate:
        return np.clip(np.round(mono * 32768.0), -32768, 32767).astype(np.int16)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    pieces: list[np.ndarray] = []
    for first in range(0, mono.size, _RESAMPLE_BLOCK):
        block = np.ascontiguousarray(mono[first : first + _RESAMPLE_BLOCK]).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(block, format="flt", layout="mono")
        frame.sample_rate = sample_rate
        pieces.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
    pieces.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    return np.concatenate(pieces).astype(np.int16, copy=False) if pieces else np.zeros(0, np.int16)


def wav_bytes(pcm16: np.ndarray, rate: int = SPEECH_RATE) -> bytes:
    """A complete RIFF/WAVE file (16-bit mono) holding pcm16."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(np.asarray(pcm16, dtype="<i2").tobytes())
    return buffer.getvalue()


def ogg_opus_bytes(pcm16: np.ndarray, rate: int = SPEECH_RATE, bitrate: int = 32000) -> bytes:
    """An Ogg/Opus file of pcm16 (about 15x smaller than WAV for uploads)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48000)
        stream.bit_rate = bitrate
        stream.layout = "mono"
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        samples = np.asarray(pcm16, dtype=np.int16)
        for first in range(0, max(samples.size, 1), _RESAMPLE_BLOCK):
            block = np.ascontiguousarray(samples[first : first + _RESAMPLE_BLOCK]).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate = rate
            for resampled in resampler.resample(frame):
                container.mux(stream.encode(resampled))
        for resampled in resampler.resample(None):
            container.mux(stream.encode(resampled))
        container.mux(stream.encode(None))
    return buffer.getvalue()
