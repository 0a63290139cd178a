"""sfu.transport.tcp without a network: an ICE-TCP connection driven by bytes through a
stand-in for the event loop's TCP transport.

- frames, however TCP splits them, reach the one ICE-lite agent; its answer goes back
  framed on that connection, naming the client's TCP address;
- a nominated check over TCP selects the connection: the transport's media goes through
  it, framed; a UDP address with the same ip and port is another address;
- while the loop's write buffer is past its bound (pause_writing) packets are dropped and
  counted, bytes too; after resume_writing they flow again;
- the connection closing takes the path with it; bad framing closes it, counted.
"""

from __future__ import annotations

import os
import struct

from aiortc.rtcdtlstransport import RTCCertificate

from sfu.engine.router import Registry, Router
from sfu.engine.stats import Counters
from sfu.transport.tcp import IceTcpConnection
from sfu.transport.udp import MediaSocket
from sfu.transport.webrtc import WebRtcTransport
from sfu.wire import stun
from sfu.wire.framing import Deframer, frame

PEER = ("192.0.2.10", 50000)
KEY = (*PEER, "tcp")
CLIENT_UFRAG, CLIENT_PWD = "clientuf", "client-password-0123456789"
LIMIT = 65536


class FakeTcp:
    """What IceTcpConnection uses of asyncio's TCP transport; writes kept, deframed."""

    def __init__(self, protocol: IceTcpConnection) -> None:
        self.protocol = protocol
        self.written = Deframer()
        self.packets: list[bytes] = []
        self.limits: tuple[int, int] | None = None
        self.aborted = False

    def get_extra_info(self, name, default=None):
        return PEER if name == "peername" else default

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        self.limits = (high, low)

    def write(self, data: bytes) -> None:
        self.packets += self.written.feed(data)

    def abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            self.protocol.connection_lost(None)  # asyncio calls it soon after; at once here


class Clear:
    def protect(self, packet: bytes) -> bytes:
        return packet


def setup() -> tuple[MediaSocket, WebRtcTransport, IceTcpConnection, FakeTcp]:
    counters = Counters()
    media = MediaSocket(counters)
    router = Router("r", Registry())
    made = WebRtcTransport("t", router, "subscribe", media, RTCCertificate.generateCertificate(), counters,
                           lambda t, s: None)  # fmt: skip
    router.add_transport(made)
    made.remote_ice_ufrag, made.remote_ice_pwd_bytes = CLIENT_UFRAG, CLIENT_PWD.encode()
    connection = IceTcpConnection(media, counters, LIMIT, 1500, 8)
    tcp = FakeTcp(connection)
    connection.connection_made(tcp)  # type: ignore[arg-type]
    return media, made, connection, tcp


def nominated_check(made: WebRtcTransport) -> bytes:
    return stun.build_binding_request(
        os.urandom(12), f"{made.ice_ufrag}:{CLIENT_UFRAG}", made.ice_pwd_bytes, priority=1, use_candidate=True,
        controlling_tiebreaker=7,
    )  # fmt: skip


async def test_a_check_over_tcp_is_answered_on_its_connection_and_selects_it():
    media, made, connection, tcp = setup()
    assert tcp.limits == (LIMIT, LIMIT // 4) and media.tcp == {KEY: connection}
    data = frame(nominated_check(made))
    for byte in data:  # TCP may cut anywhere
        connection.data_received(bytes([byte]))
    [answer] = tcp.packets
    message = stun.parse(answer)
    assert message.message_class == stun.CLASS_SUCCESS
    assert stun.verify_message_integrity(answer, made.ice_pwd_bytes)
    assert made.addr == KEY and media.peers == {KEY: made} and made.sender is connection
    assert media.peers.get(PEER) is None  # the same ip and port over UDP is another address

    made.tx = Clear()  # type: ignore[assignment]  (as if DTLS were up)
    made.send_rtp(b"\x80" * 100)
    assert tcp.packets[-1] == b"\x80" * 100
    assert sum(made.counters.tcp_dropped_packets.values()) == 0


async def test_a_slow_reader_s_packets_are_dropped_and_counted_until_it_drains():
    _media, made, connection, tcp = setup()
    connection.data_received(frame(nominated_check(made)))
    made.tx = Clear()  # type: ignore[assignment]
    sent_before = len(tcp.packets)
    connection.pause_writing()  # the loop: write buffer past LIMIT
    for _ in range(10):
        made.send_rtp(b"\x80" * 100)
    assert len(tcp.packets) == sent_before
    counters = made.counters
    assert counters.tcp_dropped_packets["send_buffer_full"] == 10
    assert counters.tcp_dropped_bytes["send_buffer_full"] == 1000
    connection.resume_writing()
    made.send_rtp(b"\x80" * 100)
    assert len(tcp.packets) == sent_before + 1


async def test_the_connection_closing_takes_the_path_with_it():
    media, made, connection, _tcp = setup()
    connection.data_received(frame(nominated_check(made)))
    assert made.addr == KEY
    connection.connection_lost(None)
    assert made.addr is None and made.sender is media and not media.tcp and not media.peers
    assert made.path.selected is None


async def test_framing_that_cannot_be_right_closes_the_connection_counted():
    for reason, data in (
        ("zero_length", b"\x00\x00"),
        ("oversized", struct.pack("!H", 1501)),
        ("garbage", frame(b"\x50" + bytes(30))),
    ):
        media, made, connection, tcp = setup()
        connection.data_received(data)
        assert tcp.aborted and not media.tcp, reason
        assert made.counters.tcp_framing_errors == {r: int(r == reason) for r in made.counters.tcp_framing_errors}


async def test_dtls_or_media_from_an_unbound_connection_is_dropped_as_from_an_unknown_peer():
    _media, made, connection, tcp = setup()
    connection.data_received(frame(b"\x16\xfe\xfd" + bytes(20)) + frame(b"\x80" + bytes(30)))
    assert made.counters.dropped["unknown_peer"] == 2 and not tcp.aborted and made.addr is None
