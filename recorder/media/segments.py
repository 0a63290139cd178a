"""Remux one track's frames into a run of self-contained files, without transcoding.

VP8 → WebM, Opus → WebM (Matroska keeps each frame's timestamp, so every track file
carries its place on the recording's timeline), H.264 → Matroska. A segment closes at
least every `segment_seconds`; a video segment only ever starts at a key frame, so the
writer raises `wants_keyframe` a little before one is due (the owner sends a PLI).

Crash safety: a segment is written as `<name>.part`, and only when its muxer has written
the trailer is it fsynced and renamed to `<name>`, then handed to `on_segment_closed`. A
killed process leaves at most the one `.part` file per track; the next writer for the
same track and directory salvages what is readable in it (`salvage_partial`) and
continues the numbering after it.
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from recorder.media import bitstream
from recorder.media.depacketize import Frame, codec_key

log = logging.getLogger(__name__)

MAX_SEGMENT_SECONDS = 10.0
TIME_BASE = Fraction(1, 1000)  # Matroska's default TimestampScale: milliseconds
PART_SUFFIX = ".part"
KEYFRAME_LEAD_SECONDS = 1.0  # ask for a key frame this long before a segment is due
OPUS_CLOCK_RATE = 48000
# Clusters of at most one second reach the file promptly, so little is lost on a crash.
MUXER_OPTIONS = {"cluster_time_limit": "1000", "flush_packets": "1"}
# Metadata tag with a segment's start on the recording timeline, for containers whose
# timestamps restart at 0 in every file (the Ogg mix).
START_TAG = "CONCLAVE_START_SECONDS"
_TRACK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class ContainerKind:
    format: str  # libavformat muxer
    extension: str
    content_type: str


CONTAINERS = {
    "vp8": ContainerKind("webm", ".webm", "video/webm"),
    "opus": ContainerKind("webm", ".webm", "audio/webm"),
    "h264": ContainerKind("matroska", ".mkv", "video/x-matroska"),
}


@dataclass(frozen=True)
class ClosedSegment:
    """A finished, playable file; `start`/`end` are recording seconds."""

    track_id: str
    index: int
    path: Path
    codec: str
    content_type: str
    start: float
    end: float
    frames: int
    size: int
    salvaged: bool = False  # rebuilt from a `.part` file a killed process left


class SegmentStats:
    __slots__ = ("frames", "segments", "bytes", "skipped_before_keyframe", "unreadable", "retimed")

    def __init__(self) -> None:
        self.frames = 0  # frames written
        self.segments = 0  # segments closed
        self.bytes = 0  # bytes in closed segments
        self.skipped_before_keyframe = 0  # video frames before the first key frame
        self.unreadable = 0  # key frames whose picture size could not be read
        self.retimed = 0  # timestamps moved forward to keep them increasing

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def opus_head(channels: int = 2, pre_skip: int = 0, input_rate: int = OPUS_CLOCK_RATE) -> bytes:
    """RFC 7845 §5.1 identification header: the codec private data of an Opus track."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, input_rate, 0, 0)


def segment_name(track_id: str, index: int, extension: str) -> str:
    return f"{track_id}-{index:05d}{extension}"


class _OpenSegment:
    """The container being written and what is known about it so far."""

    __slots__ = ("container", "stream", "index", "part_path", "final_path", "start_ms", "end_ms", "frames", "size")

    def __init__(self, container, stream, index: int, part_path: Path, final_path: Path, start_ms: int, size) -> None:
        self.container = container
        self.stream = stream
        self.index = index
        self.part_path = part_path
        self.final_path = final_path
        self.start_ms = start_ms
        self.end_ms = start_ms
        self.frames = 0
        self.size = size  # (width, height) of a video segment


class SegmentWriter:
    """Write one track: `write(frame, pts)` for every frame in order, `close()` at the end."""

    def __init__(
        self,
        track_id: str,
        codec: str,
        directory: Path | str,
        segment_seconds: float = MAX_SEGMENT_SECONDS,
        on_segment_closed: Callable[[ClosedSegment], None] | None = None,
        *,
        audio_channels: int = 2,
        keyframe_lead_seconds: float = KEYFRAME_LEAD_SECONDS,
    ) -> None:
        if not _TRACK_ID.fullmatch(track_id):
            raise ValueError(f"track_id: {track_id!r} must be 1-128 of A-Z a-z 0-9 _ . - (a file name)")
        if not 0 < segment_seconds <= MAX_SEGMENT_SECONDS:
            raise ValueError(f"segment_seconds: {segment_seconds!r} must be in (0, {MAX_SEGMENT_SECONDS}]")
        self.track_id = track_id
        self.codec = codec_key(codec)
        self.kind = CONTAINERS[self.codec]
        self.is_video = self.codec != "opus"
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_ms = round(segment_seconds * 1000)
        self.keyframe_lead_ms = round(keyframe_lead_seconds * 1000)
        self.on_segment_closed = on_segment_closed
        self.audio_channels = audio_channels
        self.stats = SegmentStats()
        self.closed: list[ClosedSegment] = []
        self._segment: _OpenSegment | None = None
        self._pending: tuple[bytes, int, bool] | None = None  # video: waits for the next pts
        self._last_pts_ms: int | None = None
        self._last_duration_ms = 0
        self._next_index = self._recover()

    # ------------------------------------------------------------------ public

    @property
    def wants_keyframe(self) -> bool:
        """A video segment is due soon (or no segment is open): a key frame is wanted."""
        if not self.is_video:
            return False
        if self._segment is None:
            return True
        newest = self._pending[1] if self._pending else self._segment.end_ms
        return newest - self._segment.start_ms >= self.segment_ms - self.keyframe_lead_ms

    def write(self, frame: Frame, pts: float) -> None:
        """Add one frame at `pts` recording seconds (from the track's timeline)."""
        pts_ms = self._increasing(round(pts * 1000))
        if self.is_video:
            self._write_video(frame, pts_ms)
        else:
            self._write_audio(frame, pts_ms)

    def close_if_idle(self, now: float) -> ClosedSegment | None:
        """Close the open segment if no frame came for `segment_seconds` (a paused or
        silent track): call it now and then with the current recording time, so nothing
        stays unflushed longer than that. The next segment starts at a key frame."""
        if self._segment is None or self._last_pts_ms is None:
            return None
        if round(now * 1000) - self._last_pts_ms < self.segment_ms:
            return None
        return self.close()

    def close(self) -> ClosedSegment | None:
        """Write out what is pending and close the open segment (call at stop; writing
        may go on afterwards, into a new segment)."""
        if self._pending is not None:
            data, pts_ms, keyframe = self._pending
            self._pending = None
            self._mux(data, pts_ms, max(self._last_duration_ms, 1), keyframe)
        return self._close_segment()

    # --------------------------------------------------------------- internals

    def _increasing(self, pts_ms: int) -> int:
        """Timestamps only move forward within a track (the muxer requires it)."""
        pts_ms = max(pts_ms, 0)
        if self._last_pts_ms is not None and pts_ms <= self._last_pts_ms:
            pts_ms = self._last_pts_ms + 1
            self.stats.retimed += 1
        self._last_pts_ms = pts_ms
        return pts_ms

    def _write_audio(self, frame: Frame, pts_ms: int) -> None:
        duration_ms = round((frame.duration or 960) * 1000 / OPUS_CLOCK_RATE)
        segment = self._segment
        if segment is not None and pts_ms - segment.start_ms >= self.segment_ms:
            self._close_segment()
        if self._segment is None:
            self._open(pts_ms, None)
        self._mux(frame.data, pts_ms, duration_ms, True)

    def _write_video(self, frame: Frame, pts_ms: int) -> None:
        size = self._picture_size(frame) if frame.keyframe else None
        if self._segment is None and size is None:
            self.stats.skipped_before_keyframe += 1
            return
        if self._pending is not None:
            # The previous frame lasts until this one starts.
            data, pending_ms, keyframe = self._pending
            self._pending = None
            self._last_duration_ms = pts_ms - pending_ms
            self._mux(data, pending_ms, self._last_duration_ms, keyframe)
        segment = self._segment
        if segment is not None and size is not None:
            if pts_ms - segment.start_ms >= self.segment_ms or size != segment.size:
                self._close_segment()
        if self._segment is None:
            self._open(pts_ms, size)
        self._pending = (frame.data, pts_ms, frame.keyframe)

    def _picture_size(self, frame: Frame) -> tuple[int, int] | None:
        try:
            if self.codec == "vp8":
                return bitstream.vp8_dimensions(frame.data)
            return bitstream.h264_access_unit_dimensions(frame.data)
        except ValueError as error:
            self.stats.unreadable += 1
            log.warning("track %s: key frame without a readable picture size: %s", self.track_id, error)
            return None

    def _open(self, start_ms: int, size: tuple[int, int] | None) -> None:
        index = self._next_index
        self._next_index += 1
        final_path = self.directory / segment_name(self.track_id, index, self.kind.extension)
        part_path = final_path.with_name(final_path.name + PART_SUFFIX)
        container = av.open(str(part_path), "w", format=self.kind.format, container_options=dict(MUXER_OPTIONS))
        try:
            stream = self._add_stream(container, size)
        except Exception:
            container.close()
            part_path.unlink(missing_ok=True)
            raise
        self._segment = _OpenSegment(container, stream, index, part_path, final_path, start_ms, size)

    def _add_stream(self, container, size: tuple[int, int] | None):
        if self.codec == "opus":
            stream = add_opus_stream(container, self.audio_channels)
        else:
            width, height = size
            # No extradata for H.264: PyAV builds avcC from the SPS/PPS of the first
            # (key) frame with the extract_extradata filter.
            stream = container.add_mux_stream(self.codec, width=width, height=height)
        stream.time_base = TIME_BASE
        return stream

    def _mux(self, data: bytes, pts_ms: int, duration_ms: int, keyframe: bool) -> None:
        segment = self._segment
        packet = av.Packet(data)
        packet.stream = segment.stream
        packet.time_base = TIME_BASE
        packet.pts = pts_ms
        packet.dts = pts_ms
        packet.duration = duration_ms
        packet.is_keyframe = keyframe
        segment.container.mux(packet)
        segment.frames += 1
        segment.end_ms = pts_ms + duration_ms
        self.stats.frames += 1

    def _close_segment(self) -> ClosedSegment | None:
        segment = self._segment
        if segment is None:
            return None
        self._segment = None
        segment.container.close()
        fsync_path(segment.part_path)
        os.replace(segment.part_path, segment.final_path)
        fsync_path(self.directory)
        closed = ClosedSegment(
            track_id=self.track_id,
            index=segment.index,
            path=segment.final_path,
            codec=self.codec,
            content_type=self.kind.content_type,
            start=segment.start_ms / 1000,
            end=segment.end_ms / 1000,
            frames=segment.frames,
            size=segment.final_path.stat().st_size,
        )
        self._handed_over(closed)
        return closed

    def _handed_over(self, closed: ClosedSegment) -> None:
        self.stats.segments += 1
        self.stats.bytes += closed.size
        self.closed.append(closed)
        if self.on_segment_closed is not None:
            self.on_segment_closed(closed)

    def _recover(self) -> int:
        """Salvage `.part` files a killed writer left; return the next free index."""
        pattern = re.compile(re.escape(self.track_id) + r"-(\d{5})" + re.escape(self.kind.extension) + r"(\.part)?")
        highest = -1
        for path in sorted(self.directory.iterdir()):
            match = pattern.fullmatch(path.name)
            if match is None:
                continue
            highest = max(highest, int(match.group(1)))
            if match.group(2):
                salvaged = salvage_partial(path, self.track_id, int(match.group(1)), self.codec)
                if salvaged is not None:
                    self._handed_over(salvaged)
        return highest + 1


def add_opus_stream(container, channels: int = 2):
    """An Opus stream for remuxing, with its OpusHead (RFC 7845 §5.1) as codec private
    data. PyAV's mux-only streams cannot carry extradata, so the stream is built from a
    template encoder context that is never opened (nothing is encoded)."""
    holder = av.open(io.BytesIO(), "w", format=container.format.name.split(",")[0])
    try:
        layout = "stereo" if channels == 2 else "mono"
        template = holder.add_stream(_opus_encoder_name(), rate=OPUS_CLOCK_RATE, layout=layout)
        stream = container.add_stream_from_template(template)
    finally:
        holder.close()
    stream.codec_context.extradata = opus_head(channels)
    return stream


def _opus_encoder_name() -> str:
    return "libopus" if "libopus" in av.codecs_available else "opus"


def salvage_partial(
    part_path: Path, track_id: str, index: int, codec: str, kind: ContainerKind | None = None
) -> ClosedSegment | None:
    """Rebuild a finished segment from the readable packets of a `.part` file a killed
    writer left, under the segment's final name; None (and the file removed) if nothing
    in it can be read. `kind` defaults to the container of `codec`'s track files."""
    kind = kind or CONTAINERS[codec_key(codec)]
    final_path = part_path.with_name(part_path.name[: -len(PART_SUFFIX)])
    staging = part_path.with_name(part_path.name + ".salvage")
    packets = _readable_packets(part_path)
    if not packets:
        part_path.unlink(missing_ok=True)
        log.warning("segment %s: nothing readable, removed", part_path.name)
        return None
    source = av.open(str(part_path))
    try:
        base_ms = round(_start_tag(source) * 1000)
        out = av.open(str(staging), "w", format=kind.format)
        if base_ms:
            out.metadata[START_TAG] = f"{base_ms / 1000:.6f}"
        stream = out.add_stream_from_template(source.streams[0])
        stream.time_base = TIME_BASE
        first_ms = last_end_ms = None
        for packet in packets:
            packet.stream = stream
            out.mux(packet)
            pts_ms = round(packet.pts * packet.time_base * 1000)
            end_ms = pts_ms + round((packet.duration or 0) * packet.time_base * 1000)
            first_ms = pts_ms if first_ms is None else first_ms
            last_end_ms = end_ms if last_end_ms is None else max(last_end_ms, end_ms)
        out.close()
    finally:
        source.close()
    fsync_path(staging)
    os.replace(staging, final_path)
    part_path.unlink(missing_ok=True)
    log.warning("segment %s: salvaged %d frames from a crashed writer", final_path.name, len(packets))
    return ClosedSegment(
        track_id=track_id,
        index=index,
        path=final_path,
        codec=codec_key(codec),
        content_type=kind.content_type,
        start=(base_ms + max(first_ms, 0)) / 1000,  # an encoder's pre-skip may start below 0
        end=(base_ms + last_end_ms) / 1000,
        frames=len(packets),
        size=final_path.stat().st_size,
        salvaged=True,
    )


def _start_tag(container) -> float:
    tags = {**container.metadata, **(container.streams[0].metadata if container.streams else {})}
    for name, value in tags.items():
        if name.upper() == START_TAG:
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 0.0


def _readable_packets(part_path: Path) -> list:
    """Packets of the first stream up to the first damage; a video run starts at a key frame."""
    packets = []
    try:
        with av.open(str(part_path)) as source:
            if not source.streams:
                return []
            stream = source.streams[0]
            for packet in source.demux(stream):
                if packet.size == 0 or packet.pts is None or packet.is_corrupt:
                    continue
                if not packets and stream.type == "video" and not packet.is_keyframe:
                    continue
                packets.append(packet)
    except (av.FFmpegError, OSError) as error:
        log.warning("segment %s: read stopped at damage: %s", part_path.name, error)
    return packets


def fsync_path(path: Path) -> None:
    """Make a closed file (or a rename in a directory) durable before handing it on."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
