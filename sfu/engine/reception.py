"""Receive statistics of one incoming stream, for receiver reports (RFC 3550 §6.4.1, A.3)."""

from __future__ import annotations


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
    )

    def __init__(self) -> None:
        self.started = False
        self.base_seq = 0
        self.max_seq = 0
        self.cycles = 0
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.last_sr_ntp_middle = 0
        self.last_sr_arrival: float | None = None

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

    def report_values(self, now: float) -> tuple[int, int, int, int, int]:
        """(fraction_lost, cumulative_lost, extended_highest_seq, lsr, dlsr) for a report block."""
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
        lost = max(-0x800000, min(0x7FFFFF, lost))
        dlsr = 0
        if self.last_sr_arrival is not None:
            dlsr = int((now - self.last_sr_arrival) * 65536) & 0xFFFFFFFF
        return fraction, lost, extended_max & 0xFFFFFFFF, self.last_sr_ntp_middle, dlsr
