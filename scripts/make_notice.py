#!/usr/bin/env python3
"""Render the spoken notices with espeak-ng into common/notices/ (run once; the results
are committed, so neither the server nor the tests need espeak-ng).

For each notice kind (`recording-started`, `recording-stopped`, `transcription-started`,
`transcription-stopped`) it writes:
  <kind>.ogg          48 kHz mono Ogg/Opus: what the recorder mixes in
  <kind>.opus-frames  the same Opus packets, 20 ms each, each preceded by its length as
                      2 bytes big-endian: what the SFU sends as RTP (one packet every
                      20 ms, timestamp += 960) with no codec

    python scripts/make_notice.py [--out DIR] [KIND ...]   (default: every kind)

Needs `espeak-ng` (Debian: apt-get install -y espeak-ng) and the `av` package.
"""

from __future__ import annotations

import argparse
import fractions
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.notices import (  # noqa: E402  (the repository root is on the path only now)
    CLIPS,
    FRAME_SAMPLES,
    NOTICE_TEXT,
    SAMPLE_RATE,
    frames_path,
    ogg_path,
    pack_frames,
)

VOICE = "en-us"
WORDS_PER_MINUTE = 150
BITRATE = 24000  # speech, mono: a few KB per notice
PEAK = 0.7  # of full scale, leaving room when mixed with the meeting
LEAD_SILENCE = 0.1  # seconds before and after the speech


def render_speech(text: str, workdir: Path) -> tuple[np.ndarray, int]:
    """espeak-ng to a WAV file; returns mono int16 samples and their rate (22050)."""
    wav_path = workdir / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-v", VOICE, "-s", str(WORDS_PER_MINUTE), "-w", str(wav_path), text],
        check=True,
        capture_output=True,
    )
    with wave.open(str(wav_path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise RuntimeError(f"espeak-ng wrote {8 * wav.getsampwidth()}-bit samples, expected 16")
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        if wav.getnchannels() > 1:
            samples = samples.reshape(-1, wav.getnchannels())[:, 0]
        return samples.copy(), wav.getframerate()


def to_48k_mono(samples: np.ndarray, rate: int) -> np.ndarray:
    """Resample with libswresample; float32 in [-1, 1]."""
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    chunks = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32)


def shape(pcm: np.ndarray) -> np.ndarray:
    """Trim silence, normalize the peak, pad to whole 20 ms frames with a little silence."""
    loud = np.flatnonzero(np.abs(pcm) > 0.01)
    if loud.size:
        pcm = pcm[loud[0] : loud[-1] + 1]
    peak = float(np.max(np.abs(pcm))) or 1.0
    pcm = pcm * (PEAK / peak)
    pad = np.zeros(int(LEAD_SILENCE * SAMPLE_RATE), dtype=np.float32)
    pcm = np.concatenate([pad, pcm, pad])
    total = -(-len(pcm) // FRAME_SAMPLES) * FRAME_SAMPLES
    return np.concatenate([pcm, np.zeros(total - len(pcm), dtype=np.float32)]).astype(np.float32)


def encode(pcm: np.ndarray, ogg_file: Path) -> list[bytes]:
    """Encode 20 ms frames with libopus, write them into the Ogg file and return the
    very same packets, so both files carry identical audio."""
    container = av.open(str(ogg_file), "w", format="ogg")
    stream = container.add_stream("libopus", rate=SAMPLE_RATE, layout="mono")
    stream.codec_context.bit_rate = BITRATE
    stream.codec_context.options = {"application": "voip", "frame_duration": "20", "vbr": "on"}
    stream.codec_context.time_base = fractions.Fraction(1, SAMPLE_RATE)
    packets: list[bytes] = []

    def mux(encoded) -> None:
        for packet in encoded:
            packets.append(bytes(packet))
            container.mux(packet)

    for start in range(0, len(pcm), FRAME_SAMPLES):
        chunk = pcm[start : start + FRAME_SAMPLES].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = start
        mux(stream.encode(frame))
    mux(stream.encode(None))
    container.close()
    return packets


def make(kind: str, out: Path) -> tuple[Path, Path]:
    with tempfile.TemporaryDirectory() as workdir:
        samples, rate = render_speech(NOTICE_TEXT[kind], Path(workdir))
    pcm = shape(to_48k_mono(samples, rate))
    ogg_file = ogg_path(kind, out)
    packets = encode(pcm, ogg_file)
    frames_file = frames_path(kind, out)
    frames_file.write_bytes(pack_frames(packets))
    return ogg_file, frames_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=CLIPS, help=f"directory (default: {CLIPS})")
    parser.add_argument("kinds", nargs="*", help=f"notices to render: {', '.join(NOTICE_TEXT)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [kind for kind in args.kinds if kind not in NOTICE_TEXT]
    if unknown:
        parser.error(f"unknown notice kind(s): {', '.join(unknown)}")
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is not installed (Debian: apt-get install -y espeak-ng)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for kind in args.kinds or NOTICE_TEXT:
        for path in make(kind, args.out):
            print(f"{path}  {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
