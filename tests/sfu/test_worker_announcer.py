"""The announcer in a real in-process worker (sfu/worker.py), 127.0.0.1 only.

- NOTICE_PLAY to one plain-transport consumer (SRTP): the shipped notice arrives over UDP
  paced at 20 ms, decodes with av to exactly what the asset decodes to; a consumer that
  was not targeted receives nothing.
- plays to everyone, back to back: each receiver's line continues across plays.
- the announcer is made as control makes it (a direct transport, a direct producer).
- an aiortc WebRTC subscriber gets the announcer's m-line and decodes the notice.
- NACK/PLI for the announcer, bad requests, consumer and router close: counted, refused
  or cleaned up, never a crash.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time

import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from common.channel import ChannelClient, ChannelError, ChannelServer, RequestFailed
from common.messages import Empty, MessageError, message_class
from common.notices import notice_frames
from sfu import api
from sfu.transport.plain import srtp_session
from sfu.wire import rtcp, rtp
from sfu.worker import Worker
from tests.support.worker_fixtures import loopback_ice, worker  # noqa: F401  (fixtures)

STARTED = notice_frames("recording-started")
STOPPED = notice_frames("recording-stopped")


def b64(frames: list[bytes]) -> list[str]:
    return [base64.b64encode(f).decode("ascii") for f in frames]


class Receiver:
    """A UDP socket on 127.0.0.1 fed by a plain transport; records RTP and arrival times."""

    def __init__(self, rx_key_base64: str | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.rx = srtp_session(base64.b64decode(rx_key_base64), outbound=False) if rx_key_base64 else None
        self.packets: list[bytes] = []
        self.arrivals: list[float] = []

    async def receive(self, count: int, timeout: float = 10.0) -> list[bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.packets) < count:
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 2048), deadline - loop.time())
            if 191 < data[1] < 224:
                continue  # RTCP: none is expected, but it would not be media
            self.arrivals.append(time.monotonic())
            self.packets.append(self.rx.unprotect(data) if self.rx else data)
        return self.packets

    def pending(self) -> int:
        """Datagrams waiting in the socket now (read without blocking)."""
        count = 0
        while True:
            try:
                self.sock.recv(2048)
            except BlockingIOError:
                return count
            count += 1

    def send(self, packet: bytes, port: int) -> None:
        self.sock.sendto(packet, ("127.0.0.1", port))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
async def announcer(worker) -> str:
    """Router "r"'s announcer, made as control makes it: its producer id."""
    await worker.handle(api.DirectTransportCreate(router_id="r", transport_id="direct"))
    created = await worker.handle(api.DirectProducerCreate(transport_id="direct", kind="audio", source="announcement"))
    assert isinstance(created, api.DirectProducerCreated)
    return created.producer.producer_id


async def plain_consumer(
    worker: Worker, announcer: str, name: str, srtp: bool = False
) -> tuple[Receiver, api.PlainConsumerInfo, int]:
    info = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id=name, srtp=srtp))
    receiver = Receiver(info.srtp_key_base64)
    await worker.handle(api.PlainTransportConnect(transport_id=name, remote_ip="127.0.0.1", remote_port=receiver.port))
    consumer = await worker.handle(
        api.ConsumerCreate(transport_id=name, consumer_id=f"{name}-n", producer_id=announcer)
    )
    assert isinstance(consumer, api.PlainConsumerInfo)
    return receiver, consumer, info.port


def decode(payloads: list[bytes]) -> np.ndarray:
    """Opus packets -> the decoder's samples, concatenated (a fresh decoder each call)."""
    decoder = av.CodecContext.create("opus", "r")
    decoder.sample_rate = 48000
    decoder.layout = "stereo"
    chunks = []
    for payload in payloads:
        for frame in decoder.decode(av.Packet(payload)):
            chunks.append(frame.to_ndarray().reshape(-1))
    return np.concatenate(chunks)


def payloads(packets: list[bytes]) -> list[bytes]:
    return [p[rtp.payload_offset(p) :] for p in packets]


def contiguous(values: list[int], step: int, modulo: int) -> bool:
    return all((b - a) % modulo == step for a, b in zip(values, values[1:]))


async def stats(worker: Worker) -> api.WorkerStats:
    return await worker.handle(api.WorkerGetStats())


# --------------------------------------------------------------------- plain transports


async def test_the_notice_reaches_the_targeted_consumer_only_and_decodes_to_the_asset(worker, announcer):
    target, target_info, _ = await plain_consumer(worker, announcer, "rec", srtp=True)
    bystander, _, _ = await plain_consumer(worker, announcer, "other")
    try:
        assert (target_info.codec_name, target_info.clock_rate, target_info.channels) == ("opus", 48000, 2)
        assert target_info.payload_type == 111 and target_info.kind == "audio"
        played = await worker.handle(api.NoticePlay(producer_id=announcer, frames=b64(STARTED), consumer_ids=["rec-n"]))
        assert isinstance(played, Empty)
        packets = await target.receive(len(STARTED))
        await asyncio.sleep(0.1)
        assert bystander.pending() == 0 and target.pending() == 0  # nothing more, nothing to the other

        headers = [rtp.parse_header(p) for p in packets]
        assert {h.ssrc for h in headers} == {target_info.ssrc}
        assert {h.payload_type for h in headers} == {target_info.payload_type}
        assert [h.marker for h in headers] == [True] + [False] * (len(STARTED) - 1)
        assert contiguous([h.sequence_number for h in headers], 1, 1 << 16)
        assert contiguous([h.timestamp for h in headers], 960, 1 << 32)
        assert payloads(packets) == STARTED  # in order, byte for byte, through SRTP
        received = decode(payloads(packets))
        reference = decode(STARTED)
        assert received.shape == reference.shape and np.array_equal(received, reference)
        assert np.abs(reference).max() > 0.05  # it is speech, not silence

        # Paced at 20 ms: the clip takes its own length to arrive (generous bounds: the
        # machine is shared; exact pacing is tested without a network in tests/sfu/engine/test_announcer.py).
        span = target.arrivals[-1] - target.arrivals[0]
        nominal = (len(STARTED) - 1) * 0.020
        assert nominal - 0.15 < span < nominal + 1.5, span

        snapshot = await stats(worker)
        assert snapshot.counters["notice_plays"] == 1
        assert snapshot.counters["notice_packets_sent"] == len(STARTED)
        assert snapshot.gauges["producers"] == 0  # the announcer is not an incoming stream
        assert not worker.clockwork.notice_timer_armed and worker.clockwork.notices.next_due is None  # nothing left to pace
    finally:
        target.close()
        bystander.close()


async def test_plays_to_everyone_continue_each_line_across_plays(worker, announcer):
    receivers = [await plain_consumer(worker, announcer, name) for name in ("a", "b")]
    try:
        await worker.handle(api.NoticePlay(producer_id=announcer, frames=b64(STOPPED[:10])))  # no ids: everyone
        for receiver, _, _ in receivers:
            await receiver.receive(10)
        await asyncio.sleep(0.3)
        await worker.handle(api.NoticePlay(producer_id=announcer, frames=b64(STARTED[:10]), consumer_ids=[]))
        for receiver, info, _ in receivers:
            packets = await receiver.receive(20)
            headers = [rtp.parse_header(p) for p in packets]
            assert payloads(packets) == STOPPED[:10] + STARTED[:10]
            assert {h.ssrc for h in headers} == {info.ssrc}
            assert contiguous([h.sequence_number for h in headers], 1, 1 << 16)
            assert [i for i, h in enumerate(headers) if h.marker] == [0, 10]
            # The silence between the plays (>= 0.3 s) shows in the timestamps.
            gap = (headers[10].timestamp - headers[9].timestamp) % (1 << 32)
            assert gap >= 0.3 * 48000 - 960 and gap % 960 == 0
        assert (await stats(worker)).counters["notice_packets_sent"] == 40
    finally:
        for receiver, _, _ in receivers:
            receiver.close()


async def test_a_new_play_replaces_the_running_one(worker, announcer):
    receiver, _, _ = await plain_consumer(worker, announcer, "a")
    try:
        await worker.handle(api.NoticePlay(producer_id=announcer, frames=b64(STARTED)))
        await receiver.receive(5)
        await worker.handle(api.NoticePlay(producer_id=announcer, frames=b64(STOPPED)))
        await receiver.receive(len(STOPPED) + 5, timeout=15.0)
        await asyncio.sleep(0.2)
        assert receiver.pending() == 0
        got = payloads(receiver.packets)
        cut = next(i for i, p in enumerate(rtp.parse_header(p) for p in receiver.packets) if i and p.marker)
        assert got[:cut] == STARTED[:cut] and got[cut:] == STOPPED  # the first stops where it was
        headers = [rtp.parse_header(p) for p in receiver.packets]
        assert contiguous([h.sequence_number for h in headers], 1, 1 << 16)
    finally:
        receiver.close()


async def test_nack_and_pli_for_the_announcer_are_counted_and_media_goes_on(worker, announcer):
    receiver, info, port = await plain_consumer(worker, announcer, "a")
    try:
        await worker.handle(api.NoticePlay(producer_id=announcer, frames=b64(STARTED[:30])))
        packets = await receiver.receive(5)
        lost = rtp.parse_header(packets[2]).sequence_number
        receiver.send(rtcp.build_nack(0xABCD, info.ssrc, [lost]) + rtcp.build_pli(0xABCD, info.ssrc), port)
        receiver.send(rtcp.build_rr(0xABCD, []), port)
        await receiver.receive(30)
        await asyncio.sleep(0.1)
        assert receiver.pending() == 0  # no retransmission, nothing extra
        assert payloads(receiver.packets) == STARTED[:30]
        snapshot = await stats(worker)
        assert snapshot.counters["nack_requested"] == snapshot.counters["nack_missed"] == 1
        assert snapshot.counters["nack_answered"] == 0
        assert snapshot.counters["pli_received"] == 1 and snapshot.counters["pli_sent"] == 0
        assert snapshot.dropped["malformed_rtcp"] == 0
    finally:
        receiver.close()


# --------------------------------------------------------------------- WebRTC subscriber


async def test_a_webrtc_subscriber_is_offered_the_announcer_and_hears_the_notice(worker, announcer):
    await worker.handle(api.TransportCreate(router_id="r", transport_id="sub", direction="subscribe"))
    await worker.handle(api.ConsumerCreate(transport_id="sub", consumer_id="sub-n", producer_id=announcer))
    offer = await worker.handle(api.SubscribeOfferCreate(transport_id="sub"))
    (described,) = offer.consumers
    assert (described.producer_id, described.kind, described.source) == (announcer, "audio", "announcement")
    assert "m=audio" in offer.sdp and f"a=msid:{announcer} {announcer}" in offer.sdp

    pc = RTCPeerConnection()
    frames: list[av.AudioFrame] = []
    tasks = []

    async def collect(track) -> None:
        try:
            while True:
                frames.append(await track.recv())
        except MediaStreamError:
            pass

    pc.on("track", lambda track: tasks.append(asyncio.ensure_future(collect(track))))
    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await worker.handle(api.SubscribeAnswerSet(transport_id="sub", sdp=pc.localDescription.sdp))
        # At once, like control for a joiner: DTLS is not up yet, so the play waits for it
        # and the subscriber still hears the notice from its first frame.
        assert not worker.transports["sub"].connected
        await worker.handle(api.NoticePlay(producer_id=announcer, frames=b64(STARTED), consumer_ids=["sub-n"]))
        for _ in range(100):
            sent = (await stats(worker)).counters["notice_packets_sent"]
            if sent == len(STARTED) and len(frames) >= 0.8 * len(STARTED):
                break
            await asyncio.sleep(0.1)
        assert worker.transports["sub"].connected
        assert (await stats(worker)).counters["notice_packets_sent"] == len(STARTED)
        # aiortc's jitter buffer may hold back the last few; what it decoded is the speech.
        assert len(frames) >= 0.8 * len(STARTED)
        loudest = max(np.abs(f.to_ndarray()).max() for f in frames)
        assert loudest > 1000  # s16 samples: the notice, not silence
    finally:
        await pc.close()
        for task in tasks:
            task.cancel()


# --------------------------------------------------------------------- requests, lifecycle


async def test_bad_notice_requests_are_refused_with_their_code(worker, announcer):
    _, _, _ = await plain_consumer(worker, announcer, "a")
    produced = await worker.handle(
        api.PlainProducerCreate(transport_id="a", kind="audio", codec_name="opus", clock_rate=48000, payload_type=111, ssrc=5)
    )
    mic = produced.producer.producer_id
    await worker.handle(api.ConsumerCreate(transport_id="a", consumer_id="mic", producer_id=mic))
    good = b64(STARTED[:3])
    cases = [
        (api.NoticePlay(producer_id="nope", frames=good), "not_found"),
        (api.NoticePlay(producer_id=mic, frames=good), "invalid"),  # not a direct producer
        (api.NoticePlay(producer_id=announcer, frames=good, consumer_ids=["a-n", "ghost"]), "not_found"),
        (api.NoticePlay(producer_id=announcer, frames=good, consumer_ids=["mic"]), "invalid"),  # not the announcer's
        (api.NoticePlay(producer_id=announcer, frames=[]), "invalid"),
        (api.NoticePlay(producer_id=announcer, frames=["***"]), "invalid"),
        (api.NoticePlay(producer_id=announcer, frames=[good[0], ""]), "invalid"),  # an empty packet
        (api.NoticePlay(producer_id=announcer, frames=b64([b"\x70" + b"x" * 30])), "invalid"),  # 10 ms, not 20
        (api.DirectProducerCreate(transport_id="direct", kind="video"), "invalid"),  # it plays Opus clips
        (api.DirectProducerCreate(transport_id="a", kind="audio"), "not_found"),  # "a" is a plain transport
        (api.DirectTransportCreate(router_id="r", transport_id="a"), "exists"),
        (api.DirectTransportCreate(router_id="nope", transport_id="d2"), "not_found"),
        (api.ConsumerCreate(transport_id="direct", consumer_id="x", producer_id=announcer), "invalid"),  # no consumers
    ]
    for request, code in cases:
        with pytest.raises(RequestFailed) as failure:
            await worker.handle(request)
        assert failure.value.code == code, (request, failure.value.message)
    snapshot = await stats(worker)
    assert snapshot.counters["notice_plays"] == 0 and announcer in worker.registry.producers


async def test_notice_play_crosses_the_channel(worker, announcer):
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    server_reader, server_writer = await asyncio.open_unix_connection(sock=left)
    client_reader, client_writer = await asyncio.open_unix_connection(sock=right)
    server = ChannelServer(server_reader, server_writer, worker.handle)
    serving = asyncio.ensure_future(server.serve())
    client = ChannelClient(client_reader, client_writer, lambda entity, message: None)
    receiver, _, _ = await plain_consumer(worker, announcer, "a")
    try:
        play = api.NoticePlay(producer_id=announcer, frames=b64(STOPPED[:4]), consumer_ids=["a-n"])
        reply = await client.request(play)
        assert isinstance(reply, Empty)
        assert payloads(await receiver.receive(4)) == STOPPED[:4]
        with pytest.raises(ChannelError) as failure:
            await client.request(api.NoticePlay(producer_id=announcer, frames=["not base64!"]))
        assert failure.value.code == "invalid"
    finally:
        receiver.close()
        client.close()
        server.close()
        serving.cancel()


def test_direct_transport_messages_round_trip_as_dicts():
    message = api.NoticePlay(producer_id="p", frames=["AAE="], consumer_ids=["c"])
    assert message_class("NOTICE_PLAY").from_dict(message.to_dict()) == message
    assert api.NoticePlay.from_dict({"producer_id": "p", "frames": []}).consumer_ids == []
    assert api.RESPONSES[api.NoticePlay] is Empty
    with pytest.raises(MessageError):
        api.NoticePlay.from_dict({"producer_id": "p", "frames": "AAE="})
    with pytest.raises(MessageError):
        api.NoticePlay.from_dict({"router_id": "r", "frames": []})  # the old form: by router
    create = api.DirectProducerCreate(transport_id="d", kind="audio", source="announcement")
    assert message_class("DIRECT_PRODUCER_CREATE").from_dict(create.to_dict()) == create
    assert api.RESPONSES[api.DirectProducerCreate] is api.DirectProducerCreated
    assert api.RESPONSES[api.DirectTransportCreate] is Empty
    created = api.DirectProducerCreated(producer=api.ProducerInfo("p", "0", "audio", "announcement", "opus"))
    assert message_class("DIRECT_PRODUCER_CREATED").from_dict(created.to_dict()) == created


async def test_closing_a_consumer_mid_play_stops_it_and_the_rest_play_on(worker, announcer):
    closing, _, _ = await plain_consumer(worker, announcer, "a")
    staying, _, _ = await plain_consumer(worker, announcer, "b")
    try:
        await worker.handle(api.NoticePlay(producer_id=announcer, frames=b64(STARTED[:40])))
        await closing.receive(5)
        await worker.handle(api.ConsumerClose(consumer_id="a-n"))
        await staying.receive(40)
        await asyncio.sleep(0.1)
        assert 5 <= len(closing.packets) + closing.pending() < 40
        assert "a-n" not in worker.registry.consumers and len(worker.registry.producers[announcer].consumers) == 1
        # A consumer made again later hears the next notice from its first frame.
        await worker.handle(api.ConsumerCreate(transport_id="a", consumer_id="a-n2", producer_id=announcer))
        closing.packets.clear()
        await worker.handle(api.NoticePlay(producer_id=announcer, frames=b64(STOPPED[:5]), consumer_ids=["a-n2"]))
        assert payloads(await closing.receive(5)) == STOPPED[:5]
    finally:
        closing.close()
        staying.close()


async def test_router_close_mid_play_takes_the_announcer_and_its_consumers(worker, announcer):
    receiver, _, _ = await plain_consumer(worker, announcer, "a")
    await worker.handle(api.TransportCreate(router_id="r", transport_id="sub", direction="subscribe"))
    await worker.handle(api.ConsumerCreate(transport_id="sub", consumer_id="sub-n", producer_id=announcer))
    try:
        await worker.handle(api.NoticePlay(producer_id=announcer, frames=b64(STARTED)))
        await receiver.receive(3)
        producer = worker.registry.producers[announcer]
        await worker.handle(api.RouterClose(router_id="r"))
        registry = worker.registry
        assert not (registry.routers or registry.transports or registry.producers or registry.consumers)
        assert producer.closed and producer.consumers == [] and producer.next_due is None
        await asyncio.sleep(0.1)
        assert not worker.clockwork.notice_timer_armed and worker.clockwork.notices.next_due is None
        with pytest.raises(RequestFailed) as failure:
            await worker.handle(api.NoticePlay(producer_id=announcer, frames=b64(STARTED)))
        assert failure.value.code == "not_found"
        gauges = (await stats(worker)).gauges
        assert gauges["producers"] == 0 and gauges["consumers"] == 0
        # The meeting may start again: a fresh router, direct transport and announcer.
        await worker.handle(api.RouterCreate(router_id="r"))
        await worker.handle(api.DirectTransportCreate(router_id="r", transport_id="direct"))
        again = await worker.handle(api.DirectProducerCreate(transport_id="direct", kind="audio"))
        assert again.producer.producer_id != announcer and again.producer.source == "announcement"
    finally:
        receiver.close()
