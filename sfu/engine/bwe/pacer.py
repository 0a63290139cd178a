"""Sending a probe cluster: padding at the cluster's rate, spread over its duration.

`sfu.engine.bwe.BandwidthEstimator.probe_request` decides that a cluster is due (its
target rate, at least `min_packets` packets and `min_bytes` bytes); this module decides
how the worker sends it, as libwebrtc's pacer and LiveKit's prober do: padding-only RTP
packets (no payload, the P bit set, up to 255 bytes of padding), on the RTX stream of
one of the subscriber's video consumers (Chromium drops padding-only RTX packets after
counting them for transport-cc, so the decoder never sees them), each with the
transport-wide sequence number the estimator matches feedback against.

`ProbePacer` is the timing, pure on given microseconds: a timer calls `due` every few
milliseconds and sends that many packets; the bytes allowed grow with the time since the
cluster started at its target rate, so a late tick catches up, at most
`MAX_PACKETS_PER_TICK` packets at once (a stalled loop does not become a burst that
would measure nothing but our own queue). `padding_packet` builds one packet.
"""

from __future__ import annotations

import struct

from sfu.engine.bwe.probe import ProbeCluster

MAX_PADDING = 255  # the padding length is one byte (RFC 3550 §5.1)
# A padding packet on the wire: 12 header + 8 transport-cc extension + 255 padding + the
# SRTP tag (10, AES-CM-128/SHA1-80): what `due` assumes before the first packet is sent.
EXPECTED_PACKET_SIZE = 12 + 8 + MAX_PADDING + 10
PACE_INTERVAL_US = 5_000  # how often the worker's timer calls `due` while a cluster runs
# 48 packets of 285 bytes every 5 ms: 21.9 Mbit/s, above the estimator's 20 Mbit/s cap.
MAX_PACKETS_PER_TICK = 48
# A cluster not sent by then is abandoned (its transport stalled or lost its video):
# the estimator measures what went out, or times the cluster out.
GIVE_UP_US = 250_000

_HEADER = struct.Struct("!BBHII")
_ONE_BYTE_TCC = struct.Struct("!HHBHx")  # 0xBEDE, 1 word, (id << 4 | len-1), seq, pad
_TWO_BYTE_TCC = struct.Struct("!HHBBH")  # 0x1000, 1 word, id, len, seq


class ProbePacer:
    """How many padding packets of one cluster to send now."""

    __slots__ = ("cluster", "started_us", "packets_sent", "bytes_sent", "last_size")

    def __init__(self, cluster: ProbeCluster, now_us: int) -> None:
        self.cluster = cluster
        self.started_us = now_us
        self.packets_sent = 0
        self.bytes_sent = 0
        self.last_size = EXPECTED_PACKET_SIZE

    def due(self, now_us: int) -> int:
        """Packets to send now (0..MAX_PACKETS_PER_TICK): as many as the cluster's rate
        allows since it started (the first at once), no more than it still needs."""
        if self.done(now_us):
            return 0
        size = self.last_size
        elapsed_us = max(0, now_us - self.started_us)
        allowed_bytes = self.cluster.target_bps * elapsed_us // 8_000_000 + size
        by_rate = (allowed_bytes - self.bytes_sent) // size  # never ahead by more than a packet
        return max(0, min(by_rate, self._still_needed(size), MAX_PACKETS_PER_TICK))

    def on_sent(self, size: int) -> None:
        self.packets_sent += 1
        self.bytes_sent += size
        self.last_size = size

    def done(self, now_us: int) -> bool:
        """Sent in full, or given up on (GIVE_UP_US after the start)."""
        return self._still_needed(self.last_size) == 0 or now_us - self.started_us >= GIVE_UP_US

    def _still_needed(self, size: int) -> int:
        cluster = self.cluster
        packets = cluster.min_packets - self.packets_sent
        by_bytes = -(-(cluster.min_bytes - self.bytes_sent) // size)
        return max(0, packets, by_bytes)


def padding_packet(
    payload_type: int, seq: int, timestamp: int, ssrc: int, tcc_id: int, tcc_seq: int, padding: int = MAX_PADDING
) -> bytes:
    """A padding-only RTP packet (no payload: RFC 3550 §5.1, the last padding byte counts
    the padding, itself included) carrying the transport-wide sequence number `tcc_seq`
    in extension `tcc_id` (one-byte form for ids 1..14, two-byte form above, RFC 8285)."""
    if not 1 <= padding <= MAX_PADDING:
        raise ValueError(f"padding: {padding} bytes, need 1..{MAX_PADDING}")
    if not 1 <= tcc_id <= 255:
        raise ValueError(f"transport-cc extension id: {tcc_id}, need 1..255")
    header = _HEADER.pack(0xB0, payload_type & 0x7F, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
    if tcc_id <= 14:
        extension = _ONE_BYTE_TCC.pack(0xBEDE, 1, (tcc_id << 4) | 1, tcc_seq & 0xFFFF)
    else:
        extension = _TWO_BYTE_TCC.pack(0x1000, 1, tcc_id, 2, tcc_seq & 0xFFFF)
    return b"".join((header, extension, bytes(padding - 1), bytes((padding,))))
