"""RTCP: compound packets (RFC 3550 §6), feedback (RFC 4585, RFC 5104), REMB
(draft-alvestrand-rmcat-remb-03) and transport-wide feedback
(draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1).

Sans-I/O and stdlib only: `parse_compound` turns bytes into small `__slots__` objects
and raises only `ValueError`; the `build_*` functions return bytes ready to protect.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Container, Iterable

RTCP_VERSION = 2
RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
RTCP_RTPFB = 205
RTCP_PSFB = 206
RTCP_XR = 207

RTPFB_NACK = 1  # RFC 4585 §6.2.1
RTPFB_TRANSPORT_CC = 15  # draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1
PSFB_PLI = 1  # RFC 4585 §6.3.1
PSFB_SLI = 2
PSFB_RPSI = 3
PSFB_FIR = 4  # RFC 5104 §4.3.1
PSFB_AFB = 15  # RFC 4585 §6.4, used by REMB

SDES_END = 0
SDES_CNAME = 1

MAX_COUNT = 31  # the 5-bit RC/SC field
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
U32_MAX = 0xFFFFFFFF
NTP_MAX = (1 << 64) - 1
CUMULATIVE_LOST_MIN = -(1 << 23)
CUMULATIVE_LOST_MAX = (1 << 23) - 1

TWCC_DELTA_US = 250  # a receive delta tick
TWCC_REFERENCE_US = 64000  # a reference time tick
TWCC_MAX_STATUS_COUNT = 0xFFFF
_TWCC_NOT_RECEIVED, _TWCC_SMALL_DELTA, _TWCC_LARGE_DELTA = 0, 1, 2
_TWCC_MAX_RUN = 0x1FFF

_HEADER = struct.Struct("!BBH")
_U32 = struct.Struct("!I")
_TWO_U32 = struct.Struct("!II")
_REPORT_BLOCK = struct.Struct("!IIIIII")
_SENDER_INFO = struct.Struct("!QIII")
_TWCC_HEADER = struct.Struct("!HHI")
_PID_BLP = struct.Struct("!HH")
_REMB_HEADER = struct.Struct("!4sBBH")


class _Record:
    """Plain attribute holder: equality and repr from the slots."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class ReportBlock(_Record):
    """RFC 3550 §6.4.1 report block; cumulative_lost is signed 24-bit."""

    __slots__ = ("ssrc", "fraction_lost", "cumulative_lost", "highest_sequence", "jitter", "lsr", "dlsr")

    def __init__(
        self,
        ssrc: int,
        fraction_lost: int,
        cumulative_lost: int,
        highest_sequence: int,
        jitter: int,
        lsr: int,
        dlsr: int,
    ) -> None:
        self.ssrc = ssrc
        self.fraction_lost = fraction_lost
        self.cumulative_lost = cumulative_lost
        self.highest_sequence = highest_sequence
        self.jitter = jitter
        self.lsr = lsr
        self.dlsr = dlsr


class SenderReport(_Record):
    __slots__ = ("ssrc", "ntp_timestamp", "rtp_timestamp", "packet_count", "octet_count", "reports")

    def __init__(
        self,
        ssrc: int,
        ntp_timestamp: int,
        rtp_timestamp: int,
        packet_count: int,
        octet_count: int,
        reports: list[ReportBlock],
    ) -> None:
        self.ssrc = ssrc
        self.ntp_timestamp = ntp_timestamp
        self.rtp_timestamp = rtp_timestamp
        self.packet_count = packet_count
        self.octet_count = octet_count
        self.reports = reports


class ReceiverReport(_Record):
    __slots__ = ("ssrc", "reports")

    def __init__(self, ssrc: int, reports: list[ReportBlock]) -> None:
        self.ssrc = ssrc
        self.reports = reports


class SourceDescription(_Record):
    """chunks: (ssrc, {item type: value}) in order; the first item of a type wins."""

    __slots__ = ("chunks",)

    def __init__(self, chunks: list[tuple[int, dict[int, bytes]]]) -> None:
        self.chunks = chunks


class Bye(_Record):
    __slots__ = ("ssrcs", "reason")

    def __init__(self, ssrcs: list[int], reason: str | None) -> None:
        self.ssrcs = ssrcs
        self.reason = reason


class Nack(_Record):
    """Generic NACK (RFC 4585 §6.2.1) as its (PID, BLP) pairs, in packet order.

    Parsing does not expand them: one 1.3 KB NACK names up to ~5,000 sequence numbers,
    and a receiver that refuses most of a flood (sfu.engine.retransmit) counts them per
    pair (`pair_size`) instead. `lost` expands them (each number once, in packet order).
    Two NACKs are equal when they name the same numbers, however packed.
    """

    __slots__ = ("sender_ssrc", "media_ssrc", "pairs")

    def __init__(
        self, sender_ssrc: int, media_ssrc: int, lost: Iterable[int] = (), pairs: list[tuple[int, int]] | None = None
    ) -> None:
        self.sender_ssrc = sender_ssrc
        self.media_ssrc = media_ssrc
        self.pairs = pairs if pairs is not None else _pack_nack(lost) if lost else []

    @property
    def lost(self) -> list[int]:
        lost: list[int] = []
        seen: set[int] = set()
        for pid, blp in self.pairs:
            for seq in nack_sequence_numbers(pid, blp):
                if seq not in seen:
                    seen.add(seq)
                    lost.append(seq)
        return lost

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return (self.sender_ssrc, self.media_ssrc, self.lost) == (other.sender_ssrc, other.media_ssrc, other.lost)

    def __repr__(self) -> str:
        return f"Nack(sender_ssrc={self.sender_ssrc!r}, media_ssrc={self.media_ssrc!r}, lost={self.lost!r})"


def nack_sequence_numbers(pid: int, blp: int) -> list[int]:
    """RFC 4585 §6.2.1: PID, then PID+i+1 for each bit i set in BLP."""
    lost = [pid]
    bit = 0
    while blp:
        if blp & 1:
            lost.append((pid + bit + 1) & 0xFFFF)
        blp >>= 1
        bit += 1
    return lost


def nack_pair_size(blp: int) -> int:
    """How many sequence numbers one (PID, BLP) pair names."""
    return 1 + blp.bit_count()


class Pli(_Record):
    __slots__ = ("sender_ssrc", "media_ssrc")

    def __init__(self, sender_ssrc: int, media_ssrc: int) -> None:
        self.sender_ssrc = sender_ssrc
        self.media_ssrc = media_ssrc


class Fir(_Record):
    """entries: (media ssrc, command sequence number)."""

    __slots__ = ("sender_ssrc", "entries")

    def __init__(self, sender_ssrc: int, entries: list[tuple[int, int]]) -> None:
        self.sender_ssrc = sender_ssrc
        self.entries = entries


class Remb(_Record):
    __slots__ = ("sender_ssrc", "bitrate", "ssrcs")

    def __init__(self, sender_ssrc: int, bitrate: int, ssrcs: list[int]) -> None:
        self.sender_ssrc = sender_ssrc
        self.bitrate = bitrate
        self.ssrcs = ssrcs


class TransportFeedback(_Record):
    """Transport-wide feedback. reference_time is the raw 24-bit field (64 ms units);
    arrivals[i] is the arrival time in µs of packet base_sequence + i on the same
    scale (reference_time * 64000 plus the receive deltas), or None if lost."""

    __slots__ = (
        "sender_ssrc",
        "media_ssrc",
        "base_sequence",
        "status_count",
        "reference_time",
        "fb_count",
        "arrivals",
    )

    def __init__(
        self,
        sender_ssrc: int,
        media_ssrc: int,
        base_sequence: int,
        status_count: int,
        reference_time: int,
        fb_count: int,
        arrivals: list[int | None],
    ) -> None:
        self.sender_ssrc = sender_ssrc
        self.media_ssrc = media_ssrc
        self.base_sequence = base_sequence
        self.status_count = status_count
        self.reference_time = reference_time
        self.fb_count = fb_count
        self.arrivals = arrivals


class UnknownRtcp(_Record):
    """A member we do not interpret; `raw` is the whole member, header included."""

    __slots__ = ("packet_type", "fmt", "raw")

    def __init__(self, packet_type: int, fmt: int, raw: bytes = b"") -> None:
        self.packet_type = packet_type
        self.fmt = fmt
        self.raw = raw


RtcpPacket = (
    SenderReport | ReceiverReport | SourceDescription | Bye | Nack | Pli | Fir | Remb | TransportFeedback | UnknownRtcp
)


# --- parsing -------------------------------------------------------------------------


def parse_compound(data, only: Container[int | tuple[int, int]] | None = None) -> list[RtcpPacket]:
    """Split a compound packet (RFC 3550 §6.1) and parse each member.

    Reduced-size RTCP (RFC 5506) is accepted: no member order is enforced. Padding
    (P bit) is honoured on any member, as libwebrtc writes it on transport-cc.

    `only`: parse just the members whose packet type, or (packet type, count/FMT), is in
    it; the others come back as `UnknownRtcp` (their bytes, unparsed). A receiver that
    acts on a few kinds should say which: parsing is not free for every kind (a 40-byte
    transport-cc member may announce 65,535 packet statuses).
    """
    size = len(data)
    if size == 0:
        raise ValueError("RTCP: empty packet")
    packets: list[RtcpPacket] = []
    pos = 0
    while pos < size:
        if size - pos < 4:
            raise ValueError(f"RTCP header: {size - pos} trailing bytes at offset {pos}")
        first, packet_type, words = _HEADER.unpack_from(data, pos)
        if first >> 6 != RTCP_VERSION:
            raise ValueError(f"RTCP version: {first >> 6} at offset {pos}, expected 2")
        start = pos + 4
        end = start + 4 * words  # §6.4.1: length in 32-bit words minus one
        if end > size:
            raise ValueError(f"RTCP length: {words} words at offset {pos} overrun {size} bytes")
        body_end = end
        if first & 0x20:
            padding = data[end - 1] if end > start else 0
            if padding == 0 or padding > end - start:
                raise ValueError(f"RTCP padding count: {padding} in a {end - start} byte body")
            body_end = end - padding
        count = first & 0x1F
        parser = _PARSERS.get(packet_type)
        if only is not None and packet_type not in only and (packet_type, count) not in only:
            parser = None
        if parser is None:
            packets.append(UnknownRtcp(packet_type, count, bytes(data[pos:end])))
        else:
            packets.append(parser(data, count, start, body_end, pos, end))
        pos = end
    return packets


def _report_blocks(data, count: int, pos: int) -> list[ReportBlock]:
    reports = []
    for _ in range(count):
        ssrc, lost_word, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, pos)
        cumulative = lost_word & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        reports.append(ReportBlock(ssrc, lost_word >> 24, cumulative, highest, jitter, lsr, dlsr))
        pos += 24
    return reports


def _parse_sr(data, count: int, start: int, end: int, *_) -> SenderReport:
    # RFC 3550 §6.4.1; bytes after the report blocks are a profile extension.
    if end - start < 24 + 24 * count:
        raise ValueError(f"RTCP SR length: {end - start} bytes for {count} report blocks")
    ssrc = _U32.unpack_from(data, start)[0]
    ntp, rtp_timestamp, packet_count, octet_count = _SENDER_INFO.unpack_from(data, start + 4)
    reports = _report_blocks(data, count, start + 24)
    return SenderReport(ssrc, ntp, rtp_timestamp, packet_count, octet_count, reports)


def _parse_rr(data, count: int, start: int, end: int, *_) -> ReceiverReport:
    # RFC 3550 §6.4.2
    if end - start < 4 + 24 * count:
        raise ValueError(f"RTCP RR length: {end - start} bytes for {count} report blocks")
    return ReceiverReport(_U32.unpack_from(data, start)[0], _report_blocks(data, count, start + 4))


def _parse_sdes(data, count: int, start: int, end: int, *_) -> SourceDescription:
    # RFC 3550 §6.5: chunks of SSRC + items, ended by a null item, padded to 32 bits.
    chunks = []
    pos = start
    for _ in range(count):
        if pos + 4 > end:
            raise ValueError("RTCP SDES chunk: truncated SSRC")
        ssrc = _U32.unpack_from(data, pos)[0]
        pos += 4
        items: dict[int, bytes] = {}
        while True:
            if pos >= end:
                raise ValueError(f"RTCP SDES chunk {ssrc:#x}: no end item")
            item_type = data[pos]
            if item_type == SDES_END:
                pos += 1
                break
            if pos + 2 > end or pos + 2 + data[pos + 1] > end:
                raise ValueError(f"RTCP SDES item {item_type}: truncated")
            length = data[pos + 1]
            items.setdefault(item_type, bytes(data[pos + 2 : pos + 2 + length]))
            pos += 2 + length
        pos = start + ((pos - start + 3) & ~3)
        if pos > end:
            raise ValueError(f"RTCP SDES chunk {ssrc:#x}: padding overruns the packet")
        chunks.append((ssrc, items))
    return SourceDescription(chunks)


def _parse_bye(data, count: int, start: int, end: int, *_) -> Bye:
    # RFC 3550 §6.6: SSRCs, then an optional length-prefixed reason.
    pos = start + 4 * count
    if pos > end:
        raise ValueError(f"RTCP BYE length: {end - start} bytes for {count} SSRCs")
    ssrcs = list(struct.unpack_from(f"!{count}I", data, start))
    reason = None
    if pos < end:
        length = data[pos]
        if pos + 1 + length > end:
            raise ValueError(f"RTCP BYE reason: length {length} overruns the packet")
        reason = bytes(data[pos + 1 : pos + 1 + length]).decode("utf-8", errors="replace")
    return Bye(ssrcs, reason)


def _feedback_ssrcs(data, start: int, end: int, what: str) -> tuple[int, int]:
    # RFC 4585 §6.1: common feedback header, then FCI.
    if end - start < 8:
        raise ValueError(f"RTCP {what}: {end - start} bytes, need 8 for the SSRCs")
    return _TWO_U32.unpack_from(data, start)


def _parse_rtpfb(data, fmt: int, start: int, end: int, member_start: int, member_end: int):
    if fmt == RTPFB_NACK:
        return _parse_nack(data, start, end)
    if fmt == RTPFB_TRANSPORT_CC:
        return _parse_transport_feedback(data, start, end)
    return UnknownRtcp(RTCP_RTPFB, fmt, bytes(data[member_start:member_end]))


def _parse_nack(data, start: int, end: int) -> Nack:
    # RFC 4585 §6.2.1: FCI is one or more (PID, BLP); bit i of BLP means PID+i+1 lost.
    sender, media = _feedback_ssrcs(data, start, end, "NACK")
    fci = end - start - 8
    if fci == 0 or fci % 4:
        raise ValueError(f"RTCP NACK FCI: {fci} bytes, need a positive multiple of 4")
    return Nack(sender, media, pairs=list(_PID_BLP.iter_unpack(data[start + 8 : end])))


def _parse_transport_feedback(data, start: int, end: int) -> TransportFeedback:
    sender, media = _feedback_ssrcs(data, start, end, "transport-cc")
    pos = start + 8
    if end - pos < 8:
        raise ValueError(f"RTCP transport-cc header: {end - pos} bytes, need 8")
    base_sequence, status_count, reference_and_count = _TWCC_HEADER.unpack_from(data, pos)
    if status_count == 0:
        raise ValueError("RTCP transport-cc status count: 0")
    reference_time = reference_and_count >> 8
    symbols, pos = _decode_chunks(data, pos + 8, end, status_count)
    arrivals: list[int | None] = []
    now = reference_time * TWCC_REFERENCE_US
    for symbol in symbols:
        if symbol == _TWCC_NOT_RECEIVED:
            arrivals.append(None)
            continue
        if symbol == _TWCC_SMALL_DELTA:
            if pos + 1 > end:
                raise ValueError("RTCP transport-cc receive deltas: truncated")
            delta = data[pos]
            pos += 1
        else:
            if pos + 2 > end:
                raise ValueError("RTCP transport-cc receive deltas: truncated")
            delta = (data[pos] << 8) | data[pos + 1]
            if delta & 0x8000:
                delta -= 0x10000
            pos += 2
        now += delta * TWCC_DELTA_US
        arrivals.append(now)
    return TransportFeedback(
        sender, media, base_sequence, status_count, reference_time, reference_and_count & 0xFF, arrivals
    )


def _decode_chunks(data, pos: int, end: int, status_count: int) -> tuple[list[int], int]:
    # §3.1.3 run length chunk, §3.1.4 status vector chunk (1-bit or 2-bit symbols).
    symbols: list[int] = []
    while len(symbols) < status_count:
        if pos + 2 > end:
            raise ValueError("RTCP transport-cc packet chunks: truncated")
        chunk = (data[pos] << 8) | data[pos + 1]
        pos += 2
        room = status_count - len(symbols)
        if not chunk & 0x8000:
            symbol = (chunk >> 13) & 0x3
            run = min(chunk & _TWCC_MAX_RUN, room)
            if symbol == 3 and run:
                raise ValueError("RTCP transport-cc run length chunk: reserved symbol 3")
            symbols.extend([symbol] * run)
        elif not chunk & 0x4000:
            symbols.extend((chunk >> (13 - i)) & 1 for i in range(min(14, room)))
        else:
            for i in range(min(7, room)):
                symbol = (chunk >> (12 - 2 * i)) & 0x3
                if symbol == 3:
                    raise ValueError("RTCP transport-cc status vector chunk: reserved symbol 3")
                symbols.append(symbol)
    return symbols, pos


def _parse_psfb(data, fmt: int, start: int, end: int, member_start: int, member_end: int):
    if fmt == PSFB_PLI:
        # RFC 4585 §6.3.1: no FCI.
        return Pli(*_feedback_ssrcs(data, start, end, "PLI"))
    if fmt == PSFB_FIR:
        return _parse_fir(data, start, end)
    if fmt == PSFB_AFB and end - start >= 12 and bytes(data[start + 8 : start + 12]) == b"REMB":
        return _parse_remb(data, start, end)
    return UnknownRtcp(RTCP_PSFB, fmt, bytes(data[member_start:member_end]))


def _parse_fir(data, start: int, end: int) -> Fir:
    # RFC 5104 §4.3.1.1: FCI entries of SSRC, seq nr (8 bits), 24 reserved bits.
    sender, _ = _feedback_ssrcs(data, start, end, "FIR")
    fci = end - start - 8
    if fci == 0 or fci % 8:
        raise ValueError(f"RTCP FIR FCI: {fci} bytes, need a positive multiple of 8")
    entries = []
    for pos in range(start + 8, end, 8):
        ssrc, word = _TWO_U32.unpack_from(data, pos)
        entries.append((ssrc, word >> 24))
    return Fir(sender, entries)


def _parse_remb(data, start: int, end: int) -> Remb:
    # draft-alvestrand-rmcat-remb-03 §2.2: "REMB", N, 6-bit exponent, 18-bit mantissa.
    sender, _ = _feedback_ssrcs(data, start, end, "REMB")
    if end - start < 16:
        raise ValueError(f"RTCP REMB FCI: {end - start - 8} bytes, need 8")
    _, count, exp_mantissa_high, mantissa_low = _REMB_HEADER.unpack_from(data, start + 8)
    if end - start < 16 + 4 * count:
        raise ValueError(f"RTCP REMB SSRC list: {count} SSRCs overrun the packet")
    bitrate = (((exp_mantissa_high & 0x03) << 16) | mantissa_low) << (exp_mantissa_high >> 2)
    ssrcs = list(struct.unpack_from(f"!{count}I", data, start + 16))
    return Remb(sender, bitrate, ssrcs)


_PARSERS = {
    RTCP_SR: _parse_sr,
    RTCP_RR: _parse_rr,
    RTCP_SDES: _parse_sdes,
    RTCP_BYE: _parse_bye,
    RTCP_RTPFB: _parse_rtpfb,
    RTCP_PSFB: _parse_psfb,
}


# --- building ------------------------------------------------------------------------


def _check_range(name: str, value: int, maximum: int, minimum: int = 0) -> None:
    if not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValueError(f"{name}: {value!r} is not an integer in {minimum}..{maximum}")


def _member(packet_type: int, count: int, body: bytes | bytearray) -> bytes:
    """Header + body; the body must already be a multiple of 32 bits."""
    return _HEADER.pack((RTCP_VERSION << 6) | count, packet_type, len(body) // 4) + bytes(body)


def _pack_report_block(block: ReportBlock) -> bytes:
    _check_range("report ssrc", block.ssrc, U32_MAX)
    _check_range("fraction_lost", block.fraction_lost, 255)
    for name in ("highest_sequence", "jitter", "lsr", "dlsr"):
        _check_range(name, getattr(block, name), U32_MAX)
    if not isinstance(block.cumulative_lost, int):
        raise ValueError(f"cumulative_lost: {block.cumulative_lost!r} is not an integer")
    # RFC 3550 Appendix A.3: clamp to the signed 24-bit range.
    lost = max(CUMULATIVE_LOST_MIN, min(CUMULATIVE_LOST_MAX, block.cumulative_lost)) & 0xFFFFFF
    return _REPORT_BLOCK.pack(
        block.ssrc,
        (block.fraction_lost << 24) | lost,
        block.highest_sequence,
        block.jitter,
        block.lsr,
        block.dlsr,
    )


def _pack_reports(reports: Iterable[ReportBlock]) -> tuple[int, bytes]:
    reports = list(reports)
    if len(reports) > MAX_COUNT:
        raise ValueError(f"reports: {len(reports)} blocks, at most {MAX_COUNT}")
    return len(reports), b"".join(_pack_report_block(block) for block in reports)


def build_sr(
    ssrc: int,
    ntp_timestamp: int,
    rtp_timestamp: int,
    packet_count: int,
    octet_count: int,
    reports: Iterable[ReportBlock] = (),
) -> bytes:
    """RFC 3550 §6.4.1 sender report."""
    _check_range("ssrc", ssrc, U32_MAX)
    _check_range("ntp_timestamp", ntp_timestamp, NTP_MAX)
    _check_range("rtp_timestamp", rtp_timestamp, U32_MAX)
    _check_range("packet_count", packet_count, U32_MAX)
    _check_range("octet_count", octet_count, U32_MAX)
    count, blocks = _pack_reports(reports)
    body = _U32.pack(ssrc) + _SENDER_INFO.pack(ntp_timestamp, rtp_timestamp, packet_count, octet_count)
    return _member(RTCP_SR, count, body + blocks)


def build_rr(ssrc: int, reports: Iterable[ReportBlock] = ()) -> bytes:
    """RFC 3550 §6.4.2 receiver report."""
    _check_range("ssrc", ssrc, U32_MAX)
    count, blocks = _pack_reports(reports)
    return _member(RTCP_RR, count, _U32.pack(ssrc) + blocks)


def build_sdes(ssrc: int, cname: str) -> bytes:
    """RFC 3550 §6.5: one chunk with a CNAME item, null-terminated, padded to 32 bits."""
    _check_range("ssrc", ssrc, U32_MAX)
    value = cname.encode("utf-8")
    if len(value) > 255:
        raise ValueError(f"cname: {len(value)} bytes, at most 255")
    chunk = bytearray(_U32.pack(ssrc))
    chunk += bytes((SDES_CNAME, len(value))) + value
    chunk.append(SDES_END)
    chunk += bytes(-len(chunk) % 4)
    return _member(RTCP_SDES, 1, chunk)


def build_bye(ssrcs: Iterable[int], reason: str | None = None) -> bytes:
    """RFC 3550 §6.6."""
    ssrcs = list(ssrcs)
    if len(ssrcs) > MAX_COUNT:
        raise ValueError(f"ssrcs: {len(ssrcs)} given, at most {MAX_COUNT}")
    body = bytearray()
    for ssrc in ssrcs:
        _check_range("ssrc", ssrc, U32_MAX)
        body += _U32.pack(ssrc)
    if reason is not None:
        text = reason.encode("utf-8")
        if len(text) > 255:
            raise ValueError(f"reason: {len(text)} bytes, at most 255")
        body += bytes((len(text),)) + text
        body += bytes(-len(body) % 4)
    return _member(RTCP_BYE, len(ssrcs), body)


def _feedback_header(sender_ssrc: int, media_ssrc: int) -> bytes:
    _check_range("sender_ssrc", sender_ssrc, U32_MAX)
    _check_range("media_ssrc", media_ssrc, U32_MAX)
    return _TWO_U32.pack(sender_ssrc, media_ssrc)


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """RFC 4585 §6.3.1 Picture Loss Indication."""
    return _member(RTCP_PSFB, PSFB_PLI, _feedback_header(sender_ssrc, media_ssrc))


def build_fir(sender_ssrc: int, media_ssrc: int, seq_nr: int) -> bytes:
    """RFC 5104 §4.3.1: the header's media SSRC is 0; the FCI names the source."""
    _check_range("seq_nr", seq_nr, 255)
    body = _feedback_header(sender_ssrc, 0) + _TWO_U32.pack(media_ssrc, seq_nr << 24)
    return _member(RTCP_PSFB, PSFB_FIR, body)


def build_nack(sender_ssrc: int, media_ssrc: int, lost: Iterable[int]) -> bytes:
    """RFC 4585 §6.2.1 generic NACK in as few (PID, BLP) pairs as possible.

    Sequence numbers are ordered around the 16-bit circle starting after the widest
    gap, so a loss burst across the wrap (65534, 65535, 0, 1) is one pair.
    """
    body = bytearray(_feedback_header(sender_ssrc, media_ssrc))
    for pair in _pack_nack(lost):
        body += _PID_BLP.pack(*pair)
    return _member(RTCP_RTPFB, RTPFB_NACK, body)


def _pack_nack(lost: Iterable[int]) -> list[tuple[int, int]]:
    values = set()
    for seq in lost:
        _check_range("lost sequence number", seq, 0xFFFF)
        values.add(seq)
    if not values:
        raise ValueError("lost: no sequence numbers")
    ordered = _circular_order(sorted(values))
    pairs = []
    index = 0
    while index < len(ordered):
        pid = ordered[index]
        blp = 0
        index += 1
        while index < len(ordered):
            distance = (ordered[index] - pid) & 0xFFFF
            if distance > 16:
                break
            blp |= 1 << (distance - 1)
            index += 1
        pairs.append((pid, blp))
    return pairs


def _circular_order(values: list[int]) -> list[int]:
    """Rotate sorted 16-bit values to start just after the widest circular gap."""
    widest_gap = (values[0] - values[-1]) & 0xFFFF  # the gap across the wrap
    start = 0
    for i in range(1, len(values)):
        gap = values[i] - values[i - 1]
        if gap > widest_gap:
            widest_gap = gap
            start = i
    return values[start:] + values[:start]


def build_remb(sender_ssrc: int, bitrate: int, ssrcs: Iterable[int]) -> bytes:
    """draft-alvestrand-rmcat-remb-03 §2.2; the mantissa is truncated, never rounded up."""
    header = _feedback_header(sender_ssrc, 0)
    if not isinstance(bitrate, int) or bitrate < 0:
        raise ValueError(f"bitrate: {bitrate!r} is not a non-negative integer")
    ssrcs = list(ssrcs)
    if len(ssrcs) > 255:
        raise ValueError(f"ssrcs: {len(ssrcs)} given, at most 255")
    exponent = 0
    mantissa = bitrate
    while mantissa > 0x3FFFF:
        mantissa >>= 1
        exponent += 1
    if exponent > 63:
        raise ValueError(f"bitrate: {bitrate} does not fit an 18-bit mantissa and 6-bit exponent")
    body = bytearray(header)
    body += _REMB_HEADER.pack(b"REMB", len(ssrcs), (exponent << 2) | (mantissa >> 16), mantissa & 0xFFFF)
    for ssrc in ssrcs:
        _check_range("ssrc", ssrc, U32_MAX)
        body += _U32.pack(ssrc)
    return _member(RTCP_PSFB, PSFB_AFB, body)


def build_transport_feedback(
    sender_ssrc: int,
    media_ssrc: int,
    base_sequence: int,
    fb_count: int,
    reference_time_us: int,
    arrivals: list[int | None],
) -> bytes:
    """Transport-wide feedback (draft-holmer-...-01 §3.1).

    arrivals[i]: arrival time in µs of packet base_sequence + i, or None if lost. The
    reference time is reference_time_us in 64 ms units; each receive delta is measured
    from the previous *encoded* time, rounded to 250 µs, so errors do not accumulate.
    A delta beyond ±8.19 s does not fit 16 bits: ValueError (start a new packet).
    Padded to 32 bits with RTCP padding, as libwebrtc does.
    """
    header = _feedback_header(sender_ssrc, media_ssrc)
    _check_range("base_sequence", base_sequence, 0xFFFF)
    _check_range("fb_count", fb_count, 255)
    if not isinstance(reference_time_us, int):
        raise ValueError(f"reference_time_us: {reference_time_us!r} is not an integer")
    if not 1 <= len(arrivals) <= TWCC_MAX_STATUS_COUNT:
        raise ValueError(f"arrivals: {len(arrivals)} packets, need 1..{TWCC_MAX_STATUS_COUNT}")
    reference_ticks = reference_time_us // TWCC_REFERENCE_US
    symbols, deltas = _encode_deltas(reference_ticks * TWCC_REFERENCE_US, arrivals)
    body = bytearray(header)
    body += _TWCC_HEADER.pack(base_sequence, len(arrivals), ((reference_ticks & 0xFFFFFF) << 8) | fb_count)
    body += _encode_chunks(symbols)
    body += deltas
    padding = -len(body) % 4
    if not padding:
        return _member(RTCP_RTPFB, RTPFB_TRANSPORT_CC, body)
    body += bytes(padding - 1)
    body.append(padding)
    return _HEADER.pack(0xA0 | RTPFB_TRANSPORT_CC, RTCP_RTPFB, len(body) // 4) + bytes(body)


def _encode_deltas(now: int, arrivals: list[int | None]) -> tuple[list[int], bytes]:
    symbols = []
    deltas = bytearray()
    for index, arrival in enumerate(arrivals):
        if arrival is None:
            symbols.append(_TWCC_NOT_RECEIVED)
            continue
        if not isinstance(arrival, int):
            raise ValueError(f"arrivals[{index}]: {arrival!r} is not an integer or None")
        elapsed = arrival - now
        # Round half away from zero, like libwebrtc.
        ticks = (abs(elapsed) + TWCC_DELTA_US // 2) // TWCC_DELTA_US
        if elapsed < 0:
            ticks = -ticks
        if 0 <= ticks <= 0xFF:
            symbols.append(_TWCC_SMALL_DELTA)
            deltas.append(ticks)
        elif -0x8000 <= ticks <= 0x7FFF:
            symbols.append(_TWCC_LARGE_DELTA)
            deltas += struct.pack("!h", ticks)
        else:
            raise ValueError(f"arrivals[{index}]: delta of {ticks} ticks does not fit 16 bits")
        now += ticks * TWCC_DELTA_US
    return symbols, bytes(deltas)


def _encode_chunks(symbols: list[int]) -> bytes:
    """Greedy chunking: long runs as run length chunks, the rest as status vectors."""
    out = bytearray()
    total = len(symbols)
    index = 0
    while index < total:
        symbol = symbols[index]
        run = 1
        while index + run < total and run < _TWCC_MAX_RUN and symbols[index + run] == symbol:
            run += 1
        window = symbols[index : index + 14]
        if run >= 14 or index + run == total or (run >= 7 and max(window) > 1):
            # §3.1.3: T=0, 2-bit symbol, 13-bit run length (also for a uniform tail,
            # as libwebrtc does).
            out += struct.pack("!H", (symbol << 13) | run)
            index += run
        elif max(window) <= 1:
            # §3.1.4: T=1, S=0, fourteen 1-bit symbols (unused tail reads as "not received").
            chunk = 0x8000
            for i, value in enumerate(window):
                chunk |= value << (13 - i)
            out += struct.pack("!H", chunk)
            index += len(window)
        else:
            # §3.1.4: T=1, S=1, seven 2-bit symbols.
            chunk = 0xC000
            for i, value in enumerate(symbols[index : index + 7]):
                chunk |= value << (12 - 2 * i)
            out += struct.pack("!H", chunk)
            index += min(7, total - index)
    return bytes(out)


# --- NTP time (RFC 3550 §4) ----------------------------------------------------------


def ntp_from_unix(seconds: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point since 1900) for a Unix time."""
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise ValueError(f"seconds: {seconds!r} is not a finite number")
    whole = math.floor(seconds)
    fraction = int((seconds - whole) * (1 << 32))
    return (((whole + NTP_EPOCH_OFFSET) << 32) + fraction) & NTP_MAX


def ntp_to_unix(ntp: int) -> float:
    """Inverse of ntp_from_unix (era 0)."""
    return (ntp >> 32) - NTP_EPOCH_OFFSET + (ntp & U32_MAX) / (1 << 32)


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits, as carried in LSR (RFC 3550 §6.4.1), 1/65536 s units."""
    return (ntp >> 16) & U32_MAX
