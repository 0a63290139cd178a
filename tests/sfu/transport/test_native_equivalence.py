"""The native forwarding path against the Python one (issue 15, item 2): the same packet
sequence through a worker's tree twice, once with each path, must reach every subscriber
as the same packets, byte for byte after SRTP decryption, with the same counts.

The tree is real (router, producers, WebRTC subscribe transports on a MediaSocket bound
to loopback, a plain SRTP transport, consumers, simulcast), as are the sockets and
libsrtp; only DTLS is skipped (each subscriber's SRTP session is made from a fixed key).
The sequence has a single-stream camera with transport-cc and abs-send-time renumbered
per subscriber, a microphone, a three-layer simulcast camera switched down and up, the
publisher's RTX and padding, NACKs answered with and without RTX, and probe padding."""

from __future__ import annotations

import asyncio
import random
import socket

import pylibsrtp
import pytest
from aiortc.rtcdtlstransport import RTCCertificate

from sfu.engine.bwe.pacer import padding_packet
from sfu.engine.consumer import extension_table
from sfu.engine.producer import Producer, ProducerParams
from sfu.engine.simulcast import SimulcastProducer
from sfu.engine.stats import Counters
from sfu.transport.plain import PlainTransport, srtp_session
from sfu.transport.srtp import FastSrtp
from sfu.transport.udp import MediaSocket
from sfu.transport.webrtc import WebRtcTransport
from sfu.wire import rtp
from tests.support.engine import VP8_DELTA, VP8_KEY
from tests.support.native import native_sender
from tests.support.simulcast import PT as SIM_PT
from tests.support.simulcast import Simulcast
from tests.support.tree import OPUS, VP8, Clock, new_tree, wire

pytestmark = pytest.mark.timeout(60)

PUBLISHER_EXTMAP = {rtp.URI_TRANSPORT_CC: 3, rtp.URI_ABS_SEND_TIME: 2, rtp.URI_AUDIO_LEVEL: 1}
# Three kinds of subscriber: the publisher's ids; other ids; no transport-cc at all.
SUBSCRIBER_EXTMAPS = (
    {rtp.URI_TRANSPORT_CC: 3, rtp.URI_ABS_SEND_TIME: 2, rtp.URI_AUDIO_LEVEL: 1},
    {rtp.URI_TRANSPORT_CC: 7, rtp.URI_ABS_SEND_TIME: 4},
    {rtp.URI_ABS_SEND_TIME: 2},
)
KEYS = [bytes([i + 1]) * 30 for i in range(len(SUBSCRIBER_EXTMAPS))]
_CERTIFICATE: list[RTCCertificate] = []


def _receiver() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def _drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


def _with_extensions(packet: bytes, audio: bool = False) -> bytes:
    """A packet of the test sources with the publisher's extensions (values from its seq)."""
    seq = packet[2] << 8 | packet[3]
    ts = int.from_bytes(packet[4:8], "big")
    ssrc = int.from_bytes(packet[8:12], "big")
    extensions = {3: seq.to_bytes(2, "big"), 2: (seq * 7).to_bytes(3, "big")}
    if audio:
        extensions[1] = bytes([0x80 | (seq % 100)])
    return rtp.build_packet(packet[1] & 0x7F, seq, ts, ssrc, packet[12:], marker=bool(packet[1] & 0x80),
                            extensions=extensions)


def _camera_packets() -> list[bytes]:
    packets = []
    for n in range(40):
        payload = VP8_KEY if n in (0, 25) else VP8_DELTA
        packets.append(_with_extensions(rtp.build_packet(100, (60000 + n) & 0xFFFF, 3000 * n, 1111, payload * 3)))
    return packets


async def _run(sender) -> tuple[list[list[bytes]], dict]:
    """The whole sequence through one path; what each receiver got (decrypted) and counts."""
    random.seed(20261207)
    loop = asyncio.get_running_loop()
    if not _CERTIFICATE:
        _CERTIFICATE.append(RTCCertificate.generateCertificate())
    _, router = new_tree()
    counters = Counters()
    media = MediaSocket(counters)
    media.use_native(sender)
    await loop.create_datagram_endpoint(lambda: media, local_addr=("127.0.0.1", 0), family=socket.AF_INET)
    clock = Clock()
    pub = wire(router, "pub", counters)
    pub.native = sender
    camera = _producer(pub, "cam", "video", 1111, clock, rtx_ssrc=1112)
    mic = _producer(pub, "mic", "audio", 2222, clock)
    simulcast = _simulcast(pub, clock)
    receivers, subscribers, consumers = [], [], []
    for index, extmap in enumerate(SUBSCRIBER_EXTMAPS):
        receiver = _receiver()
        receivers.append(receiver)
        sub = WebRtcTransport(f"sub{index}", router, "subscribe", media, _CERTIFICATE[0], counters,
                              lambda t, s: None)
        router.add_transport(sub)
        sub.tx = FastSrtp(srtp_session(KEYS[index], outbound=True))
        sub.addr = receiver.getsockname()
        sub.sender = media
        sub.connected = True
        sub._route_natively()
        assert (sub.native_to is not None) == (sender is not None)
        subscribers.append(sub)
        for made, codec in ((camera, VP8), (mic, OPUS), (simulcast, VP8)):
            consumer = sub.consume(f"{made.id}-{index}", made, codec)
            tcc_id = extmap.get(rtp.URI_TRANSPORT_CC, 0)
            consumer.activate(extension_table(made.params.extmap, extmap), tcc_id, use_rtx=index != 1)
            consumers.append(consumer)
    plain_receiver = _receiver()
    plain = PlainTransport("plain", router, counters, srtp=True)
    router.add_transport(plain)
    plain.local_key = bytes([9]) * 30  # the same key in both runs: replays compare as sent
    plain.tx = FastSrtp(srtp_session(plain.local_key, outbound=True))
    plain.use_native(sender)
    await plain.bind("127.0.0.1")
    plain.connect(plain_receiver.getsockname(), None)
    assert (plain.native_to is not None) == (sender is not None)
    consumers.append(plain.consume("cam-plain", camera, VP8))
    consumers.append(plain.consume("sim-plain", simulcast, VP8))
    receivers.append(plain_receiver)

    _feed(camera, mic, simulcast, clock, consumers, subscribers)
    await asyncio.sleep(0.2)
    got = [_drain(r) for r in receivers]
    keys = KEYS + [plain.local_key]
    decrypted = []
    for key, packets in zip(keys, got):
        decrypted.append(_decrypt(key, packets))
    counts = {
        "packets_sent": counters.packets_sent,
        "bytes_sent": counters.bytes_sent,
        "nack_answered": counters.nack_answered,
        "consumers": [(c.packets_sent, c.octets_sent) for c in consumers],
        "tcc": [s.tcc_seq for s in subscribers],
    }
    for sub in subscribers:
        sub.native_to = None
    await plain.close()
    media.udp.close()  # type: ignore[union-attr]
    for r in receivers:
        r.close()
    return decrypted, counts


def _decrypt(key: bytes, packets: list[bytes]) -> list[bytes]:
    """Each packet decrypted in order; a NACK answer resent under its own number (no RTX)
    is a replay to libsrtp: kept as it came (its encryption is deterministic too)."""
    rx = srtp_session(key, outbound=False)
    out = []
    for packet in packets:
        try:
            out.append(rx.unprotect(packet))
        except pylibsrtp.Error:
            out.append(b"replayed:" + packet)
    return out


def _producer(pub, name: str, kind: str, ssrc: int, clock: Clock, rtx_ssrc: int | None = None) -> Producer:
    params = ProducerParams(
        producer_id=name, kind=kind, source="camera" if kind == "video" else "microphone", mid=pub.allocate_mid(),
        codec_name="VP8" if kind == "video" else "opus", clock_rate=90000 if kind == "video" else 48000,
        payload_type=100 if kind == "video" else 109, ssrc=ssrc, extmap=dict(PUBLISHER_EXTMAP),
        rtx_payload_type=101 if rtx_ssrc else None, rtx_ssrc=rtx_ssrc,
    )  # fmt: skip
    made = Producer(params, pub, pub.counters, clock, stream_id=pub.id, listener=pub)
    pub.add_producer(made)
    return made


def _simulcast(pub, clock: Clock) -> SimulcastProducer:
    params = ProducerParams("sim", "video", "camera", pub.allocate_mid(), "VP8", 90000, SIM_PT, None,
                            dict(PUBLISHER_EXTMAP), rtx_payload_type=97, rids=("q", "h", "f"))
    made = SimulcastProducer(params, pub, pub.counters, clock, "pub", cache_size=256, listener=pub)
    for index, rid in enumerate(("q", "h", "f")):
        assert made.learn(1000 + index, rid, False)
        assert made.learn(2000 + index, rid, True)
    pub.add_producer(made)
    return made


def _feed(camera, mic, simulcast, clock, consumers, subscribers) -> None:
    cam_packets = _camera_packets()
    source = Simulcast(now=clock.now)
    sim_frames = source.frames(60, keyframes={0: [0, 1, 2], 20: [0], 40: [2]})
    for n in range(40):
        clock.now += 0.02
        if n != 7:  # a loss: the publisher's RTX brings it back two packets later
            camera.on_rtp(cam_packets[n], 1111)
        if n == 9:
            camera.on_rtp(rtp.wrap_rtx(cam_packets[7], 101, 1112, 500), 1112)
            camera.on_rtp(rtp.build_packet(101, 501, 0, 1112, padding=200), 1112)  # the publisher's probe
        mic.on_rtp(_with_extensions(rtp.build_packet(109, 100 + n, 960 * n, 2222, b"opus" * 20), audio=True), 2222)
        for spatial, packet, _ in sim_frames[n * 6 : n * 6 + 6]:
            simulcast.on_rtp(_with_extensions(packet), 1000 + spatial)
        if n == 15:  # every simulcast consumer down to the lowest layer, then back up
            for consumer in consumers:
                if hasattr(consumer, "selector"):
                    consumer.selector.set_target(0)
        if n == 30:
            for consumer in consumers:
                if hasattr(consumer, "selector"):
                    consumer.selector.set_target(2)
        if n in (20, 35):  # NACKs: answered from the caches (RTX or not, by subscriber)
            for consumer in consumers:
                if consumer.packets_sent:
                    last = consumer.last_seq_out
                    consumer.on_nack([((last - 3) & 0xFFFF, 0b101)])
    for sub in subscribers:  # probe padding on a video RTX stream, numbered as the pacer does
        sub.send_rtp(padding_packet(97, 1, 0, 0x1234, 3, sub.next_transport_sequence(), padding=100))


async def test_native_and_python_paths_send_the_same_packets():
    python_out, python_counts = await _run(None)
    native_out, native_counts = await _run(native_sender())
    assert [len(p) for p in python_out] == [len(p) for p in native_out]
    assert all(len(p) > 100 for p in python_out)  # every receiver got the whole sequence
    for index, (want, got) in enumerate(zip(python_out, native_out)):
        assert got == want, f"receiver {index}: first difference at packet " + str(
            next(i for i, (a, b) in enumerate(zip(want, got)) if a != b))
    assert native_counts == python_counts
    assert python_counts["nack_answered"] > 0
