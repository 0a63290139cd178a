"""An ICE-TCP subscriber that stops reading, on a live worker process: what it should be
sent is dropped and counted once its connection's send buffer is full, and another
meeting on the same worker loses nothing and is forwarded no slower.

A real `python -m sfu.worker` (bench.plainrtp.ours.WorkerProcess, spawned as control
does) with two meetings, fed plain RTP from UDP sockets (docs/plain-rtp.md):

- meeting A: a 1200-byte video stream at 500 packets/s to one WebRTC subscriber over
  ICE-TCP (tests.support.ice_tcp_client: ICE, DTLS, SRTP over RFC 4571 frames, made by
  hand), whose receive buffer is small; after a first phase it stops reading;
- meeting B: a 500 packets/s stream to 4 plain subscribers that read everything.

Judged by counts, not by the clock: the worker's drop counters for slow readers grow
while A's subscriber is stalled, every packet of B arrives at each of its subscribers,
and the p99 bucket of the worker's own forwarding-time histogram while A is stalled is
not above the one before (within one bucket: the machine is shared).
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from bench.plainrtp.ours import WorkerProcess
from bench.plainrtp.packets import VP8_KEYFRAME_START
from sfu import api
from sfu.wire import rtp
from tests.support.forward_time import BOUNDS_US, histogram, p99_bucket
from tests.support.ice_tcp_client import IceTcpSubscriber

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

RATE = 500  # packets per second of each stream
B_FANOUT = 4
READING_S, STALLED_S = 3.0, 8.0
PAYLOAD = VP8_KEYFRAME_START + bytes(1200 - 12 - len(VP8_KEYFRAME_START))


class Stream:
    """A plain transport in (no SRTP) with one VP8-looking producer, from a UDP socket."""

    def __init__(self, router: str, ssrc: int) -> None:
        self.router = router
        self.ssrc = ssrc
        self.seq = 0
        self.sent = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.target = ("127.0.0.1", 0)
        self.producer_id = ""

    async def create(self, request) -> None:
        await request(api.RouterCreate(router_id=self.router))
        transport_id = f"{self.router}-in"
        info = await request(
            api.PlainTransportCreate(router_id=self.router, transport_id=transport_id, listen_ip="127.0.0.1")
        )
        self.target = (info.ip, info.port)
        made = await request(api.PlainProducerCreate(
            transport_id=transport_id, kind="video", codec_name="VP8", clock_rate=90000, payload_type=96, ssrc=self.ssrc))  # fmt: skip
        self.producer_id = made.producer.producer_id

    def send(self) -> None:
        self.seq = (self.seq + 1) & 0xFFFF
        packet = rtp.build_packet(96, self.seq, int(time.monotonic() * 90000) & 0xFFFFFFFF, self.ssrc, payload=PAYLOAD)
        self.sock.sendto(packet, self.target)
        self.sent += 1


class PlainSubscriber:
    """A plain consumer's receiving socket; counts every RTP packet."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.received = 0

    async def create(self, request, stream: Stream, name: str) -> None:
        transport_id = f"{stream.router}-{name}"
        await request(
            api.PlainTransportCreate(router_id=stream.router, transport_id=transport_id, listen_ip="127.0.0.1")
        )
        await request(api.PlainTransportConnect(
            transport_id=transport_id, remote_ip="127.0.0.1", remote_port=self.sock.getsockname()[1]))  # fmt: skip
        await request(
            api.ConsumerCreate(
                transport_id=transport_id, consumer_id=f"{transport_id}-c", producer_id=stream.producer_id
            )
        )

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                return
            if len(data) >= 12 and not 191 < data[1] < 224:
                self.received += 1


def test_a_tcp_subscriber_that_stops_reading_is_dropped_and_slows_no_other_meeting():
    worker = WorkerProcess(cpu=None)
    a, b = Stream("meeting-a", 0xA1A1A1A1), Stream("meeting-b", 0xB2B2B2B2)
    others = [PlainSubscriber() for _ in range(B_FANOUT)]
    slow = IceTcpSubscriber()
    try:
        worker.start()
        worker.loop.run_until_complete(asyncio.wait_for(scenario(worker, a, b, others, slow), 90))
    finally:
        if not worker.loop.is_closed():
            worker.loop.run_until_complete(slow.close())
        for sock in (a.sock, b.sock, *(s.sock for s in others)):
            sock.close()
        worker.stop()


async def scenario(
    worker: WorkerProcess, a: Stream, b: Stream, others: list[PlainSubscriber], slow: IceTcpSubscriber
) -> None:
    client = worker.client
    assert client is not None

    async def request(message):
        return await client.request(message, timeout=30.0)

    await a.create(request)
    await b.create(request)
    for index, subscriber in enumerate(others):
        await subscriber.create(request, b, f"s{index}")
    await request(api.TransportCreate(router_id="meeting-a", transport_id="slow", direction="subscribe"))
    await request(api.ConsumerCreate(transport_id="slow", consumer_id="slow-c", producer_id=a.producer_id))
    offer = await request(api.SubscribeOfferCreate(transport_id="slow"))
    await request(api.SubscribeAnswerSet(transport_id="slow", sdp=slow.subscribe_answer(offer.sdp)))
    await slow.connect(offer.sdp, receive_buffer=16384)

    async def run(seconds: float) -> None:
        """Both streams at RATE on a 2 ms tick; B's subscribers drained as we go."""
        start = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - start) < seconds:
            while sent < elapsed * RATE:
                a.send()
                b.send()
                sent += 1
            for subscriber in others:
                subscriber.drain()
            await asyncio.sleep(0.002)

    await run(READING_S)
    received_while_reading = sum(slow.rtp.values())
    assert received_while_reading > 0.5 * a.sent, "media over ICE-TCP did not flow before the stall"
    reading = (await request(api.WorkerGetStats())).counters

    slow.stop_reading()
    await run(STALLED_S)
    stalled = (await request(api.WorkerGetStats())).counters
    await asyncio.sleep(0.3)  # the last packets of B on their way
    for subscriber in others:
        subscriber.drain()

    dropped_packets = stalled["tcp_dropped_packets_send_buffer_full"] - reading["tcp_dropped_packets_send_buffer_full"]
    dropped_bytes = stalled["tcp_dropped_bytes_send_buffer_full"] - reading["tcp_dropped_bytes_send_buffer_full"]
    print(f"slow reader: {received_while_reading} packets read, then {dropped_packets} dropped ({dropped_bytes} bytes)")
    assert dropped_packets > 0.25 * RATE * STALLED_S, "the stalled subscriber's packets were not dropped"
    assert dropped_bytes >= dropped_packets * len(PAYLOAD)
    assert stalled["tcp_framing_errors_garbage"] == 0
    for subscriber in others:
        assert subscriber.received == b.sent, "meeting B lost packets while A's subscriber was stalled"

    zero = [0] * len(BOUNDS_US)
    before = p99_bucket(zero, histogram(reading))
    during = p99_bucket(histogram(reading), histogram(stalled))
    print(f"forwarding p99 bucket: <= {BOUNDS_US[before]} µs reading, <= {BOUNDS_US[during]} µs stalled")
    assert during <= before + 1, "forwarding got slower while an ICE-TCP subscriber was stalled"
