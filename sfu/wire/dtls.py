"""DTLS record framing check (RFC 6347 §4.1), so garbage is counted before OpenSSL sees it.

The handshake itself is aiortc's (OpenSSL); this only answers "is this datagram a
sequence of well-formed DTLS 1.0/1.2 records?" from the 13-byte record headers.
"""

from __future__ import annotations

RECORD_HEADER_LENGTH = 13
# change_cipher_spec(20), alert(21), handshake(22), application_data(23), heartbeat(24)
CONTENT_TYPES = frozenset((20, 21, 22, 23, 24))


def check_records(data: bytes) -> None:
    """Raise ValueError naming the field if `data` is not whole DTLS records."""
    offset = 0
    if not data:
        raise ValueError("dtls: empty datagram")
    while offset < len(data):
        if len(data) - offset < RECORD_HEADER_LENGTH:
            raise ValueError(f"dtls: truncated record header at offset {offset}")
        content_type = data[offset]
        if content_type not in CONTENT_TYPES:
            raise ValueError(f"dtls: unknown content type {content_type}")
        if data[offset + 1] != 0xFE:
            raise ValueError(f"dtls: version major {data[offset + 1]:#x} is not DTLS")
        length = int.from_bytes(data[offset + 11 : offset + 13], "big")
        offset += RECORD_HEADER_LENGTH + length
        if offset > len(data):
            raise ValueError(f"dtls: record length {length} runs past the datagram")


def is_valid(data: bytes) -> bool:
    try:
        check_records(data)
    except ValueError:
        return False
    return True
