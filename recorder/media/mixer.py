"""The meeting's mixed audio: decode each participant's Opus, place the samples on the
recording's timeline, sum them with numpy and encode the sum as Ogg/Opus segments.

Samples are indexed from the start of the recording (48 kHz). The mix begins with the
recording notice at time 0, mixed with whatever the participants said meanwhile (they
heard the notice at that moment too). The owner calls `mix_until(t)` regularly with a
time a little behind live (every track must have delivered its audio up to `t`); audio
that arrives for an already mixed stretch is counted and dropped.

Segment k covers [start + k·segment_seconds, start + (k+1)·segment_seconds) and is a
complete Ogg file of its own (a fresh encoder per segment). Like track segments, it is
written as `.part` and renamed when finished.
"""

from __future__ import annotations

import fractions
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from common.notices import FRAME_SAMPLES, SAMPLE_RATE
from recorder.media.notice import notice_pcm
from recorder.media.segments import (
    MAX_SEGMENT_SECONDS,
    START_TAG,
    PART_SUFFIX,
    ClosedSegment,
    ContainerKind,
    fsync_path,
    salvage_partial,
    segment_name,
)

log = logging.getLogger(__name__)

MIX_TRACK_ID = "mix"
MIX_KIND = ContainerKind("ogg", ".ogg", "audio/ogg")
DEFAULT_BITRATE = 48000
# A packet placed within this of where the track's previous one ended is put exactly
# there: rounding must not leave clicks (gaps) or doubled samples (overlaps).
SNAP_SAMPLES = 240  # 5 ms
LIMIT_KNEE = 0.7  # below this the sum passes unchanged
LIMIT_CEILING = 0.95  # the limiter never exceeds this: headroom for the codec's overshoot


def soft_limit(pcm: np.ndarray) -> np.ndarray:
    """Clip-safe sum: samples beyond the knee bend smoothly (tanh) toward the ceiling, so
    a loud sum neither wraps nor clips hard (hard clipping makes harmonics that the
    encoder turns into peaks above full scale). Slope 1 at the knee: no kink."""
    magnitude = np.abs(pcm)
    loud = magnitude > LIMIT_KNEE
    if np.any(loud):
        span = LIMIT_CEILING - LIMIT_KNEE
        bent = LIMIT_KNEE + span * np.tanh((magnitude[loud] - LIMIT_KNEE) / span)
        pcm[loud] = np.sign(pcm[loud]) * bent
    return pcm


def opus_decoder() -> av.CodecContext:
    """A decoder for one participant's Opus RTP payloads (mono packets decode too)."""
    decoder = av.CodecContext.create("opus", "r")
    decoder.sample_rate = SAMPLE_RATE
    decoder.layout = "stereo"  # WebRTC's opus/48000/2
    return decoder


class MixerStats:
    __slots__ = ("packets", "decode_errors", "late_samples", "mixed_samples", "clipped_samples", "segments")

    def __init__(self) -> None:
        self.packets = 0
        self.decode_errors = 0
        self.late_samples = 0  # arrived for a stretch already mixed
        self.mixed_samples = 0
        self.clipped_samples = 0  # sums outside [-1, 1] (the limiter kept them inside)
        self.segments = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class _Source:
    """One participant's decoded audio waiting to be mixed: (first sample, samples) chunks."""

    __slots__ = ("decoder", "resampler", "chunks", "next_sample")

    def __init__(self, decodes: bool = True) -> None:
        self.decoder = opus_decoder() if decodes else None
        # Planar stereo; decode() averages the channels itself. (swresample's stereo ->
        # mono downmix adds them at 0.707 each: a mono voice sent as stereo, L = R, as
        # WebRTC's opus/48000/2 decodes, would come out 3 dB louder than it was said.)
        self.resampler = av.AudioResampler(format="fltp", layout="stereo", rate=SAMPLE_RATE)
        self.chunks: list[tuple[int, np.ndarray]] = []
        self.next_sample: int | None = None  # where the previous chunk ended

    def decode(self, payload: bytes) -> np.ndarray:
        pcm = []
        for frame in self.decoder.decode(av.Packet(payload)):
            for planar in self.resampler.resample(frame):
                pcm.append(planar.to_ndarray().mean(axis=0))
        return np.concatenate(pcm).astype(np.float32) if pcm else np.zeros(0, np.float32)

    def add(self, start: int, samples: np.ndarray) -> None:
        if self.next_sample is not None and abs(start - self.next_sample) < SNAP_SAMPLES:
            start = self.next_sample
        elif self.next_sample is not None and start < self.next_sample:
            samples = samples[self.next_sample - start :]  # overlaps what is there: keep the old
            start = self.next_sample
        if len(samples):
            self.chunks.append((start, samples))
            self.next_sample = start + len(samples)

    def take(self, begin: int, end: int, into: np.ndarray) -> None:
        """Add the samples in [begin, end) into `into` (index 0 = begin); drop used chunks."""
        kept = []
        for start, samples in self.chunks:
            stop = start + len(samples)
            lo, hi = max(start, begin), min(stop, end)
            if lo < hi:
                into[lo - begin : hi - begin] += samples[lo - start : hi - start]
            if stop > end:
                kept.append((start, samples))
        self.chunks = kept

    def end(self) -> int:
        return max((start + len(s) for start, s in self.chunks), default=0)


class _MixSegment:
    __slots__ = ("container", "stream", "index", "part_path", "final_path", "first_sample", "samples")

    def __init__(self, container, stream, index, part_path, final_path, first_sample) -> None:
        self.container = container
        self.stream = stream
        self.index = index
        self.part_path = part_path
        self.final_path = final_path
        self.first_sample = first_sample
        self.samples = 0


class AudioMixer:
    """Mix many Opus tracks into one mono Ogg/Opus recording, in segments."""

    def __init__(
        self,
        directory: Path | str,
        segment_seconds: float = MAX_SEGMENT_SECONDS,
        on_segment_closed: Callable[[ClosedSegment], None] | None = None,
        *,
        start: float = 0.0,
        notice: np.ndarray | None | bool = True,
        bitrate: int = DEFAULT_BITRATE,
        name: str = MIX_TRACK_ID,
    ) -> None:
        """`start`: recording seconds where this mixer begins (after a restart, where
        the previous one stopped). `notice`: True for the "recording-started" notice at `start`
        when `start` is 0, an array of 48 kHz samples, or None/False for none."""
        if not 0 < segment_seconds <= MAX_SEGMENT_SECONDS:
            raise ValueError(f"segment_seconds: {segment_seconds!r} must be in (0, {MAX_SEGMENT_SECONDS}]")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.segment_samples = round(segment_seconds * SAMPLE_RATE)
        self.on_segment_closed = on_segment_closed
        self.bitrate = bitrate
        self.stats = MixerStats()
        self.closed: list[ClosedSegment] = []
        self._start_sample = round(start * SAMPLE_RATE)
        self._mixed = self._start_sample  # everything before this sample is mixed
        self._sources: dict[str, _Source] = {}
        self._segment: _MixSegment | None = None
        self._next_index = self._recover()
        if notice is True:
            notice = notice_pcm("recording-started")[0] if start == 0 else None
        if notice is not None and notice is not False:
            lead_in = _Source(decodes=False)
            lead_in.add(self._start_sample, np.asarray(notice, dtype=np.float32))
            self._sources["\0notice"] = lead_in

    # ------------------------------------------------------------------ input

    def push(self, track_id: str, payload: bytes, pts: float) -> None:
        """One Opus packet of `track_id`, which belongs at `pts` recording seconds."""
        self.stats.packets += 1
        source = self._sources.get(track_id)
        if source is None:
            source = self._sources[track_id] = _Source()
        elif source.decoder is None:  # removed, and now back
            source.decoder = opus_decoder()
        try:
            samples = source.decode(payload)
        except (av.FFmpegError, ValueError) as error:
            self.stats.decode_errors += 1
            log.debug("mix: undecodable packet from %s: %s", track_id, error)
            return
        start = round(pts * SAMPLE_RATE)
        if start < self._mixed:
            late = min(len(samples), self._mixed - start)
            self.stats.late_samples += late
            samples, start = samples[late:], start + late
        source.add(start, samples)

    def remove_track(self, track_id: str) -> None:
        """The track ended: what it delivered is still mixed; no more will come."""
        source = self._sources.get(track_id)
        if source is not None:
            source.decoder = None

    # ----------------------------------------------------------------- output

    @property
    def mixed_until(self) -> float:
        """Recording seconds up to which the mix is final."""
        return self._mixed / SAMPLE_RATE

    def mix_until(self, t: float) -> None:
        """Mix and encode everything before `t` recording seconds."""
        end = round(t * SAMPLE_RATE)
        while self._mixed < end:
            boundary = self._segment_end(self._mixed)
            stop = min(end, boundary)
            self._encode(self._mix(self._mixed, stop))
            self._mixed = stop
            if stop == boundary:
                self._close_segment()
        self._forget_finished_sources()

    def close(self, end: float | None = None) -> ClosedSegment | None:
        """Mix up to `end` (the recording's stop time; default: the last sample any track
        gave) and close the last segment."""
        if end is None:
            end = max((s.end() for s in self._sources.values()), default=self._mixed) / SAMPLE_RATE
        self.mix_until(end)
        return self._close_segment()

    # --------------------------------------------------------------- internals

    def _segment_end(self, sample: int) -> int:
        done = (sample - self._start_sample) // self.segment_samples
        return self._start_sample + (done + 1) * self.segment_samples

    def _mix(self, begin: int, end: int) -> np.ndarray:
        out = np.zeros(end - begin, dtype=np.float32)
        for source in self._sources.values():
            source.take(begin, end, out)
        self.stats.clipped_samples += int(np.count_nonzero(np.abs(out) > 1.0))
        self.stats.mixed_samples += len(out)
        return soft_limit(out)

    def _encode(self, pcm: np.ndarray) -> None:
        if self._segment is None:
            self._open()
        segment = self._segment
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = segment.samples
        segment.samples += len(pcm)
        # The encoder takes any size here: PyAV re-chunks into 20 ms encoder frames.
        for packet in segment.stream.encode(frame):
            segment.container.mux(packet)

    def _open(self) -> None:
        index = self._next_index
        self._next_index += 1
        final_path = self.directory / segment_name(self.name, index, MIX_KIND.extension)
        part_path = final_path.with_name(final_path.name + PART_SUFFIX)
        # Half-second pages, flushed as written (the muxer holds the newest page back):
        # a crash loses about a second of this segment.
        options = {"flush_packets": "1", "page_duration": "500000"}
        container = av.open(str(part_path), "w", format="ogg", container_options=options)
        # Ogg timestamps start at 0 in every file: say where this one sits on the timeline.
        container.metadata[START_TAG] = f"{self._mixed / SAMPLE_RATE:.6f}"
        stream = container.add_stream("libopus", rate=SAMPLE_RATE, layout="mono")
        stream.codec_context.bit_rate = self.bitrate
        stream.codec_context.time_base = fractions.Fraction(1, SAMPLE_RATE)
        stream.codec_context.options = {"frame_duration": "20"}
        self._segment = _MixSegment(container, stream, index, part_path, final_path, self._mixed)

    def _close_segment(self) -> ClosedSegment | None:
        segment = self._segment
        if segment is None:
            return None
        self._segment = None
        for packet in segment.stream.encode(None):
            segment.container.mux(packet)
        segment.container.close()
        fsync_path(segment.part_path)
        os.replace(segment.part_path, segment.final_path)
        fsync_path(self.directory)
        closed = ClosedSegment(
            track_id=self.name,
            index=segment.index,
            path=segment.final_path,
            codec="opus",
            content_type=MIX_KIND.content_type,
            start=segment.first_sample / SAMPLE_RATE,
            end=(segment.first_sample + segment.samples) / SAMPLE_RATE,
            frames=-(-segment.samples // FRAME_SAMPLES),
            size=segment.final_path.stat().st_size,
        )
        self._handed_over(closed)
        return closed

    def _handed_over(self, closed: ClosedSegment) -> None:
        self.stats.segments += 1
        self.closed.append(closed)
        if self.on_segment_closed is not None:
            self.on_segment_closed(closed)

    def _forget_finished_sources(self) -> None:
        for track_id in [t for t, s in self._sources.items() if s.decoder is None and not s.chunks]:
            del self._sources[track_id]

    def _recover(self) -> int:
        """After a restart: salvage a `.part` segment the killed mixer left, and
        continue the numbering after the highest segment found."""
        pattern = re.compile(re.escape(self.name) + r"-(\d{5})" + re.escape(MIX_KIND.extension) + r"(\.part)?")
        highest = -1
        for path in sorted(self.directory.iterdir()):
            match = pattern.fullmatch(path.name)
            if match is None:
                continue
            highest = max(highest, int(match.group(1)))
            if match.group(2):
                salvaged = salvage_partial(path, self.name, int(match.group(1)), "opus", MIX_KIND)
                if salvaged is not None:
                    self._handed_over(salvaged)
        return highest + 1
