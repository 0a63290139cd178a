"""RTP timestamps → seconds on the recording's timeline (0 = when recording started),
per track, so that every track of a meeting lines up.

RTCP sender reports (RFC 3550 §6.4.1) pair an NTP wall-clock time with an RTP timestamp
on the sender's clock; with them, a packet's RTP timestamp gives the time the sender
captured it. Tracks from one sender share its NTP clock, so they line up with each other
exactly (lip sync). A sender's clock need not agree with ours: a `ClockDomain` (one per
sender) learns the offset from our arrival times, keeping the smallest
(arrival - capture) seen, i.e. the path with the least delay.

Before a track's first sender report its RTP clock is anchored to arrival times the same
way (smallest arrival - rtp/clock_rate). RTP timestamps are 32-bit and wrap (RFC 3550
§5.1); they are unwrapped into an ever-growing integer with serial arithmetic.

Those estimates improve as packets arrive (a smaller delay is seen, a new report comes).
A track's output follows its own RTP clock and moves toward the estimate by at most
`SLEW_SECONDS` per frame, so timestamps stay smooth (no clicks in the mix, no overlaps in
the files); only an estimate `RESYNC_SECONDS` away is jumped to at once.
"""

from __future__ import annotations

from sfu.wire.rtcp import ntp_to_unix
from sfu.wire.rtp import TIMESTAMP_MASK, timestamp_diff

SLEW_SECONDS = 0.002
RESYNC_SECONDS = 0.2


class ClockDomain:
    """One sender's NTP clock relative to ours: local = sender + offset."""

    __slots__ = ("offset",)

    def __init__(self) -> None:
        self.offset: float | None = None

    def observe(self, sender_time: float, arrival: float) -> None:
        delay = arrival - sender_time
        if self.offset is None or delay < self.offset:
            self.offset = delay

    def __repr__(self) -> str:
        return f"ClockDomain(offset={self.offset})"


class TrackTimeline:
    """Maps one track's RTP timestamps to recording seconds.

    `recording_start` and every `arrival` are on the recorder's clock (seconds); give
    tracks of the same sender (same RTCP CNAME / participant) the same `domain`.
    """

    def __init__(self, clock_rate: int, recording_start: float, domain: ClockDomain | None = None) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock_rate: {clock_rate!r} must be positive")
        self.clock_rate = clock_rate
        self.recording_start = recording_start
        self.domain = domain if domain is not None else ClockDomain()
        self._last_ext: int | None = None  # highest unwrapped RTP timestamp seen
        self._sr_ext: int | None = None  # unwrapped RTP timestamp of the latest SR
        self._sr_sender_time = 0.0  # its NTP time, as Unix seconds
        self._arrival_anchor: float | None = None  # before any SR: min(arrival - ext/rate)
        self._last_out: tuple[int, float] | None = None  # (unwrapped ts, seconds) given last

    @property
    def synchronized(self) -> bool:
        """True once a sender report has been seen (lip sync is then exact)."""
        return self._sr_ext is not None

    def on_sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        """RFC 3550 §6.4.1: this RTP timestamp was sampled at this NTP time."""
        self._sr_ext = self._unwrap(rtp_timestamp)
        self._sr_sender_time = ntp_to_unix(ntp_timestamp)

    def seconds(self, rtp_timestamp: int, arrival: float) -> float:
        """Where a frame with this RTP timestamp belongs, in recording seconds. Call it
        once per frame, in order: each answer is smoothed against the previous one."""
        ext = self._unwrap(rtp_timestamp)
        estimate = self._estimate(ext, arrival)
        if self._last_out is not None:
            last_ext, last_seconds = self._last_out
            predicted = last_seconds + (ext - last_ext) / self.clock_rate
            error = estimate - predicted
            if abs(error) < RESYNC_SECONDS:
                estimate = predicted + max(-SLEW_SECONDS, min(SLEW_SECONDS, error))
        self._last_out = (ext, estimate)
        return estimate

    def _estimate(self, ext: int, arrival: float) -> float:
        anchor = arrival - ext / self.clock_rate
        if self._arrival_anchor is None or anchor < self._arrival_anchor:
            self._arrival_anchor = anchor
        if self._sr_ext is None:
            return self._arrival_anchor + ext / self.clock_rate - self.recording_start
        sender_time = self._sr_sender_time + (ext - self._sr_ext) / self.clock_rate
        self.domain.observe(sender_time, arrival)
        return sender_time + self.domain.offset - self.recording_start

    def _unwrap(self, rtp_timestamp: int) -> int:
        if self._last_ext is None:
            self._last_ext = rtp_timestamp
            return rtp_timestamp
        ext = self._last_ext + timestamp_diff(rtp_timestamp, self._last_ext & TIMESTAMP_MASK)
        if ext > self._last_ext:
            self._last_ext = ext
        return ext
