"""RTP packets: the fixed header (RFC 3550 §5.1), header extensions (RFC 8285) and RTX
(RFC 4588), read and rewritten straight from the bytes.

Sans-I/O and stdlib only. Every function accepts `bytes`, `bytearray` or a byte
`memoryview`; bad input raises `ValueError` naming the field, never anything else.
The hot path uses `payload_offset`, `find_extension`, `audio_level` and
`rewrite_extension_ids`, which only do offset arithmetic; `parse_header` is the full,
validating parse.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

RTP_VERSION = 2
RTP_HEADER_SIZE = 12  # RFC 3550 §5.1: fixed part, before CSRCs
MAX_CSRC = 15

MAX_SEQUENCE = 0x10000
SEQUENCE_MASK = 0xFFFF
HALF_SEQUENCE = 0x8000
MAX_TIMESTAMP = 1 << 32
TIMESTAMP_MASK = 0xFFFFFFFF
HALF_TIMESTAMP = 1 << 31
MAX_PAYLOAD_TYPE = 127

# RFC 5761 §4: RTCP packet types 192..223 can't be confused with RTP payload types.
RTCP_PACKET_TYPE_MIN = 192
RTCP_PACKET_TYPE_MAX = 223

# RFC 8285 §4.2 / §4.3: the "defined by profile" field selects the element form.
PROFILE_ONE_BYTE = 0xBEDE
PROFILE_TWO_BYTE = 0x1000
PROFILE_TWO_BYTE_MASK = 0xFFF0  # low 4 bits are "appbits"
ONE_BYTE_MAX_ID = 14
ONE_BYTE_STOP_ID = 15  # §4.2: reserved; a parser stops at it
ONE_BYTE_MAX_LENGTH = 16
TWO_BYTE_MAX_ID = 255
TWO_BYTE_MAX_LENGTH = 255

URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
URI_REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
URI_TOFFSET = "urn:ietf:params:rtp-hdrext:toffset"
URI_VIDEO_ORIENTATION = "urn:3gpp:video-orientation"

_FIXED = struct.Struct("!BBHII")
_PROFILE_AND_LENGTH = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


def is_rtcp(data) -> bool:
    """RFC 5761 §4: demultiplex RTP and RTCP on one port by the second byte."""
    return len(data) >= 2 and RTCP_PACKET_TYPE_MIN <= data[1] <= RTCP_PACKET_TYPE_MAX


class RtpHeader:
    """The parsed header of one RTP packet; offsets index the original buffer."""

    __slots__ = (
        "version",
        "padding",
        "extension",
        "marker",
        "payload_type",
        "sequence_number",
        "timestamp",
        "ssrc",
        "csrcs",
        "extension_profile",
        "extensions",
        "header_length",
        "payload_end",
    )

    def __init__(
        self,
        version: int,
        padding: bool,
        extension: bool,
        marker: bool,
        payload_type: int,
        sequence_number: int,
        timestamp: int,
        ssrc: int,
        csrcs: tuple[int, ...],
        extension_profile: int | None,
        extensions: dict[int, bytes],
        header_length: int,
        payload_end: int,
    ) -> None:
        self.version = version
        self.padding = padding
        self.extension = extension
        self.marker = marker
        self.payload_type = payload_type
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.csrcs = csrcs
        self.extension_profile = extension_profile
        self.extensions = extensions
        self.header_length = header_length
        self.payload_end = payload_end

    @property
    def payload_size(self) -> int:
        return self.payload_end - self.header_length

    def __repr__(self) -> str:
        return (
            f"RtpHeader(pt={self.payload_type}, seq={self.sequence_number}, "
            f"ts={self.timestamp}, ssrc={self.ssrc:#010x}, marker={self.marker}, "
            f"extensions={sorted(self.extensions)}, header_length={self.header_length}, "
            f"payload_end={self.payload_end})"
        )


def parse_header(data) -> RtpHeader:
    """Parse and validate the whole header, extension elements and padding count."""
    size = len(data)
    if size < RTP_HEADER_SIZE:
        raise ValueError(f"RTP header: {size} bytes, need at least {RTP_HEADER_SIZE}")
    first, second, sequence_number, timestamp, ssrc = _FIXED.unpack_from(data, 0)
    version = first >> 6
    if version != RTP_VERSION:
        raise ValueError(f"RTP version: {version}, expected {RTP_VERSION}")
    csrc_count = first & 0x0F
    pos = RTP_HEADER_SIZE + 4 * csrc_count
    if pos > size:
        raise ValueError(f"RTP CSRC count: {csrc_count} CSRCs do not fit in {size} bytes")
    csrcs = struct.unpack_from(f"!{csrc_count}I", data, RTP_HEADER_SIZE) if csrc_count else ()

    extension_profile = None
    extensions: dict[int, bytes] = {}
    if first & 0x10:
        extension_profile, start, end = _extension_bounds(data, pos, size)
        for ext_id, _, value_start, value_length in _elements(data, extension_profile, start, end):
            if ext_id not in extensions:  # the first occurrence wins, as in find_extension
                extensions[ext_id] = bytes(data[value_start : value_start + value_length])
        pos = end

    payload_end = size
    if first & 0x20:
        # RFC 3550 §5.1: the last octet counts the padding octets, itself included.
        count = data[size - 1] if size > pos else 0
        if count == 0 or count > size - pos:
            raise ValueError(f"RTP padding count: {count} with {size - pos} bytes after the header")
        payload_end = size - count

    return RtpHeader(
        version=version,
        padding=bool(first & 0x20),
        extension=bool(first & 0x10),
        marker=bool(second & 0x80),
        payload_type=second & 0x7F,
        sequence_number=sequence_number,
        timestamp=timestamp,
        ssrc=ssrc,
        csrcs=tuple(csrcs),
        extension_profile=extension_profile,
        extensions=extensions,
        header_length=pos,
        payload_end=payload_end,
    )


def payload_offset(data) -> int:
    """Where the payload starts: only the CSRC and extension length arithmetic."""
    size = len(data)
    if size < RTP_HEADER_SIZE:
        raise ValueError(f"RTP header: {size} bytes, need at least {RTP_HEADER_SIZE}")
    first = data[0]
    pos = RTP_HEADER_SIZE + 4 * (first & 0x0F)
    if first & 0x10:
        if pos + 4 > size:
            raise ValueError("RTP extension header: truncated")
        pos += 4 + 4 * ((data[pos + 2] << 8) | data[pos + 3])
    if pos > size:
        raise ValueError(f"RTP header length: {pos} exceeds packet length {size}")
    return pos


def extension_block(data) -> tuple[int, int, int] | None:
    """(profile, start, end) of the extension elements area, or None without an X bit."""
    size = len(data)
    if size < RTP_HEADER_SIZE:
        raise ValueError(f"RTP header: {size} bytes, need at least {RTP_HEADER_SIZE}")
    first = data[0]
    if not first & 0x10:
        return None
    return _extension_bounds(data, RTP_HEADER_SIZE + 4 * (first & 0x0F), size)


def _extension_bounds(data, pos: int, size: int) -> tuple[int, int, int]:
    # RFC 3550 §5.3.1: 16-bit profile, 16-bit length in 32-bit words, then the data.
    if pos + 4 > size:
        raise ValueError("RTP extension header: truncated")
    profile, words = _PROFILE_AND_LENGTH.unpack_from(data, pos)
    start = pos + 4
    end = start + 4 * words
    if end > size:
        raise ValueError(f"RTP extension length: {words} words exceed packet length {size}")
    return profile, start, end


def _elements(data, profile: int, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield (id, id_offset, value_offset, value_length) of each RFC 8285 element."""
    pos = start
    if profile == PROFILE_ONE_BYTE:
        # RFC 8285 §4.2: 4-bit id, 4-bit (length - 1); id 0 is a padding byte, 15 stops.
        while pos < end:
            byte = data[pos]
            ext_id = byte >> 4
            if ext_id == 0:
                pos += 1
                continue
            if ext_id == ONE_BYTE_STOP_ID:
                return
            length = (byte & 0x0F) + 1
            if pos + 1 + length > end:
                raise ValueError(f"RTP extension element {ext_id}: length {length} overruns the block")
            yield ext_id, pos, pos + 1, length
            pos += 1 + length
    elif profile & PROFILE_TWO_BYTE_MASK == PROFILE_TWO_BYTE:
        # RFC 8285 §4.3: 8-bit id, 8-bit length (0 allowed); id 0 is a padding byte.
        while pos < end:
            ext_id = data[pos]
            if ext_id == 0:
                pos += 1
                continue
            if pos + 2 > end:
                raise ValueError(f"RTP extension element {ext_id}: truncated length byte")
            length = data[pos + 1]
            if pos + 2 + length > end:
                raise ValueError(f"RTP extension element {ext_id}: length {length} overruns the block")
            yield ext_id, pos, pos + 2, length
            pos += 2 + length
    # Any other profile carries no RFC 8285 elements.


def find_extension(data, ext_id: int) -> tuple[int, int] | None:
    """(offset, length) of the value of the first element `ext_id`, or None."""
    block = extension_block(data)
    if block is None:
        return None
    profile, pos, end = block
    if profile == PROFILE_ONE_BYTE:
        # Same walk as _elements, inlined: this runs for every packet (mid, rid, twcc).
        while pos < end:
            byte = data[pos]
            found = byte >> 4
            if found == 0:
                pos += 1
                continue
            if found == ONE_BYTE_STOP_ID:
                return None
            length = (byte & 0x0F) + 1
            if pos + 1 + length > end:
                raise ValueError(f"RTP extension element {found}: length {length} overruns the block")
            if found == ext_id:
                return pos + 1, length
            pos += 1 + length
        return None
    for found, _, value_start, length in _elements(data, profile, pos, end):
        if found == ext_id:
            return value_start, length
    return None


def audio_level(data, ext_id: int) -> int:
    """RFC 6464 §3: the audio level (0..127, in -dBov; the voice-activity bit dropped) in
    element `ext_id`, or -1 when there is none (no extension, no such element, an empty
    value). The one-byte form is walked inline, allocating nothing: this runs for every
    audio packet a microphone sends. Raises ValueError exactly where `find_extension` does.
    """
    size = len(data)
    if size < RTP_HEADER_SIZE:
        raise ValueError(f"RTP header: {size} bytes, need at least {RTP_HEADER_SIZE}")
    first = data[0]
    if not first & 0x10:
        return -1
    pos = RTP_HEADER_SIZE + 4 * (first & 0x0F)
    if pos + 4 > size:
        raise ValueError("RTP extension header: truncated")
    end = pos + 4 + 4 * (data[pos + 2] << 8 | data[pos + 3])
    if end > size:
        raise ValueError(f"RTP extension length: {(end - pos - 4) // 4} words exceed packet length {size}")
    if data[pos] != 0xBE or data[pos + 1] != 0xDE:  # not the one-byte form (RFC 8285 §4.2)
        where = find_extension(data, ext_id)
        return data[where[0]] & 0x7F if where is not None and where[1] else -1
    pos += 4
    while pos < end:
        byte = data[pos]
        found = byte >> 4
        if found == 0:
            pos += 1
            continue
        if found == ONE_BYTE_STOP_ID:
            return -1
        following = pos + 2 + (byte & 0x0F)
        if following > end:
            raise ValueError(f"RTP extension element {found}: length {(byte & 0x0F) + 1} overruns the block")
        if found == ext_id:
            return data[pos + 1] & 0x7F
        pos = following
    return -1


def rewrite_extension_ids(buf: bytearray, table: bytes) -> None:
    """Renumber every element in place: id `i` becomes `table[i]`.

    `table` has 256 entries (16 is enough for the one-byte form). Mapping an id to one
    the receiver never negotiated hides that element without changing the length.
    Padding bytes and the one-byte stop id 15 (and all after it) are left alone. The
    block is validated before the first write, so on ValueError `buf` is unchanged.
    """
    if len(table) not in (16, 256):
        raise ValueError(f"extension id table: {len(table)} entries, need 16 or 256")
    if isinstance(buf, bytes):
        raise ValueError("buf: must be a writable bytearray, got bytes")
    block = extension_block(buf)
    if block is None:
        return
    profile, start, end = block
    if profile == PROFILE_ONE_BYTE:
        writes = _one_byte_renames(buf, table, start, end)
    else:
        writes = _two_byte_renames(buf, table, profile, start, end)
    for offset, value in writes:
        buf[offset] = value


def _one_byte_renames(buf, table: bytes, pos: int, end: int) -> list[tuple[int, int]]:
    # The _elements walk inlined: this runs once per forwarded packet per subscriber.
    writes = []
    while pos < end:
        byte = buf[pos]
        ext_id = byte >> 4
        if ext_id == 0:
            pos += 1
            continue
        if ext_id == ONE_BYTE_STOP_ID:
            break
        length = (byte & 0x0F) + 1
        if pos + 1 + length > end:
            raise ValueError(f"RTP extension element {ext_id}: length {length} overruns the block")
        new_id = table[ext_id]
        if new_id != ext_id:
            if not 1 <= new_id <= ONE_BYTE_MAX_ID:
                # 0 would read as padding and 15 would stop the receiver's parse.
                raise ValueError(f"extension id table: id {ext_id} -> {new_id}, not a one-byte id 1..14")
            writes.append((pos, (new_id << 4) | (byte & 0x0F)))
        pos += 1 + length
    return writes


def _two_byte_renames(buf, table: bytes, profile: int, start: int, end: int) -> list[tuple[int, int]]:
    writes = []
    for ext_id, id_offset, _, _ in _elements(buf, profile, start, end):
        if ext_id >= len(table):
            raise ValueError(f"extension id table: no entry for id {ext_id}")
        new_id = table[ext_id]
        if new_id == 0:
            raise ValueError(f"extension id table: id {ext_id} -> 0 would turn it into padding")
        if new_id != ext_id:
            writes.append((id_offset, new_id))
    return writes


def _check_range(name: str, value: int, maximum: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= maximum:
        raise ValueError(f"{name}: {value!r} is not an integer in 0..{maximum}")


def _pack_extensions(extensions: dict[int, bytes], two_byte: bool) -> tuple[int, bytes]:
    """RFC 8285 §4.2/§4.3: the one-byte form when every element allows it."""
    one_byte = not two_byte and all(
        1 <= ext_id <= ONE_BYTE_MAX_ID and 1 <= len(value) <= ONE_BYTE_MAX_LENGTH
        for ext_id, value in extensions.items()
    )
    block = bytearray()
    for ext_id, value in extensions.items():
        _check_range("extension id", ext_id, TWO_BYTE_MAX_ID)
        if ext_id == 0:
            raise ValueError("extension id: 0 is reserved for padding")
        if len(value) > TWO_BYTE_MAX_LENGTH:
            raise ValueError(f"extension {ext_id}: value of {len(value)} bytes is too long")
        if one_byte:
            block.append((ext_id << 4) | (len(value) - 1))
        else:
            block += bytes((ext_id, len(value)))
        block += value
    block += bytes(-len(block) % 4)
    return (PROFILE_ONE_BYTE if one_byte else PROFILE_TWO_BYTE), bytes(block)


def build_packet(
    payload_type: int,
    sequence_number: int,
    timestamp: int,
    ssrc: int,
    payload: bytes = b"",
    marker: bool = False,
    extensions: dict[int, bytes] | None = None,
    csrcs=(),
    padding: int = 0,
    two_byte: bool = False,
) -> bytes:
    """Serialize one RTP packet (tests and bench). `padding` is the padding byte count."""
    _check_range("payload_type", payload_type, MAX_PAYLOAD_TYPE)
    _check_range("sequence_number", sequence_number, SEQUENCE_MASK)
    _check_range("timestamp", timestamp, TIMESTAMP_MASK)
    _check_range("ssrc", ssrc, TIMESTAMP_MASK)
    _check_range("padding", padding, 255)
    csrcs = tuple(csrcs)
    if len(csrcs) > MAX_CSRC:
        raise ValueError(f"csrcs: {len(csrcs)} given, at most {MAX_CSRC}")
    for csrc in csrcs:
        _check_range("csrc", csrc, TIMESTAMP_MASK)
    first = (RTP_VERSION << 6) | len(csrcs)
    if padding:
        first |= 0x20
    if extensions:
        first |= 0x10
    out = bytearray(_FIXED.pack(first, (0x80 if marker else 0) | payload_type, sequence_number, timestamp, ssrc))
    for csrc in csrcs:
        out += _U32.pack(csrc)
    if extensions:
        profile, block = _pack_extensions(extensions, two_byte)
        out += _PROFILE_AND_LENGTH.pack(profile, len(block) // 4)
        out += block
    out += payload
    if padding:
        out += bytes(padding - 1)
        out.append(padding)
    return bytes(out)


def _rewrite_fixed(header: bytearray, payload_type: int, sequence_number: int, ssrc: int) -> None:
    header[0] &= ~0x20 & 0xFF  # the copy never carries padding
    header[1] = (header[1] & 0x80) | payload_type
    _U16.pack_into(header, 2, sequence_number)
    _U32.pack_into(header, 8, ssrc)


def wrap_rtx(packet: bytes, rtx_payload_type: int, rtx_ssrc: int, rtx_sequence_number: int) -> bytes:
    """RFC 4588 §4: the original sequence number (OSN) prepended to the payload.

    Marker, timestamp, CSRCs and header extensions are kept; payload type, SSRC and
    sequence number are the RTX stream's; padding is dropped.
    """
    _check_range("rtx_payload_type", rtx_payload_type, MAX_PAYLOAD_TYPE)
    _check_range("rtx_ssrc", rtx_ssrc, TIMESTAMP_MASK)
    _check_range("rtx_sequence_number", rtx_sequence_number, SEQUENCE_MASK)
    header = parse_header(packet)
    out = bytearray(packet[: header.header_length])
    _rewrite_fixed(out, rtx_payload_type, rtx_sequence_number, rtx_ssrc)
    out += _U16.pack(header.sequence_number)
    out += packet[header.header_length : header.payload_end]
    return bytes(out)


def unwrap_rtx(packet: bytes, original_payload_type: int, original_ssrc: int) -> bytes:
    """RFC 4588 §4: rebuild the original packet from an RTX packet.

    Padding-only RTX packets (bandwidth probes) carry no OSN and raise ValueError.
    """
    _check_range("original_payload_type", original_payload_type, MAX_PAYLOAD_TYPE)
    _check_range("original_ssrc", original_ssrc, TIMESTAMP_MASK)
    header = parse_header(packet)
    start = header.header_length
    if header.payload_end - start < 2:
        raise ValueError(f"RTX payload: {header.payload_end - start} bytes, need 2 for the OSN")
    original_sequence = (packet[start] << 8) | packet[start + 1]
    out = bytearray(packet[:start])
    _rewrite_fixed(out, original_payload_type, original_sequence, original_ssrc)
    out += packet[start + 2 : header.payload_end]
    return bytes(out)


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b in 16-bit serial arithmetic (RFC 1982), in -32768..32767."""
    return ((a - b + HALF_SEQUENCE) & SEQUENCE_MASK) - HALF_SEQUENCE


def seq_newer(a: int, b: int) -> bool:
    """True if `a` comes after `b` (RFC 1982). Exactly half the space apart: neither."""
    return 0 < ((a - b) & SEQUENCE_MASK) < HALF_SEQUENCE


def timestamp_diff(a: int, b: int) -> int:
    """Signed distance a - b between 32-bit RTP timestamps (RFC 1982 arithmetic)."""
    return ((a - b + HALF_TIMESTAMP) & TIMESTAMP_MASK) - HALF_TIMESTAMP
