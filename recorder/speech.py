"""A participant's audio kept for transcription, and the transcript made from it.

While transcription is on, each audio track's Opus packets are decoded to 16 kHz mono
int16 (what the engines want) and appended to a file in the recording's `speech/`
directory: a "run" that starts at a known place on the recording timeline and holds
contiguous samples (short gaps are filled with silence; a gap longer than
MAX_GAP_SECONDS starts a new run, so a muted hour costs nothing). Files survive a crash;
the session journals each run when it starts.

At stop every run is transcribed with the configured engine, its segments are placed on
the meeting timeline with the speaker's display name, and all of them become one WebVTT
and one JSON transcript.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from recorder.media.mixer import opus_decoder
from recorder.transcription import Segment, TranscriptionEngine, merge, place, to_json, to_webvtt
from recorder.transcription.audio import SPEECH_RATE  # what the engines want

log = logging.getLogger(__name__)

MAX_GAP_SECONDS = 5.0
SNAP_SAMPLES = 160  # 10 ms: closer than this to where the run ends counts as contiguous
SUFFIX = ".s16"
TRANSCRIPT_VTT = "transcript.vtt"
TRANSCRIPT_JSON = "transcript.json"


@dataclass(frozen=True)
class SpeechRun:
    path: Path
    start: float  # recording seconds of the first sample
    track_id: str
    participant_id: str
    display_name: str


class SpeechCollector:
    """One audio track's speech: `push(opus_payload, pts)` per frame, `close()` at the end."""

    def __init__(
        self,
        directory: Path,
        stem: str,
        track_id: str,
        participant_id: str,
        display_name: str,
        on_new_run: Callable[[SpeechRun], None],
    ) -> None:
        self.directory = directory
        self.stem = stem
        self.track_id = track_id
        self.participant_id = participant_id
        self.display_name = display_name
        self.on_new_run = on_new_run
        self.samples_total = 0
        self.decode_errors = 0
        self._decoder = opus_decoder()
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SPEECH_RATE)
        self._run: SpeechRun | None = None
        self._file = None
        self._written = 0  # samples in the current run
        self._runs = 0

    @property
    def seconds(self) -> float:
        return self.samples_total / SPEECH_RATE

    def push(self, payload: bytes, pts: float) -> None:
        try:
            samples = self._decode(payload)
        except (av.FFmpegError, ValueError):
            self.decode_errors += 1
            return
        if not len(samples):
            return
        if self._run is None:
            self._start_run(pts)
        position = round((pts - self._run.start) * SPEECH_RATE)
        gap = position - self._written
        if gap > MAX_GAP_SECONDS * SPEECH_RATE:
            self._start_run(pts)
            gap = 0
        if gap > SNAP_SAMPLES:
            self._write(np.zeros(gap, dtype=np.int16))
        elif gap < -SNAP_SAMPLES:
            samples = samples[-gap:]  # overlaps what is written: keep the old
        self._write(samples)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _decode(self, payload: bytes) -> np.ndarray:
        out = []
        for frame in self._decoder.decode(av.Packet(payload)):
            for mono in self._resampler.resample(frame):
                out.append(mono.to_ndarray().reshape(-1))
        return np.concatenate(out).astype(np.int16) if out else np.zeros(0, np.int16)

    def _start_run(self, pts: float) -> None:
        self.close()
        path = self.directory / f"{self.stem}-{self._runs:03d}{SUFFIX}"
        self._runs += 1
        self._run = SpeechRun(path, max(0.0, pts), self.track_id, self.participant_id, self.display_name)
        self._file = open(path, "ab")  # noqa: SIM115 - kept open for the run's lifetime
        self._written = 0
        self.on_new_run(self._run)

    def _write(self, samples: np.ndarray) -> None:
        if not len(samples):
            return
        self._file.write(samples.astype("<i2").tobytes())
        self._written += len(samples)
        self.samples_total += len(samples)


def journaled_runs(entries: Iterable[Mapping[str, Any]], directory: Path) -> list[SpeechRun]:
    """The runs a recording's journal lists ("speech" entries), files in `directory`."""
    return [
        SpeechRun(
            directory / e["file"],
            float(e.get("start", 0.0)),
            str(e.get("track_id", "")),
            str(e.get("participant_id", "")),
            str(e.get("display_name", "")),
        )
        for e in entries
        if e.get("type") == "speech" and isinstance(e.get("file"), str)
    ]


def transcription_was_on(entries: Iterable[Mapping[str, Any]]) -> bool:
    """Whether transcription was on at any time of a recording (then it gets a transcript,
    even an empty one)."""
    return any(
        (e.get("type") == "start" and e.get("transcribe"))
        or (e.get("type") == "transcription" and e.get("enabled"))
        or e.get("type") == "speech"
        for e in entries
    )


def read_run(path: Path) -> np.ndarray:
    """The samples of a run file (a crash may have cut its last sample in half)."""
    data = path.read_bytes()
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")


def run_seconds(path: Path) -> float:
    try:
        return path.stat().st_size / 2 / SPEECH_RATE
    except OSError:
        return 0.0


async def transcribe_runs(
    engine: TranscriptionEngine,
    runs: Sequence[SpeechRun],
    hints: Sequence[str],
    on_progress: Callable[[float], None],
) -> list[Segment]:
    """Every run through the engine, placed on the meeting timeline with its speaker.
    `on_progress(seconds)` is called after each run with the audio seconds it held."""
    placed = []
    for run in runs:
        if not run.path.is_file():
            continue
        pcm = await asyncio.to_thread(read_run, run.path)
        seconds = len(pcm) / SPEECH_RATE
        if len(pcm) >= SPEECH_RATE // 10:
            try:
                own = await engine.transcribe(pcm, SPEECH_RATE, list(hints))
            except Exception as error:  # noqa: BLE001 - one failed run must not lose the others
                log.error("transcription of %s failed: %s", run.path.name, error)
                own = []
            placed.append(place(own, run.display_name, offset=run.start))
        on_progress(seconds)
    return merge(placed)


def write_transcript(directory: Path, segments: list[Segment], meta: dict[str, Any]) -> tuple[Path, Path]:
    """transcript.vtt and transcript.json in directory (blocking)."""
    vtt = directory / TRANSCRIPT_VTT
    doc = directory / TRANSCRIPT_JSON
    vtt.write_text(to_webvtt(segments), encoding="utf-8")
    doc.write_text(json.dumps(to_json(segments, meta), indent=1, ensure_ascii=False), encoding="utf-8")
    return vtt, doc
