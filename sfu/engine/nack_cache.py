"""A preallocated ring of recently received packets, for answering NACKs (RFC 4585 §6.2.1)."""

from __future__ import annotations

import struct

_SEQ = struct.Struct("!H")


class PacketCache:
    """Keeps the last `size` packets of one stream, indexed by RTP sequence number.

    A slot is overwritten when the sequence number comes round again, so a lookup checks
    that the stored packet really carries the requested number.
    """

    __slots__ = ("_slots", "_mask")

    def __init__(self, size: int = 1024) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError(f"cache size must be a power of two, got {size}")
        self._slots: list[bytes | None] = [None] * size
        self._mask = size - 1

    def put(self, seq: int, packet: bytes) -> None:
        self._slots[seq & self._mask] = packet

    def get(self, seq: int) -> bytes | None:
        packet = self._slots[seq & self._mask]
        if packet is None or _SEQ.unpack_from(packet, 2)[0] != seq:
            return None
        return packet

    def clear(self) -> None:
        for i in range(len(self._slots)):
            self._slots[i] = None
