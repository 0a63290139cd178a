"""RFC 4571 framing: RTP, RTCP, STUN and DTLS over a TCP stream, as ICE-TCP carries them
(RFC 6544 §3: every packet of the ICE-TCP connection, STUN included, is framed so).

Each packet is preceded by its length, 16 bits in network order (RFC 4571 §2). Pure:
bytes in, packets out, `FramingError` (a ValueError) naming what is wrong. A zero length is refused
(nothing the worker accepts is empty; a stream of zeros is garbage, not keepalives) and
so is a length past `max_packet` (the worker's datagram limit): a peer announcing 65535
bytes would otherwise make us hold 64 KiB of whatever it sends before we could judge it.
"""

from __future__ import annotations

import struct

_LENGTH = struct.Struct("!H")
MAX_FRAME = 65535  # what 16 bits of length can say


class FramingError(ValueError):
    """A stream that cannot be framed; `reason` is the counter's label (zero_length,
    oversized)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def frame(packet: bytes) -> bytes:
    """One packet with its RFC 4571 length prefix."""
    if not 0 < len(packet) <= MAX_FRAME:
        raise ValueError(f"frame length: {len(packet)} bytes is not 1..{MAX_FRAME}")
    return _LENGTH.pack(len(packet)) + packet


class Deframer:
    """Cuts a TCP byte stream into packets. `feed` returns the packets completed by the
    bytes given (a partial one waits for the next call); after a `ValueError` the stream
    is unusable (the caller closes the connection: there is no way to find the next
    frame boundary)."""

    __slots__ = ("_buffer", "max_packet")

    def __init__(self, max_packet: int = MAX_FRAME) -> None:
        if not 0 < max_packet <= MAX_FRAME:
            raise ValueError(f"max_packet: {max_packet} is not 1..{MAX_FRAME}")
        self.max_packet = max_packet
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held of a packet not yet complete."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        packets: list[bytes] = []
        start = 0
        end = len(buffer)
        while end - start >= 2:
            length = (buffer[start] << 8) | buffer[start + 1]
            if length == 0:
                raise FramingError("zero_length", "frame length: 0 (RFC 4571 frames carry a packet)")
            if length > self.max_packet:
                raise FramingError("oversized", f"frame length: {length} bytes, more than {self.max_packet}")
            if end - start - 2 < length:
                break
            packets.append(bytes(buffer[start + 2 : start + 2 + length]))
            start += 2 + length
        if start:
            del buffer[:start]
        return packets
