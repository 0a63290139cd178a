"""Receive statistics of one incoming RTP stream, for receiver report blocks (RFC 3550
§6.4.1; Appendix A.1 sequence numbers, A.3 losses, A.8 interarrival jitter).

Pure arithmetic, no I/O, no clock of its own (the caller passes times in seconds). Used by
the SFU's producers (sfu.engine.producer, per forwarded packet: `update` is on the hot
path, keep it lean) and by the recorder's tracks (recorder.track, which also measures
jitter).
"""

from __future__ import annotations

from sfu.wire import rtcp


class ReceptionStats:
    __slots__ = (
        "started",
        "base_seq",
        "max_seq",
        "cycles",
        "received",
        "expected_prior",
        "received_prior",
        "last_sr_ntp_middle",
        "last_sr_arrival",
        "clock_rate",
        "jitter",
        "last_transit",
    )

    def __init__(self, clock_rate: int = 0) -> None:
        """clock_rate: the stream's RTP clock (Hz); only `on_packet` (jitter) needs it."""
        self.started = False
        self.base_seq = 0
        self.max_seq = 0
        self.cycles = 0
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.last_sr_ntp_middle = 0  # middle 32 bits of the last SR's NTP time (LSR)
        self.last_sr_arrival: float | None = None
        self.clock_rate = clock_rate
        self.jitter = 0.0  # in RTP timestamp units
        self.last_transit: float | None = None

    def update(self, seq: int) -> int:
        """Count a packet; returns how many sequence numbers were skipped before it (0 if none)."""
        self.received += 1
        if not self.started:
            self.started = True
            self.base_seq = self.max_seq = seq
            return 0
        delta = (seq - self.max_seq) & 0xFFFF
        if delta == 0 or delta >= 0x8000:
            return 0  # duplicate or late (reordered) packet
        if seq < self.max_seq:
            self.cycles += 0x10000
        self.max_seq = seq
        return delta - 1

    def on_packet(self, seq: int, timestamp: int, arrival: float) -> None:
        """`update`, and the interarrival jitter (A.8) from the packet's RTP timestamp and
        its arrival time (seconds)."""
        self.update(seq)
        transit = arrival * self.clock_rate - timestamp
        if self.last_transit is not None:
            difference = abs(transit - self.last_transit)
            # A timestamp wrap shows as a huge jump: not jitter.
            if difference < self.clock_rate * 10:
                self.jitter += (difference - self.jitter) / 16
        self.last_transit = transit

    def on_sender_report(self, ntp_timestamp: int, arrival: float) -> None:
        self.last_sr_ntp_middle = rtcp.ntp_middle32(ntp_timestamp)
        self.last_sr_arrival = arrival

    def report_values(self, now: float) -> tuple[int, int, int, int, int]:
        """(fraction_lost, cumulative_lost, extended_highest_seq, lsr, dlsr) for a report
        block, and the start of the next interval. Only once `started`."""
        extended_max = self.cycles + self.max_seq
        expected = extended_max - self.base_seq + 1
        lost = expected - self.received
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior = expected
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        lost = max(-0x800000, min(0x7FFFFF, lost))  # signed 24 bits (A.3)
        dlsr = 0
        if self.last_sr_arrival is not None:
            dlsr = int((now - self.last_sr_arrival) * 65536) & 0xFFFFFFFF
        return fraction, lost, extended_max & 0xFFFFFFFF, self.last_sr_ntp_middle, dlsr

    def report_block(self, ssrc: int, now: float) -> rtcp.ReportBlock:
        """`report_values` as a report block about `ssrc`, with the jitter. Only once `started`."""
        fraction, lost, highest, lsr, dlsr = self.report_values(now)
        return rtcp.ReportBlock(
            ssrc=ssrc,
            fraction_lost=fraction,
            cumulative_lost=lost,
            highest_sequence=highest,
            jitter=min(int(self.jitter), 0xFFFFFFFF),
            lsr=lsr,
            dlsr=dlsr,
        )
