"""What we sent on one transport, and transport-wide feedback matched against it.

The send-side estimator learns nothing from feedback alone: a transport-cc packet says
"sequence number N arrived at receiver time T, N+1 did not arrive"; the estimator needs
what *we* know about N (when we sent it, how big it was, whether it belonged to a probe
cluster). `SendLog.on_sent` records that on the hot path (five list stores, no
allocation); `SendLog.match` turns a parsed `sfu.wire.rtcp.TransportFeedback` into a
list of `PacketResult`, the estimator's only input format (another feedback format,
RFC 8888 say, needs only another `match`).

What the wire makes awkward, handled here once:

- **16-bit sequence numbers.** We unwrap them at send time into a monotonic integer
  (`PacketResult.seq`); a feedback's base sequence is unwrapped against the newest
  number sent, so it is always at most that (a feedback cannot report the future).
- **The 24-bit reference time** (64 ms ticks, wraps every ~12.4 days, and the receiver
  starts it anywhere) is unwrapped across feedbacks the same way, so arrival times on the
  receiver's clock stay monotonic across its wrap. Only differences of arrival times are
  ever used: the receiver's clock is unrelated to ours.
- **Bounded memory.** A ring of `capacity` slots (a power of two), indexed by the
  unwrapped sequence number; each slot keeps the number it holds, so feedback about a
  packet that has been overwritten (or never sent) is ignored, not misattributed.
- **Duplicate and reordered feedback.** Each packet is reported once: a slot remembers
  whether feedback has named it lost or received. A repeated report is dropped; a packet
  first reported lost and later received (reordering on the path, or a newer feedback
  covering it again) comes back once more as received with `recovered` set, so the loss
  count can take it back.
"""

from __future__ import annotations

from sfu.wire.rtcp import TWCC_REFERENCE_US

_UNREPORTED = 0
_REPORTED_LOST = 1
_REPORTED_RECEIVED = 2

_REFERENCE_MODULUS = 1 << 24
_REFERENCE_HALF = 1 << 23


class PacketResult:
    """One sent packet as feedback reported it. `arrival_us` is on the receiver's clock
    (unwrapped), None when reported lost; `seq` is the unwrapped transport-wide number."""

    __slots__ = ("seq", "send_us", "size", "arrival_us", "probe_cluster", "recovered")

    def __init__(
        self,
        seq: int,
        send_us: int,
        size: int,
        arrival_us: int | None,
        probe_cluster: int | None = None,
        recovered: bool = False,
    ) -> None:
        self.seq = seq
        self.send_us = send_us
        self.size = size
        self.arrival_us = arrival_us
        self.probe_cluster = probe_cluster
        self.recovered = recovered  # reported lost before, received after all

    def __repr__(self) -> str:
        return (
            f"PacketResult(seq={self.seq}, send_us={self.send_us}, size={self.size}, "
            f"arrival_us={self.arrival_us}, probe_cluster={self.probe_cluster}, recovered={self.recovered})"
        )


class SendLog:
    """The last `capacity` packets sent on a transport, by transport-wide sequence number."""

    __slots__ = (
        "_mask",
        "_seq",
        "_send_us",
        "_size",
        "_cluster",
        "_state",
        "newest_seq",
        "_reference_raw",
        "_reference",
        "sent_packets",
        "sent_bytes",
    )

    def __init__(self, capacity: int = 8192) -> None:
        if capacity <= 0 or capacity & (capacity - 1):
            raise ValueError(f"send log capacity must be a power of two, got {capacity}")
        self._mask = capacity - 1
        self._seq: list[int] = [-1] * capacity
        self._send_us: list[int] = [0] * capacity
        self._size: list[int] = [0] * capacity
        self._cluster: list[int | None] = [None] * capacity
        self._state: list[int] = [_UNREPORTED] * capacity
        self.newest_seq: int | None = None  # unwrapped
        self._reference_raw: int | None = None
        self._reference = 0  # unwrapped reference time, in 64 ms ticks
        self.sent_packets = 0
        self.sent_bytes = 0

    @property
    def capacity(self) -> int:
        return self._mask + 1

    def on_sent(self, seq: int, size: int, now_us: int, probe_cluster: int | None = None) -> int:
        """Record a packet sent with 16-bit transport-wide number `seq`; returns the
        unwrapped number."""
        newest = self.newest_seq
        if newest is None:
            full = seq & 0xFFFF
            self.newest_seq = full
        else:
            step = ((seq - newest + 0x8000) & 0xFFFF) - 0x8000
            full = newest + step
            if step > 0:
                self.newest_seq = full
        slot = full & self._mask
        self._seq[slot] = full
        self._send_us[slot] = now_us
        self._size[slot] = size
        self._cluster[slot] = probe_cluster
        self._state[slot] = _UNREPORTED
        self.sent_packets += 1
        self.sent_bytes += size
        return full

    def send_time(self, full_seq: int) -> int | None:
        slot = full_seq & self._mask
        return self._send_us[slot] if self._seq[slot] == full_seq else None

    def match(self, feedback) -> list[PacketResult]:
        """Results for the packets a `TransportFeedback` names that we still know, in
        sequence order: each packet once, lost ones with arrival_us None."""
        newest = self.newest_seq
        arrivals = feedback.arrivals
        if newest is None or not arrivals:
            return []
        offset_us = self._unwrap_reference(feedback.reference_time)
        step = ((feedback.base_sequence - newest + 0x8000) & 0xFFFF) - 0x8000
        base = newest + step
        oldest = newest - self._mask
        mask = self._mask
        seqs, states = self._seq, self._state
        results = []
        for index, arrival in enumerate(arrivals):
            full = base + index
            if full > newest:
                break
            if full < oldest:
                continue
            slot = full & mask
            if seqs[slot] != full:
                continue
            state = states[slot]
            if arrival is None:
                if state != _UNREPORTED:
                    continue
                states[slot] = _REPORTED_LOST
                results.append(PacketResult(full, self._send_us[slot], self._size[slot], None, self._cluster[slot]))
            else:
                if state == _REPORTED_RECEIVED:
                    continue
                states[slot] = _REPORTED_RECEIVED
                results.append(
                    PacketResult(
                        full,
                        self._send_us[slot],
                        self._size[slot],
                        arrival + offset_us,
                        self._cluster[slot],
                        state == _REPORTED_LOST,
                    )
                )
        return results

    def _unwrap_reference(self, raw: int) -> int:
        """What to add to the parser's arrival times (raw reference × 64 ms + deltas) to
        put them on one unwrapped receiver clock."""
        raw &= _REFERENCE_MODULUS - 1
        previous = self._reference_raw
        if previous is None:
            self._reference = raw
        else:
            step = ((raw - previous + _REFERENCE_HALF) & (_REFERENCE_MODULUS - 1)) - _REFERENCE_HALF
            self._reference += step
        self._reference_raw = raw
        return (self._reference - raw) * TWCC_REFERENCE_US
