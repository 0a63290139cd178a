"""Audio preparation for the engines: any PCM in, 16 kHz mono int16 out."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from recorder.transcription.audio import to_mono_float, to_speech_pcm, wav_bytes


def sine(freq: float, seconds: float, rate: int) -> np.ndarray:
    return (np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate) * 0.5).astype(np.float32)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_speech_pcm_keeps_duration_and_pitch(rate):
    out = to_speech_pcm(sine(440, 2.0, rate), rate)
    assert out.dtype == np.int16
    assert abs(out.size - 32000) <= 32
    assert abs(dominant_frequency(out, 16000) - 440) < 2
    assert 15000 < np.abs(out).max() < 17500  # half scale stays half scale


def test_frequencies_above_8khz_are_filtered_not_folded_into_speech():
    # A 10 kHz tone at 48 kHz cannot exist at 16 kHz; naive decimation would alias it to 6 kHz.
    out = to_speech_pcm(sine(10000, 1.0, 48000), 48000)
    assert np.abs(out[200:-200]).max() < 500


def test_formats_and_channel_layouts():
    assert np.allclose(to_mono_float(np.array([0, 16384, -32768], np.int16)), [0, 0.5, -1])
    assert np.allclose(to_mono_float(np.array([128, 255, 0], np.uint8)), [0, 127 / 128, -1])
    assert np.allclose(to_mono_float(np.array([[1.0, 0.0], [0.5, 0.5]])), [0.5, 0.5])
    assert np.allclose(to_mono_float(np.array([np.nan, 3.0, -np.inf])), [0, 1, -1])
    assert np.allclose(to_mono_float(np.array([2**30], np.int32)), [0.5])
    stereo = np.stack([sine(300, 1.0, 48000)] * 2, axis=1)
    assert abs(dominant_frequency(to_speech_pcm(stereo, np.int64(48000)), 16000) - 300) < 2


@pytest.mark.parametrize(
    "pcm, rate, problem",
    [
        (np.zeros((2, 2, 2)), 16000, "1-D or frames x channels"),
        (np.zeros((10, 0)), 16000, "no channels"),
        (np.array(["a"]), 16000, "integers or floats"),
        (np.zeros(10), 0, "sample_rate"),
        (np.zeros(10), 16000.0, "sample_rate"),
        (np.zeros(10), True, "sample_rate"),
    ],
)
def test_bad_input_is_a_value_error_naming_the_problem(pcm, rate, problem):
    with pytest.raises(ValueError, match=problem):
        to_speech_pcm(pcm, rate)


def test_wav_bytes_is_a_16khz_mono_wave_file():
    samples = np.arange(-100, 100, dtype=np.int16)
    with wave.open(io.BytesIO(wav_bytes(samples))) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 16000)
        assert np.array_equal(np.frombuffer(reader.readframes(1000), np.int16), samples)
