"""STUN messages (RFC 8489) with the ICE attributes of RFC 8445 §16, as an ICE-lite
agent needs them: parse a Binding request, check its MESSAGE-INTEGRITY and
FINGERPRINT, answer with a Binding success or error response.

Sans-I/O and stdlib only; bad input raises `ValueError` naming the field (the
`verify_*` functions answer False instead).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
import zlib

HEADER_SIZE = 20
MAGIC_COOKIE = 0x2112A442  # RFC 8489 §5
TRANSACTION_ID_SIZE = 12
FINGERPRINT_XOR = 0x5354554E  # §14.7: "STUN"

METHOD_BINDING = 0x001

# §5: the two class bits C1 C0 as one number.
CLASS_REQUEST = 0b00
CLASS_INDICATION = 0b01
CLASS_SUCCESS = 0b10
CLASS_ERROR = 0b11

# §18.3 attribute registry, plus ICE (RFC 8445 §16.1) and what Chromium sends.
ATTR_MAPPED_ADDRESS = 0x0001
ATTR_USERNAME = 0x0006
ATTR_MESSAGE_INTEGRITY = 0x0008
ATTR_ERROR_CODE = 0x0009
ATTR_UNKNOWN_ATTRIBUTES = 0x000A
ATTR_REALM = 0x0014
ATTR_NONCE = 0x0015
ATTR_MESSAGE_INTEGRITY_SHA256 = 0x001C
ATTR_PASSWORD_ALGORITHM = 0x001D
ATTR_USERHASH = 0x001E
ATTR_XOR_MAPPED_ADDRESS = 0x0020
ATTR_PRIORITY = 0x0024
ATTR_USE_CANDIDATE = 0x0025
ATTR_PASSWORD_ALGORITHMS = 0x8002
ATTR_ALTERNATE_DOMAIN = 0x8003
ATTR_SOFTWARE = 0x8022
ATTR_ALTERNATE_SERVER = 0x8023
ATTR_FINGERPRINT = 0x8028
ATTR_ICE_CONTROLLED = 0x8029
ATTR_ICE_CONTROLLING = 0x802A
ATTR_GOOG_NETWORK_INFO = 0xC057

ERROR_BAD_REQUEST = 400
ERROR_UNAUTHENTICATED = 401
ERROR_UNKNOWN_ATTRIBUTE = 420
ERROR_ROLE_CONFLICT = 487  # RFC 8445 §7.3.1.1
ERROR_SERVER_ERROR = 500

INTEGRITY_SIZE = 20  # HMAC-SHA1
MAX_USERNAME_BYTES = 513  # §14.3
MAX_REASON_CHARS = 127  # §14.8

FAMILY_IPV4 = 0x01
FAMILY_IPV6 = 0x02

_HEADER = struct.Struct("!HHI")
_ATTR_HEADER = struct.Struct("!HH")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")

# Value sizes that make a message malformed when wrong, checked once in parse().
_FIXED_SIZES = {
    ATTR_PRIORITY: 4,
    ATTR_USE_CANDIDATE: 0,
    ATTR_ICE_CONTROLLED: 8,
    ATTR_ICE_CONTROLLING: 8,
    ATTR_MESSAGE_INTEGRITY: INTEGRITY_SIZE,
    ATTR_FINGERPRINT: 4,
}


def is_stun(data) -> bool:
    """RFC 8489 §5 / RFC 7983: leading bits 00 and the magic cookie."""
    return (
        len(data) >= HEADER_SIZE
        and data[0] & 0xC0 == 0
        and data[4] == 0x21
        and data[5] == 0x12
        and data[6] == 0xA4
        and data[7] == 0x42
    )


def message_type(method: int, message_class: int) -> int:
    """§5: interleave the 12 method bits M11..M0 with the class bits C1 C0."""
    return (
        ((method & 0xF80) << 2)
        | ((method & 0x070) << 1)
        | (method & 0x00F)
        | ((message_class & 0b10) << 7)
        | ((message_class & 0b01) << 4)
    )


def split_message_type(value: int) -> tuple[int, int]:
    """§5: (method, class) from the 14-bit message type."""
    method = (value & 0x000F) | ((value >> 1) & 0x0070) | ((value >> 2) & 0x0F80)
    message_class = ((value >> 4) & 0b01) | ((value >> 7) & 0b10)
    return method, message_class


class StunMessage:
    """A parsed message; attributes are (type, value) in wire order, unpadded."""

    __slots__ = ("method", "message_class", "transaction_id", "attributes")

    def __init__(
        self,
        method: int,
        message_class: int,
        transaction_id: bytes,
        attributes: list[tuple[int, bytes]],
    ) -> None:
        self.method = method
        self.message_class = message_class
        self.transaction_id = transaction_id
        self.attributes = attributes

    def get(self, attr_type: int) -> bytes | None:
        """The value of the first attribute of this type."""
        for found, value in self.attributes:
            if found == attr_type:
                return value
        return None

    @property
    def username(self) -> str | None:
        value = self.get(ATTR_USERNAME)
        # Undecodable bytes become U+FFFD, which can never equal a real ufrag.
        return None if value is None else value.decode("utf-8", errors="replace")

    @property
    def use_candidate(self) -> bool:
        return self.get(ATTR_USE_CANDIDATE) is not None

    @property
    def priority(self) -> int | None:
        value = self.get(ATTR_PRIORITY)
        return None if value is None else _U32.unpack(value)[0]

    @property
    def ice_controlling(self) -> int | None:
        value = self.get(ATTR_ICE_CONTROLLING)
        return None if value is None else _U64.unpack(value)[0]

    @property
    def ice_controlled(self) -> int | None:
        value = self.get(ATTR_ICE_CONTROLLED)
        return None if value is None else _U64.unpack(value)[0]

    @property
    def error_code(self) -> tuple[int, str] | None:
        """§14.8: (code, reason) of ERROR-CODE."""
        value = self.get(ATTR_ERROR_CODE)
        if value is None:
            return None
        code = (value[2] & 0x07) * 100 + value[3]
        return code, value[4:].decode("utf-8", errors="replace")

    @property
    def xor_mapped_address(self) -> tuple[str, int] | None:
        """§14.2: (host, port) of XOR-MAPPED-ADDRESS."""
        value = self.get(ATTR_XOR_MAPPED_ADDRESS)
        return None if value is None else _unxor_address(value, self.transaction_id)

    def __repr__(self) -> str:
        names = ", ".join(f"{attr_type:#06x}" for attr_type, _ in self.attributes)
        return (
            f"StunMessage(method={self.method:#05x}, class={self.message_class}, "
            f"transaction_id={self.transaction_id.hex()}, attributes=[{names}])"
        )


def _walk(data) -> list[tuple[int, int, int, int]]:
    """Validate header and framing; (type, attribute offset, value offset, length)."""
    size = len(data)
    if size < HEADER_SIZE:
        raise ValueError(f"STUN header: {size} bytes, need {HEADER_SIZE}")
    type_field, length, cookie = _HEADER.unpack_from(data, 0)
    if type_field & 0xC000:
        raise ValueError(f"STUN message type: {type_field:#06x} has the top two bits set")
    if cookie != MAGIC_COOKIE:
        raise ValueError(f"STUN magic cookie: {cookie:#010x}")
    if length % 4:
        raise ValueError(f"STUN message length: {length} is not a multiple of 4")
    if HEADER_SIZE + length != size:
        raise ValueError(f"STUN message length: header says {length}, body has {size - HEADER_SIZE}")
    found = []
    pos = HEADER_SIZE
    while pos < size:
        # §14: type, length, value, padded to a multiple of 4 (length excludes padding).
        attr_type, attr_length = _ATTR_HEADER.unpack_from(data, pos)
        value = pos + 4
        if value + attr_length > size:
            raise ValueError(f"STUN attribute {attr_type:#06x}: length {attr_length} overruns the message")
        found.append((attr_type, pos, value, attr_length))
        pos = value + ((attr_length + 3) & ~3)
    return found


def parse(data) -> StunMessage:
    """Parse a STUN message; ValueError on bad header, length or attribute framing."""
    attributes = []
    transaction_id = bytes(data[8:HEADER_SIZE])
    for attr_type, _, value, length in _walk(data):
        expected = _FIXED_SIZES.get(attr_type)
        if expected is not None and length != expected:
            raise ValueError(f"STUN attribute {attr_type:#06x}: length {length}, expected {expected}")
        content = bytes(data[value : value + length])
        if attr_type == ATTR_ERROR_CODE and length < 4:
            raise ValueError(f"STUN ERROR-CODE: length {length}, need at least 4")
        if attr_type == ATTR_XOR_MAPPED_ADDRESS:
            _unxor_address(content, transaction_id)  # validates family and length
        attributes.append((attr_type, content))
    method, message_class = split_message_type(_HEADER.unpack_from(data, 0)[0])
    return StunMessage(method, message_class, transaction_id, attributes)


def verify_message_integrity(data, key: bytes) -> bool:
    """§14.5: HMAC-SHA1 over the message up to MESSAGE-INTEGRITY, with the header
    length adjusted to end just after it. Only MESSAGE-INTEGRITY-SHA256 and
    FINGERPRINT may follow it; anything else makes the message invalid."""
    try:
        attributes = _walk(data)
    except ValueError:
        return False
    for index, (attr_type, start, value, length) in enumerate(attributes):
        if attr_type != ATTR_MESSAGE_INTEGRITY:
            continue
        trailing = {found for found, _, _, _ in attributes[index + 1 :]}
        if length != INTEGRITY_SIZE or trailing - {ATTR_MESSAGE_INTEGRITY_SHA256, ATTR_FINGERPRINT}:
            return False
        expected = _integrity(data[:start], start + 4 + INTEGRITY_SIZE - HEADER_SIZE, key)
        return hmac.compare_digest(expected, bytes(data[value : value + INTEGRITY_SIZE]))
    return False


def verify_fingerprint(data) -> bool:
    """§14.7: CRC-32 of the message before FINGERPRINT, xor 0x5354554E; must be last."""
    try:
        attributes = _walk(data)
    except ValueError:
        return False
    if not attributes:
        return False
    attr_type, start, value, length = attributes[-1]
    if attr_type != ATTR_FINGERPRINT or length != 4:
        return False
    if any(found == ATTR_FINGERPRINT for found, _, _, _ in attributes[:-1]):
        return False
    expected = _U32.pack(zlib.crc32(data[:start]) ^ FINGERPRINT_XOR)
    return hmac.compare_digest(expected, bytes(data[value : value + 4]))


def _integrity(head, length: int, key: bytes) -> bytes:
    """HMAC-SHA1 of `head` (header + attributes) with the length field set to `length`."""
    message = bytearray(head)
    struct.pack_into("!H", message, 2, length)
    return hmac.new(key, message, hashlib.sha1).digest()


# --- addresses (§14.2) ---------------------------------------------------------------


def _xor_mask(transaction_id: bytes, size: int) -> bytes:
    return (_U32.pack(MAGIC_COOKIE) + transaction_id)[:size]


def _xor_address(host: str, port: int, transaction_id: bytes) -> bytes:
    if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise ValueError(f"port: {port!r} is not in 0..65535")
    address = ipaddress.ip_address(host)  # ValueError on a bad host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; they sent IPv4.
        address = address.ipv4_mapped
    family = FAMILY_IPV4 if address.version == 4 else FAMILY_IPV6
    packed = address.packed
    masked = bytes(a ^ b for a, b in zip(packed, _xor_mask(transaction_id, len(packed))))
    return struct.pack("!BBH", 0, family, port ^ (MAGIC_COOKIE >> 16)) + masked


def _unxor_address(value: bytes, transaction_id: bytes) -> tuple[str, int]:
    if len(value) < 4:
        raise ValueError(f"STUN XOR-MAPPED-ADDRESS: length {len(value)}, need at least 4")
    family = value[1]
    expected = {FAMILY_IPV4: 8, FAMILY_IPV6: 20}.get(family)
    if expected is None:
        raise ValueError(f"STUN XOR-MAPPED-ADDRESS family: {family:#04x}")
    if len(value) != expected:
        raise ValueError(f"STUN XOR-MAPPED-ADDRESS: length {len(value)} for family {family}")
    port = ((value[2] << 8) | value[3]) ^ (MAGIC_COOKIE >> 16)
    raw = bytes(a ^ b for a, b in zip(value[4:], _xor_mask(transaction_id, expected - 4)))
    return str(ipaddress.ip_address(raw)), port


# --- building -------------------------------------------------------------------------


def _attribute(attr_type: int, value: bytes) -> bytes:
    return _ATTR_HEADER.pack(attr_type, len(value)) + value + bytes(-len(value) % 4)


def _check_transaction_id(transaction_id: bytes) -> None:
    if not isinstance(transaction_id, (bytes, bytearray)) or len(transaction_id) != TRANSACTION_ID_SIZE:
        raise ValueError(f"transaction_id: need {TRANSACTION_ID_SIZE} bytes")


def _finish(type_field: int, transaction_id: bytes, body: bytes, integrity_key: bytes | None) -> bytes:
    """Append MESSAGE-INTEGRITY (if keyed) and FINGERPRINT, each with its own length."""
    message = bytearray(_HEADER.pack(type_field, len(body), MAGIC_COOKIE))
    message += transaction_id
    message += body
    if integrity_key is not None:
        mac = _integrity(message, len(message) - HEADER_SIZE + 4 + INTEGRITY_SIZE, integrity_key)
        message += _attribute(ATTR_MESSAGE_INTEGRITY, mac)
    struct.pack_into("!H", message, 2, len(message) - HEADER_SIZE + 8)
    message += _attribute(ATTR_FINGERPRINT, _U32.pack(zlib.crc32(message) ^ FINGERPRINT_XOR))
    return bytes(message)


def build_binding_success(transaction_id: bytes, address: tuple[str, int], integrity_key: bytes) -> bytes:
    """Binding success: XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT."""
    _check_transaction_id(transaction_id)
    host, port = address[0], address[1]
    body = _attribute(ATTR_XOR_MAPPED_ADDRESS, _xor_address(host, port, bytes(transaction_id)))
    return _finish(message_type(METHOD_BINDING, CLASS_SUCCESS), transaction_id, body, integrity_key)


def build_binding_error(
    transaction_id: bytes, code: int, reason: str, integrity_key: bytes | None = None
) -> bytes:
    """Binding error: ERROR-CODE (§14.8), MESSAGE-INTEGRITY if keyed, FINGERPRINT."""
    _check_transaction_id(transaction_id)
    if not isinstance(code, int) or not 300 <= code <= 699:
        raise ValueError(f"code: {code!r} is not in 300..699")
    if len(reason) > MAX_REASON_CHARS:
        raise ValueError(f"reason: {len(reason)} characters, at most {MAX_REASON_CHARS}")
    value = struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode("utf-8")
    body = _attribute(ATTR_ERROR_CODE, value)
    return _finish(message_type(METHOD_BINDING, CLASS_ERROR), transaction_id, body, integrity_key)


def build_binding_request(
    transaction_id: bytes,
    username: str,
    integrity_key: bytes,
    priority: int,
    controlling_tiebreaker: int | None = None,
    use_candidate: bool = False,
    controlled_tiebreaker: int | None = None,
) -> bytes:
    """ICE connectivity check (RFC 8445 §7.1.2): USERNAME, PRIORITY, ICE-CONTROLLING
    or ICE-CONTROLLED, USE-CANDIDATE, MESSAGE-INTEGRITY, FINGERPRINT."""
    _check_transaction_id(transaction_id)
    name = username.encode("utf-8")
    if len(name) > MAX_USERNAME_BYTES:
        raise ValueError(f"username: {len(name)} bytes, at most {MAX_USERNAME_BYTES}")
    if not isinstance(priority, int) or not 0 <= priority <= 0xFFFFFFFF:
        raise ValueError(f"priority: {priority!r} is not a 32-bit unsigned integer")
    if controlling_tiebreaker is not None and controlled_tiebreaker is not None:
        raise ValueError("controlled_tiebreaker: cannot be both controlling and controlled")
    body = bytearray(_attribute(ATTR_USERNAME, name))
    body += _attribute(ATTR_PRIORITY, _U32.pack(priority))
    for attr_type, tiebreaker in (
        (ATTR_ICE_CONTROLLING, controlling_tiebreaker),
        (ATTR_ICE_CONTROLLED, controlled_tiebreaker),
    ):
        if tiebreaker is None:
            continue
        if not isinstance(tiebreaker, int) or not 0 <= tiebreaker < 1 << 64:
            raise ValueError(f"tiebreaker: {tiebreaker!r} is not a 64-bit unsigned integer")
        body += _attribute(attr_type, _U64.pack(tiebreaker))
    if use_candidate:
        body += _attribute(ATTR_USE_CANDIDATE, b"")
    return _finish(message_type(METHOD_BINDING, CLASS_REQUEST), transaction_id, bytes(body), integrity_key)
