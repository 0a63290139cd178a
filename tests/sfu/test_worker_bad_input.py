"""Garbage thrown at a worker's UDP port while a meeting runs: counted, dropped, media flows on.

A real worker (its UDP socket, ICE-lite, DTLS, SRTP) with aiortc peers publishing and
subscribing on 127.0.0.1; an attacker socket and an attacker peer send every kind of bad
datagram. Nothing may crash, every kind is counted under its reason, and the legitimate
subscriber keeps decoding frames.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct

import aioice.ice
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError

from config.schema import MediaConfig, SfuConfig
from sfu import api
from sfu.worker import Worker
from sfu.wire import rtp, sdp, stun

pytestmark = pytest.mark.process  # a real worker on real sockets, aiortc peers


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch):
    # aioice never gathers 127.0.0.1; the test keeps all traffic on loopback.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


class Meeting:
    def __init__(self) -> None:
        self.worker = Worker(0, SfuConfig(port_base=0), MediaConfig(), ["127.0.0.1"])
        self.peers: list[RTCPeerConnection] = []
        self.frames = {"audio": 0, "video": 0}
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        await self.worker.bind(0)
        await self.worker.handle(api.RouterCreate(router_id="r"))

    async def publish(self, name: str) -> tuple[RTCPeerConnection, list[api.ProducerInfo]]:
        await self.worker.handle(api.TransportCreate(router_id="r", transport_id=name, direction="publish"))
        pc = RTCPeerConnection()
        self.peers.append(pc)
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        answer = await self.worker.handle(api.PublishOffer(transport_id=name, sdp=pc.localDescription.sdp))
        await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
        return pc, answer.producers

    async def subscribe(self, name: str, producers: list[api.ProducerInfo]) -> str:
        await self.worker.handle(api.TransportCreate(router_id="r", transport_id=name, direction="subscribe"))
        for producer in producers:
            await self.worker.handle(
                api.ConsumerCreate(transport_id=name, consumer_id=f"{name}-{producer.mid}", producer_id=producer.producer_id)
            )
        offer = await self.worker.handle(api.SubscribeOfferCreate(transport_id=name))
        pc = RTCPeerConnection()
        self.peers.append(pc)

        @pc.on("track")
        def on_track(track):
            self.tasks.append(asyncio.ensure_future(self._count(track)))

        await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.worker.handle(api.SubscribeAnswerSet(transport_id=name, sdp=pc.localDescription.sdp))
        return offer.sdp

    async def _count(self, track) -> None:
        try:
            while True:
                await track.recv()
                self.frames[track.kind] += 1
        except MediaStreamError:
            pass

    async def wait_frames(self, minimum: dict[str, int], timeout: float = 15.0) -> None:
        for _ in range(int(timeout / 0.1)):
            if all(self.frames[k] >= v for k, v in minimum.items()):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"frames stalled at {self.frames}, wanted {minimum}")

    async def dropped(self) -> dict[str, int]:
        stats = await self.worker.handle(api.WorkerGetStats())
        return stats.dropped

    async def close(self) -> None:
        for pc in self.peers:
            await pc.close()
        for task in self.tasks:
            task.cancel()
        await self.worker.shutdown()


def stun_request(ufrag: str, pwd: str) -> bytes:
    return stun.build_binding_request(os.urandom(12), f"{ufrag}:attacker", pwd.encode(), priority=1, controlling_tiebreaker=1, use_candidate=True)


async def test_garbage_is_counted_and_media_keeps_flowing(caplog):
    caplog.set_level("DEBUG", logger="sfu")
    meeting = Meeting()
    await meeting.start()
    try:
        attacker_pc, _ = await meeting.publish("alice")
        _, producers = await meeting.publish("bob")
        offer_text = await meeting.subscribe("carol", producers)
        await meeting.wait_frames({"audio": 20, "video": 10})
        carol_ufrag = sdp.parse(offer_text).media[0].ice_ufrag

        port = meeting.worker.port
        target = ("127.0.0.1", port)
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.bind(("127.0.0.1", 0))
        rng = random.Random(7)
        sent = {
            "malformed_stun": [b"\x00\x01\x00\x08" + os.urandom(20), b"\x00\x01\x00"],
            "stun_auth": [stun_request(carol_ufrag, "wrong-password-xxxxxxxxx"), stun_request("nobody", "x" * 24)],
            "unknown_peer": [b"\x80" + os.urandom(30), b"\x80\x60\x00", bytes([0x16, 0xFE, 0xFD]) + os.urandom(40)],
            "oversized": [b"\x80" * 2000, os.urandom(9000)],
            "unknown_packet": [bytes([200]) + os.urandom(50), b""],
        }
        for datagrams in sent.values():
            for datagram in datagrams:
                raw.sendto(datagram, target)
        for _ in range(200):  # random bytes of every kind
            raw.sendto(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))), target)

        # A connected peer sends well-encrypted nonsense: unknown SSRC, random RTCP, DTLS junk.
        dtls_transport = attacker_pc.getSenders()[0].transport
        for i in range(5):
            await dtls_transport._send_rtp(rtp.build_packet(96, i, i, 0xDEAD0000 + i, payload=b"x" * 100))
            await dtls_transport._send_rtp(bytes([0x81, 205]) + struct.pack("!H", 40) + os.urandom(20))
        await asyncio.sleep(0.5)

        dropped = await meeting.dropped()
        for reason in sent:
            assert dropped[reason] >= len(sent[reason]) - (1 if reason == "unknown_packet" else 0), (reason, dropped)
        assert dropped["unknown_ssrc"] >= 5, dropped
        assert dropped["malformed_rtcp"] >= 5, dropped

        before = dict(meeting.frames)
        await meeting.wait_frames({"audio": before["audio"] + 20, "video": before["video"] + 10})
        raw.close()
        tracebacks = [r.getMessage() for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
        assert not tracebacks, tracebacks
    finally:
        await meeting.close()


async def test_garbage_at_a_served_worker_shows_in_metrics_and_the_meeting_goes_on(conclave_server):
    """The same attack on a worker process that control supervises, judged by /metrics."""
    import aiohttp

    meeting = await conclave_server.create_meeting()
    alice = conclave_server.bot(meeting, "alice")
    bob = conclave_server.bot(meeting, "bob")
    worker = conclave_server.services.workers.workers[0]
    pid_before = worker.pid
    try:
        await alice.start()
        await bob.start(publish_audio=False, publish_video=False)
        await bob.wait_for_frames(alice.participant_id, "camera", count=5, timeout=30)

        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.bind(("127.0.0.1", 0))
        attack = {
            "malformed_stun": b"\x00\x01\x00\x08" + os.urandom(20),
            "stun_auth": stun_request("nobody", "x" * 24),
            "unknown_peer": b"\x80\x60" + os.urandom(40),
            "oversized": os.urandom(4000),
            "unknown_packet": bytes([99]) + os.urandom(30),
        }
        for _ in range(3):
            for datagram in attack.values():
                raw.sendto(datagram, ("127.0.0.1", worker.port))
        raw.close()

        before = bob.received[alice.participant_id]["camera"].frames
        await bob.wait_for_frames(alice.participant_id, "camera", count=before + 10, timeout=30)
        await conclave_server.services.workers.refresh_stats()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{conclave_server.base_url}/metrics") as response:
                text = await response.text()
        for reason in attack:
            line = f'conclave_worker_packets_dropped_total{{reason="{reason}",worker="0"}}'
            values = [float(row.split()[-1]) for row in text.splitlines() if row.startswith(line)]
            assert values and values[0] >= 3, (reason, [r for r in text.splitlines() if "dropped" in r])
        assert worker.pid == pid_before and worker.restarts == 0
    finally:
        await asyncio.gather(alice.stop(), bob.stop())
