"""The bench's RTP stream: 1200-byte VP8-looking packets that carry their send time.

Every packet starts like the first packet of a VP8 key frame (RFC 7741 §4.2 descriptor
S=1 PID=0, payload header P bit clear), so an SFU's "start each subscriber at a keyframe"
rule never holds the stream back. The send time (CLOCK_MONOTONIC, ns) sits in the
payload at `SEND_TIME_OFFSET`; under SRTP the receiver decrypts a sample to read it.
"""

from __future__ import annotations

import base64
import os
import struct

import pylibsrtp

from sfu.transport.srtp import FastSrtp

PACKET_SIZE = 1200  # bytes of RTP (before any SRTP auth tag), as in the targets
HEADER_SIZE = 12
SEND_TIME_OFFSET = 20  # after the 12-byte header and 8 bytes of VP8 descriptor/header
VP8_KEYFRAME_START = bytes([0x10, 0x00, 0x9D, 0x01, 0x2A, 0x00, 0x00, 0x00])
VIDEO_PAYLOAD_TYPE = 96
VIDEO_CLOCK_RATE = 90000
TS_STEP = 90  # 1 ms of 90 kHz per packet: the value does not matter to a forwarder

SRTP_KEY_BYTES = 30  # AES_CM_128_HMAC_SHA1_80 master key || salt (RFC 4568 §6.2.1)
SRTP_TAG_BYTES = 10

_HEADER = struct.Struct("!BBHII")
_SEND_TIME = struct.Struct("!Q")
_SEQ = struct.Struct("!H")


def new_srtp_key() -> bytes:
    return os.urandom(SRTP_KEY_BYTES)


def key_base64(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def srtp_session(key: bytes, outbound: bool, fast: bool = False):
    """A pylibsrtp Session; fast: wrapped in FastSrtp (the same libsrtp calls, less overhead)."""
    policy = pylibsrtp.Policy(
        key=key,
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND,
        srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    )
    policy.window_size = 1024  # a receiver that decrypts only a sample skips sequence numbers
    session = pylibsrtp.Session(policy)
    return FastSrtp(session) if fast else session


class PacketSource:
    """Builds the stream's packets in one reused buffer: one copy per packet, no parsing."""

    __slots__ = ("ssrc", "payload_type", "seq", "ts", "_template", "_tx", "packets", "size")

    def __init__(self, ssrc: int, payload_type: int = VIDEO_PAYLOAD_TYPE, srtp_key: bytes | None = None,
                 size: int = PACKET_SIZE) -> None:
        if size < SEND_TIME_OFFSET + 8:
            raise ValueError(f"packet size {size} is too small for the send time")
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.seq = int.from_bytes(os.urandom(2), "big")
        self.ts = int.from_bytes(os.urandom(4), "big")
        self._template = bytearray(size)
        self._template[HEADER_SIZE : HEADER_SIZE + len(VP8_KEYFRAME_START)] = VP8_KEYFRAME_START
        self._tx = srtp_session(srtp_key, outbound=True, fast=True) if srtp_key else None
        self.packets = 0
        self.size = size

    def next_packet(self, send_time_ns: int) -> bytes:
        template = self._template
        _HEADER.pack_into(template, 0, 0x80, self.payload_type, self.seq, self.ts, self.ssrc)
        _SEND_TIME.pack_into(template, SEND_TIME_OFFSET, send_time_ns)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + TS_STEP) & 0xFFFFFFFF
        self.packets += 1
        data = bytes(template)
        return self._tx.protect(data) if self._tx is not None else data


def sequence_number(packet) -> int:
    return _SEQ.unpack_from(packet, 2)[0]


def send_time_ns(plain_packet) -> int:
    return _SEND_TIME.unpack_from(plain_packet, SEND_TIME_OFFSET)[0]
