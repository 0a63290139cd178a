"""One recorded track: RTP in, segment files out, RTCP feedback back to the SFU.

    datagram -> JitterBuffer (reorder, NACK holes) -> depacketizer (frames)
             -> TrackTimeline (RTP timestamp -> recording seconds, from RTCP SRs)
             -> SegmentWriter (files) and, for audio, `on_audio` (the mix, transcription)

Feedback goes out through `send_rtcp` (the session's socket, to the SFU's plain transport):
NACK for holes the jitter buffer reports (RFC 4585 §6.2.1), PLI (§6.3.1) when a video
track starts, after a lost frame and shortly before a segment is due to close (segments
start on key frames), and a receiver report block (RFC 3550 §6.4.1) every second.

Everything here is synchronous and driven by the session: `on_rtp` per packet, `tick`
from its timer. Clock: `time.monotonic` seconds, injected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from recorder.media.depacketize import Frame, depacketizer_for
from recorder.media.jitter import JitterBuffer
from recorder.media.packet import MediaPacket
from recorder.media.segments import ClosedSegment, SegmentWriter
from recorder.media.timeline import ClockDomain, TrackTimeline
from sfu.wire import rtcp
from sfu.wire.reception import ReceptionStats  # RFC 3550 A.1/A.3/A.8, shared with the SFU

log = logging.getLogger(__name__)

PLI_INTERVAL_SECONDS = 0.5  # the SFU relays at most one PLI per pli_min_interval_s anyway
LIVE_SECONDS = 2.0  # a track that sent nothing for this long is paused: no PLIs, no lag


class TrackCounters:
    __slots__ = ("packets", "bytes", "nacks_sent", "nacked_packets", "plis_sent", "frames", "malformed")

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.nacks_sent = 0  # NACK messages
        self.nacked_packets = 0  # sequence numbers asked for
        self.plis_sent = 0
        self.frames = 0
        self.malformed = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


AudioSink = Callable[["Track", Frame, float], None]


class Track:
    """`info` is the TRACK_ADD message (track_id, kind, codec_name, clock_rate, ssrc, ...)."""

    def __init__(
        self,
        info,
        writer: SegmentWriter,
        recording_start: float,
        domain: ClockDomain,
        send_rtcp: Callable[[bytes], None],
        sender_ssrc: int,
        *,
        on_audio: AudioSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.info = info
        self.track_id: str = info.track_id
        self.ssrc: int = info.ssrc
        self.is_video = info.kind == "video"
        self.writer = writer
        self.recording_start = recording_start
        self.clock = clock
        self.jitter = JitterBuffer(clock=clock)
        self.depacketizer = depacketizer_for(info.codec_name)
        self.timeline = TrackTimeline(info.clock_rate, recording_start, domain)
        self.reception = ReceptionStats(info.clock_rate)
        self.counters = TrackCounters()
        self.send_rtcp = send_rtcp
        self.sender_ssrc = sender_ssrc
        self.on_audio = on_audio
        self.first_pts: float | None = None  # where this track starts on the timeline
        self.last_pts = 0.0  # the newest frame written
        self.last_arrival: float | None = None
        self._last_pli = float("-inf")
        self.closed = False

    # ------------------------------------------------------------------ input

    def start(self) -> None:
        """Ask for a key frame at once: a video recording starts at one."""
        if self.is_video:
            self._send_pli(self.clock(), force=True)

    def on_rtp(self, data: bytes, arrival: float) -> None:
        if self.closed:
            return
        try:
            packet = MediaPacket.parse(data, arrival)
        except ValueError:
            self.counters.malformed += 1
            return
        self.counters.packets += 1
        self.counters.bytes += len(data)
        self.last_arrival = arrival
        self.reception.on_packet(packet.sequence_number, packet.timestamp, arrival)
        self._handle(self.jitter.push(packet))
        self._send_nacks()

    def on_sender_report(self, report: rtcp.SenderReport, arrival: float) -> None:
        self.timeline.on_sender_report(report.ntp_timestamp, report.rtp_timestamp)
        self.reception.on_sender_report(report.ntp_timestamp, arrival)

    def tick(self, now: float) -> None:
        """From the session's timer: give up on old holes, re-NACK, ask for key frames,
        close a segment that has been idle for a whole segment's length."""
        if self.closed:
            return
        self._handle(self.jitter.poll())
        self._send_nacks()
        wants_keyframe = self.depacketizer.needs_keyframe or self.writer.wants_keyframe
        if self.is_video and self.live(now) and wants_keyframe:
            self._send_pli(now)
        self.writer.close_if_idle(now - self.recording_start)

    def close(self) -> ClosedSegment | None:
        """Stop: what the jitter buffer holds is written, the open segment closed."""
        if self.closed:
            return None
        self._handle(self.jitter.flush())
        self.closed = True
        return self.writer.close()

    # ----------------------------------------------------------------- output

    def live(self, now: float) -> bool:
        return self.last_arrival is not None and now - self.last_arrival < LIVE_SECONDS

    def lag(self, now: float) -> float | None:
        """Seconds between now and the newest media written, for a live track."""
        if not self.live(now) or self.first_pts is None:
            return None
        return max(0.0, now - self.recording_start - self.last_pts)

    def report_block(self, now: float) -> rtcp.ReportBlock | None:
        if not self.reception.started:
            return None
        return self.reception.report_block(self.ssrc, now)

    def stats(self) -> dict[str, int]:
        return {
            **self.counters.as_dict(),
            "lost": self.jitter.stats.lost,
            "late": self.jitter.stats.late,
            "recovered": self.jitter.stats.recovered,
            "dropped_frames": getattr(self.depacketizer.stats, "dropped_frames", 0),
        }

    # --------------------------------------------------------------- internals

    def _handle(self, packets: list[MediaPacket]) -> None:
        for packet in packets:
            if packet.ssrc != self.ssrc:
                continue
            for frame in self.depacketizer.push(packet):
                pts = self.timeline.seconds(frame.timestamp, frame.arrival)
                self.counters.frames += 1
                try:
                    self.writer.write(frame, pts)
                except Exception:  # a bad frame must not end the recording of the others
                    log.exception("track %s: cannot write a frame at %.3f s", self.track_id, pts)
                    continue
                if self.first_pts is None:
                    self.first_pts = pts
                self.last_pts = max(self.last_pts, pts)
                if self.on_audio is not None and not self.is_video:
                    self.on_audio(self, frame, pts)

    def _send_nacks(self) -> None:
        lost = self.jitter.nacks()
        if not lost:
            return
        self.counters.nacks_sent += 1
        self.counters.nacked_packets += len(lost)
        self.send_rtcp(rtcp.build_nack(self.sender_ssrc, self.ssrc, lost))

    def _send_pli(self, now: float, force: bool = False) -> None:
        if not force and now - self._last_pli < PLI_INTERVAL_SECONDS:
            return
        self._last_pli = now
        self.counters.plis_sent += 1
        self.send_rtcp(rtcp.build_pli(self.sender_ssrc, self.ssrc))


def peek_ssrc(data: bytes) -> int | None:
    """The SSRC of an RTP packet (RFC 3550 §5.1: bytes 8-11), or None if it is too short
    or not RTP version 2."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    return int.from_bytes(data[8:12], "big")

