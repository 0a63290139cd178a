"""What we sent on one transport, and transport-wide feedback matched against it.

The send-side estimator learns nothing from feedback alone: a transport-cc packet says
"sequence number N arrived at receiver time T, N+1 did not arrive"; the estimator needs
what *we* know about N (when we sent it, how big it was, whether it belonged to a probe
cluster). `SendLog.on_sent` records that on the hot path (one tuple into a ring,
~0.35 µs); `SendLog.match` turns a parsed `sfu.wire.rtcp.TransportFeedback` into a
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
- **Duplicate and reordered feedback.** Each packet is reported once: a slot is emptied
  when feedback reports it received, and a packet reported lost is remembered as such. A
  repeated report is dropped; a packet first reported lost and later received (reordering on the path, or a newer feedback
  covering it again) comes back once more as received with `recovered` set, so the loss
  count can take it back.
"""

from __future__ import annotations

from sfu.wire.rtcp import TWCC_REFERENCE_US

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
    """The last `capacity` packets sent on a transport, by transport-wide sequence number.

    A slot holds (unwrapped seq, send µs, size, probe cluster) until feedback reports the
    packet received (then None); a packet reported lost keeps its slot (it may still
    arrive) and its number joins `_lost`, pruned as the ring moves on.
    """

    __slots__ = ("_mask", "_slots", "_lost", "newest_seq", "_reference_raw", "_reference", "sent_bytes")

    def __init__(self, capacity: int = 8192) -> None:
        if capacity <= 0 or capacity & (capacity - 1):
            raise ValueError(f"send log capacity must be a power of two, got {capacity}")
        self._mask = capacity - 1
        self._slots: list[tuple[int, int, int, int | None] | None] = [None] * capacity
        self._lost: set[int] = set()
        self.newest_seq: int | None = None  # unwrapped
        self._reference_raw: int | None = None
        self._reference = 0  # unwrapped reference time, in 64 ms ticks
        self.sent_bytes = 0

    @property
    def capacity(self) -> int:
        return self._mask + 1

    def on_sent(self, seq: int, size: int, now_us: int, probe_cluster: int | None = None) -> int:
        """Record a packet sent with 16-bit transport-wide number `seq`; returns the
        unwrapped number."""
        newest = self.newest_seq
        if newest is None:
            full = self.newest_seq = seq & 0xFFFF
        else:
            full = newest + (((seq - newest + 0x8000) & 0xFFFF) - 0x8000)
            if full > newest:
                self.newest_seq = full
        self._slots[full & self._mask] = (full, now_us, size, probe_cluster)
        self.sent_bytes += size
        return full

    def send_time(self, full_seq: int) -> int | None:
        record = self._slots[full_seq & self._mask]
        return record[1] if record is not None and record[0] == full_seq else None

    def match(self, feedback) -> list[PacketResult]:
        """Results for the packets a `TransportFeedback` names that we still know, in
        sequence order: each packet once, lost ones with arrival_us None."""
        newest = self.newest_seq
        arrivals = feedback.arrivals
        if newest is None or not arrivals:
            return []
        offset_us = self._unwrap_reference(feedback.reference_time)
        base = newest + (((feedback.base_sequence - newest + 0x8000) & 0xFFFF) - 0x8000)
        oldest = newest - self._mask
        mask, slots, lost = self._mask, self._slots, self._lost
        results = []
        full = base - 1
        for arrival in arrivals:
            full += 1
            if full > newest:
                break
            if full < oldest:
                continue
            record = slots[full & mask]
            if record is None or record[0] != full:
                continue  # reported received already, overwritten, or never sent
            if arrival is None:
                if full not in lost:
                    lost.add(full)
                    results.append(PacketResult(full, record[1], record[2], None, record[3]))
                continue
            slots[full & mask] = None
            recovered = full in lost
            if recovered:
                lost.discard(full)
            results.append(PacketResult(full, record[1], record[2], arrival + offset_us, record[3], recovered))
        if len(lost) > 64 and len(lost) > (mask + 1) // 8:
            self._lost = {seq for seq in lost if seq >= oldest}
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
