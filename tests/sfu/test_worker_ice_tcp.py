"""ICE-TCP on a live worker (in process, real sockets on 127.0.0.1): a subscriber that
reaches it only over TCP gets its media; framing that cannot be right closes that
connection, counted; a connection no check binds is closed, and so is one past the
connection limit; a closed connection takes the transport's path with it.

The publisher is a plain RTP transport fed from a UDP socket (docs/plain-rtp.md); the
subscriber is tests.support.ice_tcp_client.IceTcpSubscriber (ICE check, DTLS and SRTP
over RFC 4571 frames, made by hand).
"""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from bench.plainrtp.packets import VP8_KEYFRAME_START
from config.schema import MediaConfig, SfuConfig
from sfu import api
from sfu.transport import tcp
from sfu.wire import rtp, sdp
from sfu.worker import Worker
from tests.support.ice_tcp_client import IceTcpSubscriber, tcp_candidates

pytestmark = [pytest.mark.process, pytest.mark.timeout(60)]

SSRC = 0x1CE7C9
PAYLOAD = VP8_KEYFRAME_START + bytes(600)


async def make_worker(**sfu: object) -> Worker:
    worker = Worker(0, SfuConfig(port_base=0, **sfu), MediaConfig(), ["127.0.0.1"])  # type: ignore[arg-type]
    await worker.bind(0)
    await worker.handle(api.RouterCreate(router_id="r"))
    return worker


class PlainPublisher:
    """A VP8-looking stream into a plain transport (no SRTP), from a UDP socket."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.target: tuple[str, int] = ("127.0.0.1", 0)
        self.producer_id = ""
        self.seq = 0

    async def start(self, worker: Worker) -> None:
        info = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="in", listen_ip="127.0.0.1"))
        self.target = (info.ip, info.port)
        made = await worker.handle(api.PlainProducerCreate(
            transport_id="in", kind="video", codec_name="VP8", clock_rate=90000, payload_type=96, ssrc=SSRC))  # fmt: skip
        self.producer_id = made.producer.producer_id

    def send(self, count: int) -> None:
        for _ in range(count):
            self.seq += 1
            self.sock.sendto(rtp.build_packet(96, self.seq, self.seq * 3000, SSRC, payload=PAYLOAD), self.target)


async def subscribe_over_tcp(worker: Worker, publisher: PlainPublisher, client: IceTcpSubscriber) -> tuple[str, int]:
    """The subscribe transport "sub" with one consumer; the client answers and connects.
    Returns the offer and the consumer's SSRC."""
    await worker.handle(api.TransportCreate(router_id="r", transport_id="sub", direction="subscribe"))
    await worker.handle(api.ConsumerCreate(transport_id="sub", consumer_id="c", producer_id=publisher.producer_id))
    offer = await worker.handle(api.SubscribeOfferCreate(transport_id="sub"))
    await worker.handle(api.SubscribeAnswerSet(transport_id="sub", sdp=client.subscribe_answer(offer.sdp)))
    await client.connect(offer.sdp)
    return offer.sdp, worker.registry.consumers["c"].ssrc


async def wait_for(condition, timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def test_a_subscriber_reaches_a_worker_offering_only_tcp_and_gets_its_media():
    worker = await make_worker(ice_udp=False)
    publisher, client = PlainPublisher(), IceTcpSubscriber()
    try:
        await publisher.start(worker)
        offer, ssrc = await subscribe_over_tcp(worker, publisher, client)
        candidates = next(m for m in sdp.parse(offer).media if m.ice_ufrag).candidates
        assert candidates and all(" tcp " in c and c.endswith("typ host tcptype passive") for c in candidates)
        assert tcp_candidates(sdp.parse(offer)) == [("127.0.0.1", worker.tcp_port)]

        async def forward() -> None:
            while client.rtp[ssrc] < 50:
                publisher.send(5)
                await asyncio.sleep(0.01)

        await asyncio.wait_for(forward(), 10)
        assert worker.counters.tcp_connections_accepted == 1 and len(worker.socket.tcp) == 1
        assert worker.transports["sub"].addr[2] == "tcp"  # type: ignore[index]
        assert sum(worker.counters.tcp_dropped_packets.values()) == 0

        await client.close()  # the connection goes: so does the transport's path
        await wait_for(lambda: not worker.socket.tcp)
        assert worker.transports["sub"].addr is None
        assert not worker.socket.peers
    finally:
        await client.close()
        publisher.sock.close()
        await worker.shutdown()


async def test_by_default_both_are_offered_and_udp_ranks_first():
    worker = await make_worker()
    try:
        assert worker.tcp_port == worker.port  # one port number per worker, both protocols
        await worker.handle(api.TransportCreate(router_id="r", transport_id="pub", direction="publish"))
        local = worker._local(worker.transports["pub"])  # type: ignore[arg-type]
        assert local.candidates == [("127.0.0.1", worker.port)]
        assert local.tcp_candidates == [("127.0.0.1", worker.tcp_port)]
    finally:
        await worker.shutdown()


async def test_without_ice_tcp_nothing_listens_and_nothing_is_offered():
    worker = await make_worker(ice_tcp=False)
    try:
        assert worker.tcp_port == 0 and worker.tcp_server is None
        await worker.handle(api.TransportCreate(router_id="r", transport_id="pub", direction="publish"))
        assert worker._local(worker.transports["pub"]).tcp_candidates == []  # type: ignore[arg-type]
    finally:
        await worker.shutdown()


BAD_FRAMING = {
    "zero_length": b"\x00\x00",
    "oversized": struct.pack("!H", 1501) + bytes(10),  # past sfu.max_datagram: refused on the header
    "garbage": struct.pack("!H", 5) + b"\x50hello",  # first byte 0x50: neither STUN, DTLS nor RTP
}


@pytest.mark.parametrize("reason", sorted(BAD_FRAMING))
async def test_framing_that_cannot_be_right_closes_that_connection_and_is_counted(reason):
    worker = await make_worker()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", worker.tcp_port)
        _other_reader, other_writer = await asyncio.open_connection("127.0.0.1", worker.tcp_port)
        writer.write(BAD_FRAMING[reason])
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the worker
        assert worker.counters.tcp_framing_errors == {r: int(r == reason) for r in worker.counters.tcp_framing_errors}
        await wait_for(lambda: len(worker.socket.tcp) == 1)  # the other connection stays
        other_writer.close()
        writer.close()
    finally:
        await worker.shutdown()


async def test_a_connection_no_check_binds_is_closed(monkeypatch):
    monkeypatch.setattr(tcp, "BIND_TIMEOUT_S", 0.2)
    worker = await make_worker()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", worker.tcp_port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert worker.counters.tcp_unbound_closed == 1 and not worker.socket.tcp
        writer.close()
    finally:
        await worker.shutdown()


async def test_past_the_connection_limit_a_new_connection_is_closed_on_accept():
    worker = await make_worker(ice_tcp_max_connections=2)
    writers = []
    try:
        for _ in range(2):
            _, writer = await asyncio.open_connection("127.0.0.1", worker.tcp_port)
            writers.append(writer)
        await wait_for(lambda: len(worker.socket.tcp) == 2)
        reader, writer = await asyncio.open_connection("127.0.0.1", worker.tcp_port)
        writers.append(writer)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert worker.counters.tcp_refused == 1 and len(worker.socket.tcp) == 2
    finally:
        for writer in writers:
            writer.close()
        await worker.shutdown()
