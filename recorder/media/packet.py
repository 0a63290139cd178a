"""One received RTP packet, parsed once (RFC 3550 §5.1) and handed from the jitter buffer
to a depacketizer."""

from __future__ import annotations

from sfu.wire import rtp


class MediaPacket:
    """The header fields the recorder needs, the payload (padding removed) and when the
    packet arrived on the recorder's clock (seconds)."""

    __slots__ = ("sequence_number", "timestamp", "marker", "payload_type", "ssrc", "payload", "arrival")

    def __init__(
        self,
        sequence_number: int,
        timestamp: int,
        marker: bool,
        payload: bytes,
        arrival: float = 0.0,
        payload_type: int = 0,
        ssrc: int = 0,
    ) -> None:
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self.marker = marker
        self.payload = payload
        self.arrival = arrival
        self.payload_type = payload_type
        self.ssrc = ssrc

    @classmethod
    def parse(cls, data, arrival: float) -> MediaPacket:
        """Parse a whole RTP packet; ValueError (naming the field) on bad input."""
        header = rtp.parse_header(data)
        return cls(
            sequence_number=header.sequence_number,
            timestamp=header.timestamp,
            marker=header.marker,
            payload=bytes(data[header.header_length : header.payload_end]),
            arrival=arrival,
            payload_type=header.payload_type,
            ssrc=header.ssrc,
        )

    def __repr__(self) -> str:
        return (
            f"MediaPacket(seq={self.sequence_number}, ts={self.timestamp}, marker={self.marker}, "
            f"pt={self.payload_type}, payload={len(self.payload)} bytes, arrival={self.arrival:.3f})"
        )
