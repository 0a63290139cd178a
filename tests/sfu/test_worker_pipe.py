"""Pipes between two in-process workers (sfu/transport/pipe.py, sfu/pipes.py), 127.0.0.1
only: a producer of worker A piped to worker B reaches B's subscribers, header extensions
untouched; a subscriber's PLI on B reaches the publisher on A; B's NACKs are answered from
B's own cache; the copy keeps the original's id, stream and levels (B's active speaker);
bad requests are refused; packets crossing pipes are counted; closing tears it down.
"""

from __future__ import annotations

import asyncio
import struct

import pytest

from common.channel import RequestFailed
from config.schema import MediaConfig, SfuConfig
from sfu import api
from sfu.transport.pipe import PipeTransport
from sfu.wire import rtcp, rtp
from sfu.worker import Worker
from tests.sfu.transport.test_plain import UdpPeer, vp8_payload

pytestmark = pytest.mark.timeout(20)

AUDIO_LEVEL_ID = 1


async def bound_worker(index: int) -> Worker:
    worker = Worker(index, SfuConfig(port_base=0, ice_tcp=False), MediaConfig(), ["127.0.0.1"])
    await worker.bind(0)
    await worker.handle(api.RouterCreate(router_id="r"))
    return worker


@pytest.fixture
async def workers():
    a, b = await bound_worker(0), await bound_worker(1)
    try:
        yield a, b
    finally:
        await a.shutdown()
        await b.shutdown()


async def pipe(a: Worker, b: Worker) -> None:
    """Pipe transports "pa" (on a) and "pb" (on b), connected to each other."""
    ends = [await w.handle(api.PipeTransportCreate(router_id="r", transport_id=t)) for w, t in ((a, "pa"), (b, "pb"))]
    await a.handle(api.PipeTransportConnect(transport_id="pa", ip=ends[1].ip, port=ends[1].port))
    await b.handle(api.PipeTransportConnect(transport_id="pb", ip=ends[0].ip, port=ends[0].port))


async def pipe_producer(a: Worker, b: Worker, producer_id: str) -> api.PipedProducerInfo:
    consumed = await a.handle(
        api.PipeConsume(transport_id="pa", consumer_id=f"pipe-{producer_id}", producer_id=producer_id)
    )
    await b.handle(api.PipeProducerCreate(transport_id="pb", producer=consumed.producer))
    return consumed.producer


async def plain_publisher(worker: Worker, kind: str, ssrc: int) -> tuple[UdpPeer, int, str]:
    info = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id=f"pub-{kind}"))
    video = kind == "video"
    made = await worker.handle(
        api.PlainProducerCreate(
            transport_id=f"pub-{kind}", kind=kind, codec_name="VP8" if video else "opus",
            clock_rate=90000 if video else 48000, payload_type=96 if video else 111, ssrc=ssrc,
        )
    )  # fmt: skip
    return UdpPeer(), info.port, made.producer.producer_id


async def plain_subscriber(
    worker: Worker, producer_id: str, name: str = "out"
) -> tuple[UdpPeer, int, api.PlainConsumerInfo]:
    peer = UdpPeer()
    info = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id=name))
    await worker.handle(api.PlainTransportConnect(transport_id=name, remote_ip="127.0.0.1", remote_port=peer.port))
    consumer = await worker.handle(
        api.ConsumerCreate(transport_id=name, consumer_id=f"{name}-c", producer_id=producer_id)
    )
    return peer, info.port, consumer


def packet(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, level: int | None = None) -> bytes:
    extensions = None if level is None else {AUDIO_LEVEL_ID: bytes([0x80 | level])}
    return rtp.build_packet(pt, seq, ts, ssrc, payload, extensions=extensions)


async def test_a_piped_video_reaches_the_other_workers_subscriber_and_its_pli_the_publisher(workers):
    a, b = workers
    publisher, pub_port, cam = await plain_publisher(a, "video", 1111)
    await pipe(a, b)
    piped = await pipe_producer(a, b, cam)
    assert piped.producer_id == cam and piped.stream_id == "pub-video"  # the same track on b
    assert b.registry.producers[cam].params.codec_name == "VP8"
    receiver, out_port, consumer = await plain_subscriber(b, cam)
    try:
        # The subscriber on b waits for a keyframe: its request crosses the pipe to a,
        # whose plain transport learns where the publisher is from its first packet.
        publisher.send_rtp(packet(96, 0xFFFF, 0, 1111, vp8_payload(keyframe=False)), pub_port)
        pli = rtcp.parse_compound(await publisher.recv_raw())
        assert any(isinstance(p, rtcp.Pli) and p.media_ssrc == 1111 for p in pli)
        for seq in range(10):
            publisher.send_rtp(packet(96, seq, seq * 3000, 1111, vp8_payload(keyframe=seq == 0)), pub_port)
        got = await receiver.recv_rtp(10)
        assert {struct.unpack_from("!I", p, 8)[0] for p in got} == {consumer.ssrc}
        # A subscriber's PLI on b reaches the publisher on a (after the PLI interval).
        await asyncio.sleep(0.6)
        receiver.send_rtcp(rtcp.build_pli(0xABCD, consumer.ssrc), out_port)
        for _ in range(5):
            found = rtcp.parse_compound(await publisher.recv_raw())
            if any(isinstance(p, rtcp.Pli) and p.media_ssrc == 1111 for p in found):
                break
        else:
            raise AssertionError("no PLI reached the publisher")
        # A NACK on b is answered from b's own cache: a sends nothing again.
        answered_on_a = a.counters.nack_answered
        receiver.send_rtcp(rtcp.build_nack(0xABCD, consumer.ssrc, [(got[4][2] << 8 | got[4][3])]), out_port)
        again = await receiver.recv_rtp(1)
        assert (
            again[0][2:4] == got[4][2:4] and b.counters.nack_answered == 1 and a.counters.nack_answered == answered_on_a
        )
        counters_a, counters_b = (
            (await a.handle(api.WorkerGetStats())).counters,
            (await b.handle(api.WorkerGetStats())).counters,
        )
        assert counters_a["pipe_packets_sent"] >= 10 and counters_b["pipe_packets_received"] >= 10
        assert counters_b["pipe_packets_sent"] == 0  # b sends RTCP only
    finally:
        publisher.close()
        receiver.close()


async def test_a_piped_microphone_keeps_its_levels_and_feeds_the_other_workers_speaker(workers):
    a, b = workers
    await pipe(a, b)
    # A microphone that negotiated audio levels (as a WebRTC publisher's would).
    mic_info = api.PipedProducerInfo(
        producer_id="mic", kind="audio", source="microphone", codec_name="opus", clock_rate=48000,
        payload_type=111, ssrc=2222, stream_id="alice", channels=2, extmap={rtp.URI_AUDIO_LEVEL: AUDIO_LEVEL_ID},
    )  # fmt: skip
    await a.handle(api.PlainTransportCreate(router_id="r", transport_id="pub"))
    # Made on a through the same request the pipe uses: a copy of alice's microphone.
    await a.handle(api.PipeTransportCreate(router_id="r", transport_id="feed"))
    feed = a.transports["feed"]
    assert isinstance(feed, PipeTransport)
    await a.handle(api.PipeProducerCreate(transport_id="feed", producer=mic_info))
    sender = UdpPeer()
    await a.handle(api.PipeTransportConnect(transport_id="feed", ip="127.0.0.1", port=sender.port))
    piped = await pipe_producer(a, b, "mic")
    assert piped.extmap == {rtp.URI_AUDIO_LEVEL: AUDIO_LEVEL_ID} and piped.stream_id == "alice"
    copy = b.registry.producers["mic"]
    assert copy.level_id == AUDIO_LEVEL_ID and copy.speaker is b.registry.routers["r"].speaker
    receiver, _, _ = await plain_subscriber(b, "mic")
    try:
        for seq in range(5):
            sender.send_rtp(packet(111, seq, seq * 960, 2222, b"\xf8" * 40, level=20), feed.local_address[1])
        got = await receiver.recv_rtp(5)
        assert rtp.audio_level(got[-1], AUDIO_LEVEL_ID) == 20  # the extension crossed untouched
        assert b.registry.routers["r"].speaker.next_tick_ms is not None  # b's detector heard "mic"
    finally:
        sender.close()
        receiver.close()


async def test_pipe_requests_refuse_what_is_not_a_pipe_between_local_workers(workers):
    a, _ = workers
    cases = [
        (api.PipeTransportCreate(router_id="r", transport_id="x", listen_ip="0.0.0.0"), "invalid"),
        (api.PipeTransportCreate(router_id="nope", transport_id="x"), "not_found"),
        (api.PipeTransportConnect(transport_id="x", ip="127.0.0.1", port=5000), "not_found"),
        (api.PipeConsume(transport_id="x", consumer_id="c", producer_id="p"), "not_found"),
    ]
    for request, code in cases:
        with pytest.raises(RequestFailed) as refused:
            await a.handle(request)
        assert refused.value.code == code, request
    await a.handle(api.PipeTransportCreate(router_id="r", transport_id="pa"))
    with pytest.raises(RequestFailed, match="127.0.0.1") as refused:
        await a.handle(api.PipeTransportConnect(transport_id="pa", ip="10.0.0.1", port=5000))
    bad = api.PipedProducerInfo(
        producer_id="p", kind="audio", source="microphone", codec_name="nonsense", clock_rate=8000,
        payload_type=0, ssrc=5, stream_id="s",
    )  # fmt: skip
    with pytest.raises(RequestFailed) as refused:
        await a.handle(api.PipeProducerCreate(transport_id="pa", producer=bad))
    assert refused.value.code == "invalid"


async def test_a_stranger_is_not_heard_on_a_pipe_and_closing_the_router_closes_it(workers):
    a, b = workers
    publisher, _, cam = await plain_publisher(a, "video", 1111)
    await pipe(a, b)
    await pipe_producer(a, b, cam)
    stranger = UdpPeer()
    try:
        pb = b.transports["pb"]
        assert isinstance(pb, PipeTransport)
        dropped = b.counters.dropped["unknown_peer"]
        stranger.send_rtp(packet(96, 1, 1, b.registry.producers[cam].ssrc, vp8_payload(True)), pb.local_address[1])
        for _ in range(50):
            if b.counters.dropped["unknown_peer"] > dropped:
                break
            await asyncio.sleep(0.02)
        assert b.counters.dropped["unknown_peer"] == dropped + 1 and b.counters.pipe_packets_received == 0
        assert (await b.handle(api.WorkerGetStats())).gauges["pipe_transports"] == 1
        await b.handle(api.RouterClose(router_id="r"))
        assert not b.registry.producers and not b.registry.transports
        await a.handle(api.TransportClose(transport_id="pa"))
        assert list(a.registry.producers) == [cam] and not a.registry.consumers
    finally:
        stranger.close()
        publisher.close()
