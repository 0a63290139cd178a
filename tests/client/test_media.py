"""Generated bot media: valid frames, correct timing fields, a counter that survives VP8."""

import fractions

import av
import numpy as np
import pytest

from client.media import (
    AUDIO_FRAME_SAMPLES,
    GeneratedVideoTrack,
    ToneAudioTrack,
    read_frame_counter,
)


async def test_video_track_frames():
    track = GeneratedVideoTrack(fps=30)
    frames = [await track.recv() for _ in range(4)]
    track.stop()
    for index, frame in enumerate(frames):
        assert isinstance(frame, av.VideoFrame)
        assert (frame.width, frame.height) == (640, 360)
        assert frame.format.name == "yuv420p"
        assert frame.time_base == fractions.Fraction(1, 90000)
        assert frame.pts == index * 3000
        assert read_frame_counter(frame) == index
    # The pattern moves.
    first, last = (np.asarray(f.to_ndarray()) for f in (frames[0], frames[-1]))
    assert (first != last).mean() > 0.1


async def test_stopped_track_raises():
    from aiortc.mediastreams import MediaStreamError

    track = GeneratedVideoTrack()
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


def test_invalid_video_parameters():
    with pytest.raises(ValueError):
        GeneratedVideoTrack(width=641)
    with pytest.raises(ValueError):
        GeneratedVideoTrack(fps=0)


def test_counter_absent_on_other_frames():
    frame = av.VideoFrame.from_ndarray(np.full((360, 640, 3), 128, np.uint8), format="rgb24")
    assert read_frame_counter(frame) is None
    assert read_frame_counter(av.VideoFrame(64, 32, "yuv420p")) is None


def test_counter_survives_vp8_round_trip():
    track = GeneratedVideoTrack()
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 640, 360, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 90000)
    encoder.bit_rate = 300_000
    decoder = av.CodecContext.create("vp8", "r")
    counters = [1, 2, 500, 70_000, 2**24 - 1]
    decoded = []
    for number in counters:
        for packet in encoder.encode(track.make_frame(number)):
            decoded += [read_frame_counter(f) for f in decoder.decode(packet)]
    for packet in encoder.encode(None):
        decoded += [read_frame_counter(f) for f in decoder.decode(packet)]
    assert decoded == counters


async def test_audio_track_frames():
    track = ToneAudioTrack(frequency=1000)
    frames = [await track.recv() for _ in range(3)]
    track.stop()
    for index, frame in enumerate(frames):
        assert isinstance(frame, av.AudioFrame)
        assert frame.sample_rate == 48000
        assert frame.samples == AUDIO_FRAME_SAMPLES
        assert frame.format.name == "s16" and frame.layout.name == "mono"
        assert frame.pts == index * AUDIO_FRAME_SAMPLES
        assert frame.time_base == fractions.Fraction(1, 48000)
    samples = np.concatenate([f.to_ndarray()[0] for f in frames]).astype(np.float64)
    assert np.abs(samples).max() > 5000
    # 1 kHz: the strongest frequency bin of 60 ms of tone is the tone.
    spectrum = np.abs(np.fft.rfft(samples))
    peak_hz = np.argmax(spectrum) * 48000 / len(samples)
    assert abs(peak_hz - 1000) < 50
