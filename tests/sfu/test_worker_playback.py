"""A WHEP player on the worker (sfu.transport.playback), in process, 127.0.0.1 only: an
aiortc player offers recvonly audio and video, the answer fixes one slot per kind, a
consumer on a slot forwards at once, CONSUMER_SET_PRODUCER moves the video slot to
another camera and the player keeps receiving on the same SSRC; what cannot be
switched or offered is refused as "invalid"."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from common.channel import RequestFailed
from sfu import api
from sfu.wire import rtp, sdp
from tests.support.engine import VP8_KEY
from tests.support.worker_fixtures import loopback_ice, worker  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.process, pytest.mark.timeout(30)]


async def plain_camera(worker, transport_id: str, ssrc: int) -> tuple[str, tuple[str, int]]:
    info = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id=transport_id))
    made = await worker.handle(api.PlainProducerCreate(transport_id, "video", "VP8", 90000, 96, ssrc))
    return made.producer.producer_id, (info.ip, info.port)


async def player_offer() -> RTCPeerConnection:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc


async def inbound(pc: RTCPeerConnection):
    receiver = next(t.receiver for t in pc.getTransceivers() if t.kind == "video")
    stats = await receiver.getStats()
    return next((s for s in stats.values() if s.type == "inbound-rtp"), None)


async def inbound_video(pc: RTCPeerConnection) -> tuple[int, int]:
    """(ssrc, packets received) of the player's video receiver."""
    found = await inbound(pc)
    return (found.ssrc, found.packetsReceived) if found else (0, 0)


async def wait_packets(pc, at_least: int, send) -> tuple[int, int]:
    for _ in range(100):
        send()
        ssrc, count = await inbound_video(pc)
        if count >= at_least:
            return ssrc, count
        await asyncio.sleep(0.05)
    raise AssertionError(f"the player received {count} video packets, expected {at_least}")


async def test_a_player_receives_one_video_that_switches_source_on_one_ssrc(worker):
    first, first_addr = await plain_camera(worker, "cam1", 1111)
    second, second_addr = await plain_camera(worker, "cam2", 2222)
    await worker.handle(api.TransportCreate(router_id="r", transport_id="player", direction="subscribe"))
    pc = await player_offer()
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    seqs = {1111: 0, 2222: 0}

    def send(ssrc, addr):
        def one():
            seqs[ssrc] += 1
            out.sendto(rtp.build_packet(96, seqs[ssrc], seqs[ssrc] * 3000, ssrc, payload=VP8_KEY), addr)
        return one

    try:
        answer = await worker.handle(api.PlaybackOffer("player", pc.localDescription.sdp))
        assert answer.kinds == ["audio", "video"]
        described = sdp.parse(answer.sdp)
        assert described.ice_lite and [m.direction for m in described.media] == ["sendonly", "sendonly"]
        assert {m.setup for m in described.media} == {"passive"}  # aiortc offers actpass
        video_ssrc = next(m.ssrcs[0] for m in described.media if m.kind == "video")
        await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
        await worker.handle(api.ConsumerCreate("player", "v", first))
        ssrc, before = await wait_packets(pc, 5, send(1111, first_addr))
        assert ssrc == video_ssrc

        await worker.handle(api.ConsumerSetProducer("v", second))
        ssrc, after = await wait_packets(pc, before + 5, send(2222, second_addr))
        assert ssrc == video_ssrc  # the same stream to the player: no renegotiation
        assert worker.registry.consumers["v"].producer.id == second

        # A replaced consumer (what control does when a simulcast source cannot be switched
        # in place) goes on with its predecessor's numbers: no jump the player counts as loss.
        await worker.handle(api.ConsumerClose("v"))
        await worker.handle(api.ConsumerCreate("player", "v", first))
        ssrc, _ = await wait_packets(pc, after + 5, send(1111, first_addr))
        assert ssrc == video_ssrc and (await inbound(pc)).packetsLost < 5

        with pytest.raises(RequestFailed) as refused:  # a second consumer on a taken slot
            await worker.handle(api.ConsumerCreate("player", "v2", first))
        assert refused.value.code == "invalid"
        with pytest.raises(RequestFailed) as again:  # a player offers once
            await worker.handle(api.PlaybackOffer("player", pc.localDescription.sdp))
        assert again.value.code == "invalid"
    finally:
        out.close()
        await pc.close()


async def test_switching_is_refused_across_kinds_and_for_other_subscribers(worker):
    camera, _ = await plain_camera(worker, "cam1", 1111)
    await worker.handle(api.DirectTransportCreate(router_id="r", transport_id="direct"))
    notices = (await worker.handle(api.DirectProducerCreate(transport_id="direct", kind="audio"))).producer.producer_id
    await worker.handle(api.TransportCreate(router_id="r", transport_id="player", direction="subscribe"))
    pc = await player_offer()
    try:
        await worker.handle(api.PlaybackOffer("player", pc.localDescription.sdp))
        await worker.handle(api.ConsumerCreate("player", "a", notices))
        with pytest.raises(RequestFailed) as kind:
            await worker.handle(api.ConsumerSetProducer("a", camera))
        assert kind.value.code == "invalid"
        await worker.handle(api.TransportCreate(router_id="r", transport_id="sub", direction="subscribe"))
        await worker.handle(api.ConsumerCreate("sub", "s", notices))
        with pytest.raises(RequestFailed) as negotiated:  # a participant's consumer is renegotiated instead
            await worker.handle(api.ConsumerSetProducer("s", notices))
        assert negotiated.value.code == "invalid"
    finally:
        await pc.close()


async def test_an_offer_that_receives_nothing_is_refused_and_leaves_the_transport_fresh(worker):
    await worker.handle(api.TransportCreate(router_id="r", transport_id="player", direction="subscribe"))
    pc = RTCPeerConnection()
    pc.createDataChannel("x")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        with pytest.raises(RequestFailed) as refused:
            await worker.handle(api.PlaybackOffer("player", pc.localDescription.sdp))
        assert refused.value.code == "invalid" and "no audio or video" in refused.value.message
        assert worker.registry.transports["player"].playback is None
    finally:
        await pc.close()
