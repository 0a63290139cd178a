"""Transport-wide congestion control feedback toward a publisher.

draft-holmer-rmcat-transport-wide-cc-extensions-01: the publisher numbers every packet
of the transport; we note when each arrived and report back periodically, so the
publisher's send-side bandwidth estimator can pick its bitrate. `record` runs on the hot
path (a dict store); `take_feedback` runs on a timer.
"""

from __future__ import annotations

from sfu.wire import rtcp

# One feedback packet covers at most this many sequence numbers; a longer stretch (a
# burst after a stall) is reported from its newest part, as libwebrtc also gives up on
# very old packets.
MAX_PACKETS_PER_FEEDBACK = 500


class TransportCcRecorder:
    __slots__ = ("_arrivals", "_next_seq", "_max_seq", "_fb_count")

    def __init__(self) -> None:
        self._arrivals: dict[int, int] = {}
        self._next_seq: int | None = None  # first sequence number not yet reported
        self._max_seq: int | None = None
        self._fb_count = 0

    def record(self, seq: int, arrival_us: int) -> None:
        self._arrivals[seq] = arrival_us
        if self._max_seq is None:
            self._max_seq = self._next_seq = seq
        elif 0 < (seq - self._max_seq) & 0xFFFF < 0x8000:
            self._max_seq = seq

    def take_feedback(self, sender_ssrc: int, media_ssrc: int) -> bytes | None:
        if not self._arrivals or self._next_seq is None or self._max_seq is None:
            return None
        count = ((self._max_seq - self._next_seq) & 0xFFFF) + 1
        if count > MAX_PACKETS_PER_FEEDBACK:
            self._next_seq = (self._max_seq - MAX_PACKETS_PER_FEEDBACK + 1) & 0xFFFF
            count = MAX_PACKETS_PER_FEEDBACK
        base = self._next_seq
        arrivals = [self._arrivals.get((base + i) & 0xFFFF) for i in range(count)]
        self._arrivals.clear()
        self._next_seq = (self._max_seq + 1) & 0xFFFF
        first = next((a for a in arrivals if a is not None), None)
        if first is None:
            return None
        try:
            packet = rtcp.build_transport_feedback(sender_ssrc, media_ssrc, base, self._fb_count, first, arrivals)
        except ValueError:
            return None  # deltas beyond what the format holds (a long stall): skip this round
        self._fb_count = (self._fb_count + 1) & 0xFF
        return packet
