"""Malformed datagrams for a live worker, each kind built so that the worker's drop reason
is certain (tests/sfu/test_worker_flood.py).

Two senders: a plain socket on 127.0.0.1 that no ICE check ever selected (the worker
knows no peer there), and a connected participant whose ICE path carries what we send
(aiortc's RTCIceTransport._send: raw bytes from the peer's own address, past its SRTP).
Each kind is a function of a random generator returning one datagram; the reason it must
be counted under is its key.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from sfu.wire import dtls, stun

MAX_DATAGRAM = 1500  # the worker's limit (sfu.transport.udp.MediaSocket)


def _binding_request(rng: random.Random, ufrag: str) -> bytes:
    return stun.build_binding_request(rng.randbytes(12), f"{ufrag}:flood", b"not-the-password", rng.getrandbits(32),
                                      controlling_tiebreaker=rng.getrandbits(64), use_candidate=True)  # fmt: skip


def malformed_stun(rng: random.Random) -> bytes:
    """A binding request truncated, with a wrong length field or cookie: stun.parse fails."""
    while True:
        data = bytearray(_binding_request(rng, "x" * rng.randint(1, 40)))
        how = rng.randrange(4)
        if how == 0:
            del data[rng.randint(1, len(data) - 1) :]
        elif how == 1:
            struct.pack_into("!H", data, 2, rng.getrandbits(16) | 1)  # odd: never a multiple of 4
        elif how == 2:
            data[4 + rng.randrange(4)] ^= 1 << rng.randrange(8)  # the magic cookie
        else:
            struct.pack_into("!H", data, 22, 0xFFF0)  # the first attribute's length overruns
        data[0] &= 0x03
        try:
            stun.parse(bytes(data))
        except ValueError:
            return bytes(data)


def stun_unauthorized(rng: random.Random) -> bytes:
    """Well-formed binding requests naming an ufrag no transport has."""
    return _binding_request(rng, "".join(rng.choice("abcdefgh") for _ in range(8)))


def garbage_from_nowhere(rng: random.Random) -> bytes:
    """DTLS-, RTP-, RTCP- or SRTP-looking bytes from an address no ICE check selected."""
    first = rng.choice((rng.randint(20, 63), rng.randint(128, 191)))
    return bytes([first]) + rng.randbytes(rng.randint(11, 300))


def unknown_packet(rng: random.Random) -> bytes:
    """First byte outside every RFC 7983 range the worker serves."""
    first = rng.choice((rng.randint(4, 19), rng.randint(64, 127), rng.randint(192, 255)))
    return bytes([first]) + rng.randbytes(rng.randint(0, 200))


def oversized(rng: random.Random) -> bytes:
    return bytes([rng.randint(128, 191)]) + rng.randbytes(rng.randint(MAX_DATAGRAM, 4000))


def srtp_bad_auth(rng: random.Random) -> bytes:
    """An SRTP or SRTCP packet whose authentication tag is random: unprotect fails."""
    if rng.random() < 0.8:  # RTP: header in the clear, encrypted payload, 10-byte tag
        header = struct.pack("!BBHII", 0x80, rng.choice((111, 96, 0x80 | 96)), rng.getrandbits(16),
                             rng.getrandbits(32), rng.getrandbits(32))  # fmt: skip
        return header + rng.randbytes(rng.randint(1, 1000)) + rng.randbytes(10)
    # RTCP: header, sender SSRC, encrypted part, E flag + index, tag
    body = rng.randbytes(rng.randint(4, 200))
    return struct.pack("!BBHI", 0x81, rng.randint(200, 206), len(body) // 4 + 1, rng.getrandbits(32)) + body + rng.randbytes(14)


def short_rtp(rng: random.Random) -> bytes:
    """RTP range but shorter than the fixed header, from a connected peer."""
    return bytes([rng.randint(128, 191)]) + rng.randbytes(rng.randint(0, 10))


def malformed_dtls(rng: random.Random) -> bytes:
    """DTLS range, but not whole records: an unknown content type, a truncated header, a
    length that runs past the datagram."""
    while True:
        how = rng.randrange(3)
        if how == 0:
            data = bytes([rng.randint(25, 63)]) + rng.randbytes(rng.randint(0, 100))  # no such content type
        elif how == 1:
            data = bytes([rng.randint(20, 24)]) + rng.randbytes(rng.randint(0, 11))
        else:
            body = rng.randbytes(rng.randint(0, 100))
            data = bytes([rng.randint(20, 24), 0xFE, 0xFD]) + bytes(8) + (len(body) + 1 + rng.randrange(500)).to_bytes(2, "big") + body
        if not dtls.is_valid(data) and 19 < data[0] < 64:
            return data


# reason -> (kind of sender, generator)
FROM_NOWHERE: dict[str, Callable[[random.Random], bytes]] = {
    "malformed_stun": malformed_stun,
    "stun_auth": stun_unauthorized,
    "unknown_peer": garbage_from_nowhere,
    "unknown_packet": unknown_packet,
    "oversized": oversized,
}
FROM_PEER: dict[str, Callable[[random.Random], bytes]] = {
    "srtp_error": srtp_bad_auth,
    "malformed_rtp": short_rtp,
    "malformed_dtls": malformed_dtls,  # last: what it does to the peer's DTLS state no longer matters
}
REASONS = tuple(FROM_NOWHERE) + tuple(FROM_PEER)


async def flood(
    port: int,
    count: int,
    peer_send: Callable[[bytes], Awaitable[None]],
    *,
    seed: int = 10,
    rate: int = 20_000,
    deadline_s: float = 120.0,
) -> Counter[str]:
    """Send `count` malformed datagrams to 127.0.0.1:`port`, spread over the reasons (the
    peer's kinds after the others), at most `rate` per second, within `deadline_s`.
    Returns how many were sent per expected drop reason."""
    rng = random.Random(seed)
    share = count // len(REASONS)
    plan = {reason: share for reason in REASONS}
    plan[REASONS[0]] += count - share * len(REASONS)
    sent: Counter[str] = Counter()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    target = ("127.0.0.1", port)
    batch = 100
    started = time.monotonic()
    try:
        for reason in REASONS:
            make = FROM_NOWHERE.get(reason) or FROM_PEER[reason]
            for index in range(plan[reason]):
                data = make(rng)
                if reason in FROM_NOWHERE:
                    try:
                        sock.sendto(data, target)
                    except BlockingIOError:
                        await asyncio.sleep(0.001)
                        sock.sendto(data, target)
                else:
                    await peer_send(data)
                sent[reason] += 1
                if index % batch == batch - 1:
                    elapsed = time.monotonic() - started
                    if elapsed > deadline_s:
                        raise TimeoutError(f"flood: {sum(sent.values())} of {count} sent in {deadline_s} s")
                    # Pace to `rate`, and let the loop run (the meeting's own media shares it).
                    await asyncio.sleep(max(0.0, sum(sent.values()) / rate - elapsed))
                    _drain(sock)
    finally:
        sock.close()
    return sent


def _drain(sock: socket.socket) -> None:
    """Read the worker's 401s to our unauthorized checks, so our buffer never fills."""
    for _ in range(1000):
        try:
            sock.recv(2048)
        except (BlockingIOError, InterruptedError):
            return

