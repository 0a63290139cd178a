"""Plain RTP transports (sfu/transport/plain.py) on a real in-process worker, 127.0.0.1 only.

- ffmpeg sends VP8 as plain RTP into a plain transport; an aiortc WebRTC subscriber decodes it.
- plain in -> plain out with SRTP (SDES keys) both ways: a Python receiver decrypts with
  pylibsrtp and checks sequence continuity; NACK and PLI travel back over SRTCP.
- an aiortc publisher's VP8 leaves through a plain transport (recorder feed).
- bad input and bad requests are counted or refused, never a traceback.
- sending goes through a duplicate of the transport's socket, falling back to the transport.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError

from common.channel import ChannelClient, ChannelError, ChannelServer, RequestFailed
from common.messages import Empty, MessageError, message_class
from sfu import api
from sfu.transport.plain import srtp_session
from sfu.wire import codecs, rtcp, rtp
from sfu.worker import Worker
from tests.support.worker_fixtures import loopback_ice, worker  # noqa: F401  (fixtures)

FFMPEG = shutil.which("ffmpeg")


class UdpPeer:
    """A bare UDP socket on 127.0.0.1 with optional SRTP sessions, read with asyncio."""

    def __init__(self, tx_key: bytes | None = None, rx_key_base64: str | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.tx = srtp_session(tx_key, outbound=True) if tx_key else None
        self.rx = srtp_session(base64.b64decode(rx_key_base64), outbound=False) if rx_key_base64 else None

    def send_rtp(self, packet: bytes, port: int) -> None:
        self.sock.sendto(self.tx.protect(packet) if self.tx else packet, ("127.0.0.1", port))

    def send_rtcp(self, packet: bytes, port: int) -> None:
        self.sock.sendto(self.tx.protect_rtcp(packet) if self.tx else packet, ("127.0.0.1", port))

    async def recv_raw(self, timeout: float = 5.0) -> bytes:
        loop = asyncio.get_running_loop()
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 2048), timeout)
        return data

    async def recv(self, timeout: float = 5.0) -> tuple[str, bytes]:
        """("rtp" | "rtcp", decrypted bytes)."""
        data = await self.recv_raw(timeout)
        is_rtcp = 191 < data[1] < 224
        if self.rx is not None:
            data = self.rx.unprotect_rtcp(data) if is_rtcp else self.rx.unprotect(data)
        return ("rtcp" if is_rtcp else "rtp"), data

    async def recv_rtp(self, count: int, timeout: float = 5.0) -> list[bytes]:
        packets = []
        while len(packets) < count:
            kind, data = await self.recv(timeout)
            if kind == "rtp":
                packets.append(data)
        return packets

    def close(self) -> None:
        self.sock.close()


def vp8_payload(keyframe: bool, size: int = 300) -> bytes:
    # RFC 7741 §4.2 descriptor (S=1, PID=0), then a VP8 frame tag whose P bit is 0 for a keyframe.
    return b"\x10" + (b"\x50" if keyframe else b"\x51") + os.urandom(size)


async def stats(worker: Worker) -> api.WorkerStats:
    return await worker.handle(api.WorkerGetStats())


# --------------------------------------------------------------------- ffmpeg -> WebRTC


class Subscriber:
    """An aiortc subscriber of one WebRTC subscribe transport, counting decoded frames."""

    def __init__(self, worker: Worker, name: str) -> None:
        self.worker = worker
        self.name = name
        self.pc = RTCPeerConnection()
        self.frames = 0
        self.tasks: list[asyncio.Task] = []

    async def start(self, producer_ids: list[str]) -> None:
        await self.worker.handle(api.TransportCreate(router_id="r", transport_id=self.name, direction="subscribe"))
        for i, producer_id in enumerate(producer_ids):
            await self.worker.handle(
                api.ConsumerCreate(transport_id=self.name, consumer_id=f"{self.name}-{i}", producer_id=producer_id)
            )
        offer = await self.worker.handle(api.SubscribeOfferCreate(transport_id=self.name))

        @self.pc.on("track")
        def on_track(track):
            self.tasks.append(asyncio.ensure_future(self._count(track)))

        await self.pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.worker.handle(api.SubscribeAnswerSet(transport_id=self.name, sdp=self.pc.localDescription.sdp))

    async def _count(self, track) -> None:
        try:
            while True:
                await track.recv()
                self.frames += 1
        except MediaStreamError:
            pass

    async def wait_frames(self, minimum: int, timeout: float = 20.0) -> None:
        for _ in range(int(timeout / 0.1)):
            if self.frames >= minimum:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"decoded {self.frames} frames, wanted {minimum}")

    async def close(self) -> None:
        await self.pc.close()
        for task in self.tasks:
            task.cancel()


def start_ffmpeg_vp8(port: int, ssrc: int, seconds: int, srtp_key: str | None = None) -> subprocess.Popen:
    """The command docs/plain-rtp.md gives (pkt_size in the URL works for rtp:// and srtp://)."""
    srtp = ["-srtp_out_suite", "AES_CM_128_HMAC_SHA1_80", "-srtp_out_params", srtp_key] if srtp_key else []
    scheme = "srtp" if srtp_key else "rtp"
    return subprocess.Popen(
        [
            FFMPEG, "-nostdin", "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30",
            "-t", str(seconds), "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8",
            "-g", "15", "-b:v", "300k", "-ssrc", str(ssrc), "-payload_type", "96",
            "-f", "rtp", *srtp, f"{scheme}://127.0.0.1:{port}?rtcpport={port}&pkt_size=1200",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(10)


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (scripts/test installs it)")
async def test_ffmpeg_vp8_into_a_plain_transport_is_decoded_by_a_webrtc_subscriber(worker):
    info = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="ingest"))
    assert isinstance(info, api.PlainTransportInfo)
    assert info.ip == "127.0.0.1" and info.port > 0 and info.srtp_key_base64 is None
    created = await worker.handle(
        api.PlainProducerCreate(
            transport_id="ingest", kind="video", codec_name="VP8", clock_rate=90000, payload_type=96, ssrc=4242
        )
    )
    assert isinstance(created, api.PlainProducerCreated)
    assert created.producer.kind == "video" and created.producer.source == "camera"

    subscriber = Subscriber(worker, "viewer")
    ffmpeg = start_ffmpeg_vp8(info.port, 4242, seconds=30)
    try:
        await subscriber.start([created.producer.producer_id])
        await subscriber.wait_frames(15)
    finally:
        stop(ffmpeg)
        await subscriber.close()
    snapshot = await stats(worker)
    assert snapshot.counters["keyframes_forwarded"] >= 1
    assert snapshot.dropped.get("unknown_ssrc", 0) == 0
    assert snapshot.dropped.get("srtp_error", 0) == 0
    assert worker.transports["ingest"].remote is not None  # learned from ffmpeg (comedia)


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (scripts/test installs it)")
async def test_ffmpeg_srtp_into_a_plain_transport_leaves_as_plain_rtp(worker):
    info = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="ingest", srtp=True))
    key = base64.b64encode(os.urandom(30)).decode()
    await worker.handle(api.PlainTransportConnect(transport_id="ingest", remote_srtp_key_base64=key))
    created = await worker.handle(
        api.PlainProducerCreate(
            transport_id="ingest", kind="video", codec_name="VP8", clock_rate=90000, payload_type=96, ssrc=77
        )
    )
    receiver = UdpPeer()
    await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="out"))
    await worker.handle(api.PlainTransportConnect(transport_id="out", remote_ip="127.0.0.1", remote_port=receiver.port))
    consumer = await worker.handle(
        api.ConsumerCreate(transport_id="out", consumer_id="c", producer_id=created.producer.producer_id)
    )
    ffmpeg = start_ffmpeg_vp8(info.port, 77, seconds=30, srtp_key=key)
    try:
        packets = await receiver.recv_rtp(40, timeout=15.0)
    finally:
        stop(ffmpeg)
        receiver.close()
    assert codecs.is_keyframe("VP8", packets[0], rtp.payload_offset(packets[0]))
    assert {rtp.parse_header(p).ssrc for p in packets} == {consumer.ssrc}
    dropped = (await stats(worker)).dropped
    assert dropped.get("srtp_error", 0) == 0 and dropped.get("oversized", 0) == 0


def documented_command(marker: str) -> str:
    """The shell block of docs/plain-rtp.md that follows `<!-- tested: ...::marker -->`."""
    text = (Path(__file__).resolve().parents[3] / "docs" / "plain-rtp.md").read_text()
    after = text[text.index(f"::{marker} -->") :]
    return after[after.index("```sh\n") + 6 : after.index("\n```", after.index("```sh\n"))]


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (scripts/test installs it)")
async def test_the_documented_audio_and_video_command(worker, tmp_path):
    """The page's example, verbatim: ffmpeg sends audio and video to one port, each from
    a socket of its own; both streams are heard (comedia per SSRC), nothing is dropped."""
    await asyncio.to_thread(
        subprocess.run,
        [FFMPEG, "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=15",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "6",
         "-c:v", "mpeg4", "-c:a", "aac", str(tmp_path / "input.mp4")],
        check=True, timeout=60,
    )  # fmt: skip
    info = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="ingest"))
    for kind, codec, rate, pt, ssrc in (("video", "VP8", 90000, 96, 4242), ("audio", "opus", 48000, 111, 1111)):
        await worker.handle(api.PlainProducerCreate(
            transport_id="ingest", kind=kind, codec_name=codec, clock_rate=rate, payload_type=pt, ssrc=ssrc))  # fmt: skip
    command = documented_command("test_the_documented_audio_and_video_command")
    env = {"PATH": os.environ["PATH"], "IP": "127.0.0.1", "PORT": str(info.port)}
    ffmpeg = subprocess.Popen(["bash", "-c", command], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    transport = worker.transports["ingest"]
    producers = {p.ssrc: p for p in transport.producers.values()}
    try:
        for _ in range(150):
            if all(p.reception.received >= 40 for p in producers.values()):
                break
            await asyncio.sleep(0.1)
    finally:
        stop(ffmpeg)
    received = {ssrc: p.reception.received for ssrc, p in producers.items()}
    assert all(count >= 40 for count in received.values()), (received, ffmpeg.stderr.read().decode()[-2000:])
    assert set(transport.sources) == {4242, 1111}
    assert transport.sources[4242] != transport.sources[1111]  # two sockets, both heard
    dropped = (await stats(worker)).dropped
    assert dropped.get("unknown_peer", 0) == 0 and dropped.get("unknown_ssrc", 0) == 0


async def test_a_stream_is_heard_only_from_its_source_and_the_remote_ip(worker):
    """Per-SSRC comedia: a bound SSRC from another port is refused; a new SSRC from
    another IP than the remote's is refused; a closed producer's binding goes with it."""
    info = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="in"))
    for ssrc in (7, 8):
        await worker.handle(api.PlainProducerCreate(
            transport_id="in", kind="audio", codec_name="opus", clock_rate=48000, payload_type=111, ssrc=ssrc))  # fmt: skip
    first, second = UdpPeer(), UdpPeer()
    transport = worker.transports["in"]
    try:
        first.send_rtp(rtp.build_packet(111, 1, 0, 7, payload=b"a" * 50), info.port)
        second.send_rtp(rtp.build_packet(111, 1, 0, 8, payload=b"b" * 50), info.port)
        await asyncio.sleep(0.1)
        assert transport.sources == {7: ("127.0.0.1", first.port), 8: ("127.0.0.1", second.port)}
        assert transport.remote == ("127.0.0.1", first.port)  # where we send: the first source
        second.send_rtp(rtp.build_packet(111, 2, 0, 7, payload=b"x" * 50), info.port)  # 7 is first's
        await asyncio.sleep(0.1)
        assert (await stats(worker)).dropped["unknown_peer"] == 1
        other_ip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other_ip.bind(("127.0.0.2", 0))
        try:
            transport.sources.pop(8)  # unbound again: only the remote's IP may bind it
            other_ip.sendto(rtp.build_packet(111, 3, 0, 8, payload=b"y" * 50), ("127.0.0.1", info.port))
            await asyncio.sleep(0.1)
        finally:
            other_ip.close()
        assert (await stats(worker)).dropped["unknown_peer"] == 2 and 8 not in transport.sources
        producer = next(p for p in transport.producers.values() if p.ssrc == 7)
        await worker.handle(api.ProducerClose(producer_id=producer.id))
        assert 7 not in transport.sources
    finally:
        first.close()
        second.close()


# ------------------------------------------------------------ plain SRTP -> plain SRTP


async def test_plain_srtp_in_and_out_with_continuity_nack_and_pli(worker):
    inbound = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="in", srtp=True))
    outbound = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="out", srtp=True))
    assert inbound.srtp_crypto_suite == outbound.srtp_crypto_suite == "AES_CM_128_HMAC_SHA1_80"
    assert len(base64.b64decode(inbound.srtp_key_base64)) == 30
    assert inbound.srtp_key_base64 != outbound.srtp_key_base64

    sender_key, receiver_key = os.urandom(30), os.urandom(30)
    sender = UdpPeer(tx_key=sender_key, rx_key_base64=inbound.srtp_key_base64)
    receiver = UdpPeer(tx_key=receiver_key, rx_key_base64=outbound.srtp_key_base64)
    try:
        # The sender's address is learned from its first packet (comedia); only its key is given.
        await worker.handle(
            api.PlainTransportConnect(transport_id="in", remote_srtp_key_base64=base64.b64encode(sender_key).decode())
        )
        await worker.handle(
            api.PlainTransportConnect(
                transport_id="out",
                remote_ip="127.0.0.1",
                remote_port=receiver.port,
                remote_srtp_key_base64=base64.b64encode(receiver_key).decode(),
            )
        )
        audio = await worker.handle(
            api.PlainProducerCreate(
                transport_id="in", kind="audio", codec_name="opus", clock_rate=48000, payload_type=100,
                ssrc=1111, channels=2,
            )
        )  # fmt: skip
        video = await worker.handle(
            api.PlainProducerCreate(
                transport_id="in", kind="video", codec_name="VP8", clock_rate=90000, payload_type=101, ssrc=2222
            )
        )
        audio_consumer = await worker.handle(
            api.ConsumerCreate(transport_id="out", consumer_id="c-audio", producer_id=audio.producer.producer_id)
        )
        video_consumer = await worker.handle(
            api.ConsumerCreate(transport_id="out", consumer_id="c-video", producer_id=video.producer.producer_id)
        )
        assert isinstance(audio_consumer, api.PlainConsumerInfo)
        assert (audio_consumer.codec_name, audio_consumer.clock_rate, audio_consumer.payload_type) == ("opus", 48000, 111)
        assert (video_consumer.codec_name, video_consumer.payload_type) == ("VP8", 96)

        # Audio: 200 packets in, the same 200 out, renumbered but contiguous, payload intact.
        payloads = [os.urandom(120) for _ in range(200)]
        received: list[bytes] = []
        for i, payload in enumerate(payloads):
            sender.send_rtp(rtp.build_packet(100, 5000 + i, 960 * i, 1111, payload=payload), inbound.port)
            if i % 20 == 19:  # a little pacing: never more in flight than the socket buffers hold
                received += await receiver.recv_rtp(20)
        seqs = []
        for packet, payload in zip(received, payloads):
            header = rtp.parse_header(packet)
            assert header.ssrc == audio_consumer.ssrc and header.payload_type == 111
            assert packet[rtp.payload_offset(packet) :] == payload
            seqs.append(header.sequence_number)
        assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:])), seqs

        # Video starts at a keyframe: the consumer asked the sender for one (PLI over SRTCP).
        assert await pli_for(sender, 2222)
        frames = [vp8_payload(i == 0) for i in range(5)]
        for i, frame in enumerate(frames):
            sender.send_rtp(rtp.build_packet(101, 100 + i, 3000 * i, 2222, payload=frame), inbound.port)
        raw = [await receiver.recv_raw() for _ in range(5)]  # no RTCP is due to the receiver yet
        # The receiver "loses" the third packet (its header is in the clear) and NACKs it.
        video_packets = [receiver.rx.unprotect(raw[i]) for i in (0, 1, 3, 4)]
        first = rtp.parse_header(video_packets[0])
        assert first.ssrc == video_consumer.ssrc and first.payload_type == 96
        lost_seq = struct.unpack_from("!H", raw[2], 2)[0]
        assert lost_seq == (first.sequence_number + 2) & 0xFFFF
        receiver.send_rtcp(rtcp.build_nack(0xABCD, video_consumer.ssrc, [lost_seq]), outbound.port)
        (again,) = await receiver.recv_rtp(1)
        assert rtp.parse_header(again).sequence_number == lost_seq
        assert again[rtp.payload_offset(again) :] == frames[2]

        # The receiver asks for a keyframe: the worker relays the PLI to the sender.
        await asyncio.sleep(0.6)  # past pli_min_interval_s since the first PLI
        receiver.send_rtcp(rtcp.build_pli(0xABCD, video_consumer.ssrc), outbound.port)
        assert await pli_for(sender, 2222)

        snapshot = await stats(worker)
        assert snapshot.counters["nack_answered"] >= 1 and snapshot.counters["pli_received"] >= 1
        assert snapshot.dropped.get("srtp_error", 0) == 0
    finally:
        sender.close()
        receiver.close()


async def pli_for(peer: UdpPeer, media_ssrc: int) -> bool:
    for _ in range(10):
        kind, data = await peer.recv()
        if kind == "rtcp":
            for packet in rtcp.parse_compound(data):
                if isinstance(packet, rtcp.Pli) and packet.media_ssrc == media_ssrc:
                    return True
    return False


# ----------------------------------------------------------------- WebRTC -> plain out


async def test_a_webrtc_publisher_leaves_through_a_plain_transport(worker):
    await worker.handle(api.TransportCreate(router_id="r", transport_id="pub", direction="publish"))
    pc = RTCPeerConnection()
    pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
    receiver = UdpPeer()
    try:
        await pc.setLocalDescription(await pc.createOffer())
        answer = await worker.handle(api.PublishOffer(transport_id="pub", sdp=pc.localDescription.sdp))
        await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
        out = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="rec"))
        await worker.handle(api.PlainTransportConnect(transport_id="rec", remote_ip="127.0.0.1", remote_port=receiver.port))
        consumer = await worker.handle(
            api.ConsumerCreate(transport_id="rec", consumer_id="rec-v", producer_id=answer.producers[0].producer_id)
        )
        packets = await receiver.recv_rtp(60, timeout=15.0)
        headers = [rtp.parse_header(p) for p in packets]
        assert {h.ssrc for h in headers} == {consumer.ssrc}
        seqs = [h.sequence_number for h in headers]
        assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))
        assert codecs.is_keyframe("VP8", packets[0], rtp.payload_offset(packets[0]))  # starts decodable
        assert out.port != worker.port
    finally:
        receiver.close()
        await pc.close()


# ------------------------------------------------------------- bad input, bad requests


async def test_bad_datagrams_are_counted_and_media_goes_on(worker):
    info = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="in"))
    await worker.handle(
        api.PlainProducerCreate(transport_id="in", kind="audio", codec_name="opus", clock_rate=48000, payload_type=111, ssrc=7)
    )
    sender, stranger = UdpPeer(), UdpPeer()
    try:
        sender.send_rtp(rtp.build_packet(111, 1, 0, 7, payload=b"a" * 50), info.port)  # learned: the sender
        await asyncio.sleep(0.1)
        before = (await stats(worker)).dropped
        garbage = {
            "unknown_peer": rtp.build_packet(111, 2, 0, 7, payload=b"x" * 50),
            "unknown_packet": b"\x10" + os.urandom(40),
            "malformed_rtp": b"\x80\x6f" + os.urandom(5),
            "oversized": b"\x80" * 3000,
        }
        for reason, datagram in garbage.items():
            (stranger if reason == "unknown_peer" else sender).sock.sendto(datagram, ("127.0.0.1", info.port))
        sender.send_rtp(rtp.build_packet(111, 3, 0, 99, payload=b"x" * 50), info.port)  # unknown SSRC
        sender.send_rtp(rtp.build_packet(111, 4, 0, 7, payload=b"x" * 1400), info.port)  # too big to forward
        sender.sock.sendto(b"\x81\xc9\x00\x07" + os.urandom(8), ("127.0.0.1", info.port))  # RTCP of wrong length
        await asyncio.sleep(0.2)
        after = (await stats(worker)).dropped
        for reason in garbage:
            assert after.get(reason, 0) > before.get(reason, 0), (reason, after)
        assert after["unknown_ssrc"] > before["unknown_ssrc"]
        assert after["oversized"] >= before["oversized"] + 2
        assert after["malformed_rtcp"] > before["malformed_rtcp"]
    finally:
        sender.close()
        stranger.close()


async def test_srtp_with_a_wrong_key_or_no_key_is_dropped(worker):
    info = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="in", srtp=True))
    await worker.handle(
        api.PlainProducerCreate(transport_id="in", kind="audio", codec_name="opus", clock_rate=48000, payload_type=111, ssrc=7)
    )
    sender = UdpPeer(tx_key=os.urandom(30))
    try:
        sender.send_rtp(rtp.build_packet(111, 1, 0, 7, payload=b"a" * 50), info.port)
        await asyncio.sleep(0.1)
        assert (await stats(worker)).dropped["not_connected"] >= 1
        key = base64.b64encode(os.urandom(30)).decode()  # not the sender's key
        await worker.handle(api.PlainTransportConnect(transport_id="in", remote_srtp_key_base64=key))
        sender.send_rtp(rtp.build_packet(111, 2, 0, 7, payload=b"a" * 50), info.port)
        await asyncio.sleep(0.1)
        assert (await stats(worker)).dropped["srtp_error"] >= 1
        assert worker.transports["in"].remote is None  # nothing valid arrived: nothing learned
    finally:
        sender.close()


async def test_bad_plain_requests_are_refused(worker):
    await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="p"))
    await worker.handle(api.RouterCreate(router_id="other"))
    await worker.handle(api.PlainTransportCreate(router_id="other", transport_id="q"))
    produced = await worker.handle(
        api.PlainProducerCreate(transport_id="p", kind="audio", codec_name="opus", clock_rate=48000, payload_type=111, ssrc=1)
    )
    bad = [
        api.PlainTransportCreate(router_id="nope", transport_id="x"),
        api.PlainTransportCreate(router_id="r", transport_id="p"),
        api.PlainTransportCreate(router_id="r", transport_id="x", listen_ip="192.0.2.1"),
        api.PlainTransportConnect(transport_id="p", remote_srtp_key_base64=base64.b64encode(os.urandom(30)).decode()),
        api.PlainTransportConnect(transport_id="p", remote_ip="127.0.0.1"),
        api.PlainTransportConnect(transport_id="p", remote_ip="not-an-ip", remote_port=5000),
        api.PlainTransportConnect(transport_id="p", remote_ip="127.0.0.1", remote_port=70000),
        api.PlainTransportConnect(transport_id="nope", remote_ip="127.0.0.1", remote_port=5000),
        api.PlainProducerCreate(transport_id="p", kind="video", codec_name="VP9", clock_rate=90000, payload_type=98, ssrc=2),
        api.PlainProducerCreate(transport_id="p", kind="audio", codec_name="opus", clock_rate=48000, payload_type=111, ssrc=1),
        api.PlainProducerCreate(transport_id="p", kind="data", codec_name="opus", clock_rate=48000, payload_type=111, ssrc=3),
        api.PlainProducerCreate(transport_id="p", kind="audio", codec_name="opus", clock_rate=48000, payload_type=300, ssrc=4),
        api.ConsumerCreate(transport_id="q", consumer_id="c", producer_id=produced.producer.producer_id),
    ]
    for request in bad:
        with pytest.raises(RequestFailed):
            await worker.handle(request)
    srtp = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="s", srtp=True))
    for key in ("***", base64.b64encode(b"short").decode()):
        with pytest.raises(RequestFailed, match="remote_srtp_key_base64"):
            await worker.handle(api.PlainTransportConnect(transport_id="s", remote_srtp_key_base64=key))
    assert srtp.srtp_key_base64


async def test_closing_cascades_and_frees_the_port(worker):
    info = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="p"))
    produced = await worker.handle(
        api.PlainProducerCreate(transport_id="p", kind="audio", codec_name="opus", clock_rate=48000, payload_type=111, ssrc=1)
    )
    await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="out"))
    await worker.handle(api.ConsumerCreate(transport_id="out", consumer_id="c", producer_id=produced.producer.producer_id))
    await worker.handle(api.ConsumerClose(consumer_id="c"))
    assert not worker.transports["out"].consumers
    await worker.handle(api.ConsumerCreate(transport_id="out", consumer_id="c2", producer_id=produced.producer.producer_id))
    await worker.handle(api.TransportClose(transport_id="p"))
    assert produced.producer.producer_id not in worker.registry.producers and "c2" not in worker.registry.consumers
    assert produced.producer.producer_id not in worker.registry.routers["r"].producers
    assert not worker.transports["out"].consumers
    await worker.handle(api.RouterClose(router_id="r"))
    assert not worker.transports
    gauges = (await stats(worker)).gauges
    assert gauges["transports"] == 0 and gauges["producers"] == 0
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(100):  # asyncio closes the socket on its next loop iteration
            await asyncio.sleep(0.01)
            try:
                probe.bind(("127.0.0.1", info.port))  # the port is free again
                break
            except OSError:
                continue
        assert probe.getsockname()[1] == info.port
    finally:
        probe.close()


class RefusingSocket:
    """In place of a transport's duplicated send socket: every sendto raises `error`."""

    def __init__(self, error: OSError) -> None:
        self.error = error

    def sendto(self, data, addr):
        raise self.error

    def close(self) -> None:
        pass


async def test_sends_through_a_duplicate_of_its_socket_and_falls_back_to_the_transport(worker):
    inbound = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="in"))
    produced = await worker.handle(
        api.PlainProducerCreate(transport_id="in", kind="audio", codec_name="opus", clock_rate=48000, payload_type=111, ssrc=5)
    )
    sender, receiver = UdpPeer(), UdpPeer()
    out_info = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="out"))
    await worker.handle(api.PlainTransportConnect(transport_id="out", remote_ip="127.0.0.1", remote_port=receiver.port))
    await worker.handle(api.ConsumerCreate(transport_id="out", consumer_id="c", producer_id=produced.producer.producer_id))
    out = worker.transports["out"]
    out.use_native(None)  # the Python path's sends (the native path's: test_native_equivalence.py)
    duplicate = out._send_socket
    try:
        assert duplicate is not None and duplicate.fileno() != out.udp.get_extra_info("socket").fileno()
        loop = asyncio.get_running_loop()

        async def forward(seq: int) -> tuple[bytes, tuple[str, int]] | None:
            sender.send_rtp(rtp.build_packet(111, seq, 960 * seq, 5, payload=bytes([seq]) * 40), inbound.port)
            try:
                return await asyncio.wait_for(loop.sock_recvfrom(receiver.sock, 2048), 1.0)
            except asyncio.TimeoutError:
                return None

        data, source = await forward(1)
        assert source == ("127.0.0.1", out_info.port) and data[-40:] == bytes([1]) * 40  # from the transport's port
        out._send_socket = RefusingSocket(BlockingIOError())  # type: ignore[assignment]
        data, source = await forward(2)  # the kernel's buffer was full: the event loop transport sends it
        assert source == ("127.0.0.1", out_info.port) and data[-40:] == bytes([2]) * 40
        out._send_socket = RefusingSocket(OSError(1, "not permitted"))  # type: ignore[assignment]
        assert await forward(3) is None  # dropped like the transport drops it: no exception on the hot path
        assert (await stats(worker)).dropped.get("internal_error", 0) == 0
        out._send_socket = duplicate
        data, _ = await forward(4)
        assert data[-40:] == bytes([4]) * 40
        await worker.handle(api.TransportClose(transport_id="out"))
        assert out._send_socket is None and duplicate.fileno() == -1  # the duplicate is closed with the transport
    finally:
        sender.close()
        receiver.close()


# ---------------------------------------------------------------- over the real channel


async def test_plain_messages_cross_the_channel(worker):
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    server_reader, server_writer = await asyncio.open_unix_connection(sock=left)
    client_reader, client_writer = await asyncio.open_unix_connection(sock=right)
    server = ChannelServer(server_reader, server_writer, worker.handle)
    serving = asyncio.ensure_future(server.serve())
    client = ChannelClient(client_reader, client_writer, lambda entity, message: None)
    try:
        info = await client.request(api.PlainTransportCreate(router_id="r", transport_id="p", srtp=True))
        assert isinstance(info, api.PlainTransportInfo) and info.srtp_key_base64
        created = await client.request(
            api.PlainProducerCreate(transport_id="p", kind="video", codec_name="vp8", clock_rate=90000, payload_type=96, ssrc=9)
        )
        assert isinstance(created, api.PlainProducerCreated) and isinstance(created.producer, api.ProducerInfo)
        consumer = await client.request(
            api.ConsumerCreate(transport_id="p", consumer_id="loop", producer_id=created.producer.producer_id)
        )
        assert isinstance(consumer, api.PlainConsumerInfo) and consumer.channels is None
        assert isinstance(await client.request(api.PlainTransportConnect(transport_id="p", remote_ip="127.0.0.1", remote_port=9)), Empty)
        with pytest.raises(ChannelError) as failure:
            await client.request(api.PlainTransportConnect(transport_id="p", remote_srtp_key_base64="nope"))
        assert failure.value.code == "invalid"
    finally:
        client.close()
        server.close()
        serving.cancel()


def test_plain_messages_round_trip_as_dicts():
    messages = [
        api.PlainTransportCreate(router_id="r", transport_id="t", listen_ip="0.0.0.0", port=5004, srtp=True),
        api.PlainTransportInfo(transport_id="t", ip="127.0.0.1", port=5004, srtp_crypto_suite="AES_CM_128_HMAC_SHA1_80", srtp_key_base64="a"),
        api.PlainTransportConnect(transport_id="t", remote_ip="127.0.0.1", remote_port=6000),
        api.PlainTransportConnect(transport_id="t"),
        api.PlainProducerCreate(transport_id="t", kind="audio", codec_name="opus", clock_rate=48000, payload_type=111, ssrc=1, channels=2),
        api.PlainProducerCreated(producer=api.ProducerInfo("p", "0", "audio", "microphone", "opus")),
        api.PlainConsumerInfo(consumer_id="c", producer_id="p", kind="video", codec_name="VP8", clock_rate=90000, payload_type=96, ssrc=5),
    ]
    for message in messages:
        assert message_class(message.NAME).from_dict(message.to_dict()) == message
    assert api.RESPONSES[api.PlainTransportCreate] is api.PlainTransportInfo
    assert api.RESPONSES[api.PlainProducerCreate] is api.PlainProducerCreated
    with pytest.raises(MessageError):
        api.PlainTransportConnect.from_dict({"transport_id": "t", "remote_port": "6000"})
