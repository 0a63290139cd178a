"""Send-side bandwidth estimation in a subscribe WebRtcTransport, without a network: its
SRTP and socket are stand-ins that keep what would be sent (protect adds a 10-byte tag,
as AES-CM-128/SHA1-80 does), the consumers and producers are real.

Every packet sent with a transport-wide number is logged with its protected size; the
subscriber's feedback about them reaches the estimator; a probe cluster leaves as
padding on a video consumer's RTX stream, paced, and a receiver's feedback about it
lifts the estimate."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.rtcdtlstransport import RTCCertificate

from sfu.clockwork import Clockwork
from sfu.engine.bwe.pacer import PACE_INTERVAL_US
from sfu.engine.consumer import Consumer
from sfu.engine.notice_clock import NoticeClock
from sfu.engine.stats import Counters
from sfu.transport.udp import MediaSocket
from sfu.transport.webrtc import WebRtcTransport
from sfu.wire import rtcp, rtp
from tests.support.engine import VP8_DELTA, VP8_KEY
from tests.support.tree import OPUS, VP8, new_tree, producer, wire

TAG = 10
TCC_ID = 5
_CERTIFICATE: list[RTCCertificate] = []


class FakeSrtp:
    def protect(self, packet: bytes) -> bytes:
        return packet + bytes(TAG)

    def protect_rtcp(self, packet: bytes) -> bytes:
        return packet + bytes(TAG + 4)


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr) -> None:
        self.sent.append(data)


def subscriber(direction: str = "subscribe"):
    """A connected WebRTC transport and a publisher (a plain test wire) in one router."""
    if not _CERTIFICATE:
        _CERTIFICATE.append(RTCCertificate.generateCertificate())
    _, router = new_tree()
    counters = Counters()
    transport = WebRtcTransport(
        "sub", router, direction, MediaSocket(counters), _CERTIFICATE[0], counters, lambda t, s: None
    )
    router.add_transport(transport)
    transport.socket = transport.sender = FakeSocket()  # type: ignore[assignment]
    transport.tx = FakeSrtp()  # type: ignore[assignment]
    transport.addr = ("192.0.2.1", 5000)
    transport.connected = True
    return transport, wire(router, "pub")


def consume(transport: WebRtcTransport, source, name: str, ssrc: int, kind: str = "video", rtx: bool = True):
    made = producer(source, name, ssrc, kind, extmap={rtp.URI_TRANSPORT_CC: TCC_ID})
    consumer = transport.consume(f"c-{name}", made, VP8 if kind == "video" else OPUS)
    consumer.activate(None, TCC_ID, rtx)
    return made, consumer


def media(made, seq: int, keyframe: bool = False, ssrc: int = 1111) -> None:
    packet = rtp.build_packet(
        made.params.payload_type, seq, 3000 * seq, ssrc, VP8_KEY if keyframe else VP8_DELTA,
        extensions={TCC_ID: b"\x00\x00"},
    )  # fmt: skip
    made.on_rtp(packet, ssrc)


def tcc_of(packet: bytes) -> int:
    where = rtp.find_extension(packet, TCC_ID)
    assert where is not None
    return (packet[where[0]] << 8) | packet[where[0] + 1]


def test_only_subscribe_transports_estimate():
    publish, _ = subscriber("publish")
    assert publish.estimator is None and publish.bandwidth is None
    sub, _ = subscriber()
    assert sub.estimator is not None and sub.estimator.estimate_bps > 0 and sub.probe_target_bps == 0


def test_every_packet_with_a_transport_wide_number_is_logged_with_its_protected_size():
    sub, source = subscriber()
    camera, _ = consume(sub, source, "cam", 1111)
    media(camera, 1, keyframe=True)
    for seq in range(2, 11):
        media(camera, seq)
    sent = sub.socket.sent  # type: ignore[attr-defined]
    numbers = [tcc_of(packet) for packet in sent]
    assert len(sent) == 10 and numbers == [(numbers[0] + i) & 0xFFFF for i in range(10)]
    assert sub.pending_tcc == -1
    # The subscriber reports them all received: each comes back with the size we sent.
    report = rtcp.build_transport_feedback(1, 2, numbers[0], 0, 1_000_000, [1_000_000 + i * 1000 for i in range(10)])
    results = sub.estimator.send_log.match(rtcp.parse_compound(report)[0])  # type: ignore[union-attr]
    assert [(r.seq & 0xFFFF, r.size) for r in results] == [(n, len(p)) for n, p in zip(numbers, sent)]
    assert all(r.send_us > 0 and r.probe_cluster is None for r in results)


def test_a_packet_not_sent_leaves_no_number_behind():
    sub, source = subscriber()
    camera, _ = consume(sub, source, "cam", 1111)
    media(camera, 1, keyframe=True)
    sub.addr = None  # consent lapsed: nothing goes out
    media(camera, 2)
    assert sub.pending_tcc == -1 and sub.estimator.send_log.newest_seq == tcc_of(sub.socket.sent[0])  # type: ignore


def test_feedback_from_the_subscriber_reaches_its_estimator_and_a_change_is_told():
    sub, source = subscriber()
    camera, _ = consume(sub, source, "cam", 1111)
    told: list[int] = []
    sub.on_estimate = lambda transport, bps: told.append(bps)
    media(camera, 1, keyframe=True)
    first = tcc_of(sub.socket.sent[0])  # type: ignore[attr-defined]
    compound = rtcp.build_rr(1, []) + rtcp.build_transport_feedback(1, 2, first, 0, 1_000_000, [1_000_000])
    sub._route_rtcp(compound)
    assert sub.estimator.feedbacks == 1 and sub.counters.transport_feedback_received == 1  # type: ignore
    sub._route_rtcp(rtcp.build_remb(1, 120_000, [2]))
    assert sub.estimator.estimate_bps == 120_000 and told[-1] == 120_000  # type: ignore[union-attr]


def test_a_publish_transport_ignores_feedback_as_before():
    publish, _ = subscriber("publish")
    publish._route_rtcp(rtcp.build_transport_feedback(1, 2, 1, 0, 0, [0]) + rtcp.build_remb(1, 1, []))
    assert publish.counters.transport_feedback_received == publish.counters.remb_received == 0


def probe_until_done(sub: WebRtcTransport, start_us: int) -> int:
    now = start_us
    pacing = sub.tick_bandwidth(now)
    while pacing:
        now += PACE_INTERVAL_US
        pacing = sub.pace_probe(now)
    return now


def test_a_probe_is_padding_on_the_rtx_stream_of_a_video_consumer_paced_at_its_rate():
    sub, source = subscriber()
    consume(sub, source, "mic", 2222, kind="audio")
    camera, video = consume(sub, source, "cam", 1111)
    media(camera, 1, keyframe=True)
    media_sent = len(sub.socket.sent)  # type: ignore[attr-defined]
    rtx_seq_before = video.rtx_seq
    sub.probe_target_bps = 3_000_000
    start = 50_000_000
    assert sub.tick_bandwidth(start) and sub.pacer is not None
    cluster = sub.pacer.cluster
    end = start
    while sub.pace_probe(end + PACE_INTERVAL_US):
        end += PACE_INTERVAL_US
    end += PACE_INTERVAL_US
    probes = sub.socket.sent[media_sent:]  # type: ignore[attr-defined]
    assert cluster.target_bps == 900_000  # start: 3 × the 300 kbit/s start estimate
    assert len(probes) >= cluster.min_packets and sum(map(len, probes)) >= cluster.min_bytes
    assert sum(map(len, probes)) - len(probes[-1]) < cluster.min_bytes  # not a packet more than needed
    last_media_tcc = tcc_of(sub.socket.sent[media_sent - 1])  # type: ignore[attr-defined]
    for index, packet in enumerate(probes):
        header = rtp.parse_header(packet[:-TAG])
        assert header.padding and header.payload_end == header.header_length  # padding only
        assert (header.ssrc, header.payload_type) == (video.rtx_ssrc, video.rtx_payload_type)
        assert header.sequence_number == (rtx_seq_before + 1 + index) & 0xFFFF
        assert tcc_of(packet) == (last_media_tcc + 1 + index) & 0xFFFF
    assert video.rtx_seq == (rtx_seq_before + len(probes)) & 0xFFFF
    assert sub.counters.bwe_probes == 1 and sub.counters.bwe_probe_packets == len(probes)
    assert sub.counters.bwe_probe_bytes == sum(map(len, probes))
    assert 30_000 <= end - start <= 50_000  # 40 ms of cluster, at 5 ms ticks
    assert sub.pacer is None and not sub.pace_probe(end + PACE_INTERVAL_US)


def test_the_subscriber_s_feedback_about_a_probe_lifts_the_estimate():
    sub, source = subscriber()
    camera, _ = consume(sub, source, "cam", 1111)
    media(camera, 1, keyframe=True)
    told: list[int] = []
    sub.on_estimate = lambda transport, bps: told.append(bps)
    sub.probe_target_bps = 3_000_000
    first = len(sub.socket.sent)  # type: ignore[attr-defined]
    start = 50_000_000
    end = probe_until_done(sub, start)
    probes = sub.socket.sent[first:]  # type: ignore[attr-defined]
    # An ample path: each arrives 30 ms after it left, as spaced as it was sent.
    send_times = [result[1] for result in _log(sub, probes)]
    arrivals = [t - start + 2_000_000 + 30_000 for t in send_times]
    report = rtcp.build_transport_feedback(1, 2, tcc_of(probes[0]), 0, 2_000_000, arrivals)
    sub._route_rtcp(report)
    sub.tick_bandwidth(end + 100_000)
    assert sub.estimator.estimate_bps >= 0.9 * 900_000 and told and told[-1] == sub.estimator.estimate_bps  # type: ignore


def _log(sub: WebRtcTransport, packets: list[bytes]):
    log = sub.estimator.send_log  # type: ignore[union-attr]
    out = []
    for packet in packets:
        full = log.newest_seq - ((log.newest_seq - tcc_of(packet)) & 0xFFFF)
        out.append((full, log.send_time(full)))
    return out


@pytest.mark.parametrize("case", ["no_rtx", "audio_only", "no_tcc", "wants_no_more"])
def test_no_probe_without_a_carrier_or_a_reason(case):
    sub, source = subscriber()
    if case == "no_rtx":
        consume(sub, source, "cam", 1111, rtx=False)
    elif case == "audio_only":
        consume(sub, source, "mic", 2222, kind="audio")
    elif case == "no_tcc":
        made = producer(source, "cam", 1111)
        sub.consume("c", made, VP8).activate(None, 0, True)
    else:
        consume(sub, source, "cam", 1111)
    sub.probe_target_bps = 250_000 if case == "wants_no_more" else 5_000_000
    assert not sub.tick_bandwidth(10_000_000)
    assert sub.counters.bwe_probes == 0 and sub.estimator.stats()["probes"] == 0  # type: ignore[union-attr]
    assert sub.socket.sent == []  # type: ignore[attr-defined]


def test_a_probe_stops_when_its_carrier_goes():
    sub, source = subscriber()
    _, video = consume(sub, source, "cam", 1111)
    sub.probe_target_bps = 3_000_000
    assert sub.tick_bandwidth(10_000_000)
    video.close()
    assert not sub.pace_probe(10_005_000) and sub.pacer is None


def test_a_paused_consumer_carries_a_probe_only_when_no_other_can():
    sub, source = subscriber()
    _, paused = consume(sub, source, "cam", 1111)
    _, playing = consume(sub, source, "screen", 3333)
    paused.set_paused(True)
    assert sub._probe_consumer() is playing
    playing.set_paused(True)
    assert sub._probe_consumer() is paused


def test_consumers_are_real_consumers():
    sub, source = subscriber()
    _, video = consume(sub, source, "cam", 1111)
    assert isinstance(video, Consumer) and video.rtx_ssrc is not None and video.rtx_payload_type == 97


async def test_the_clockwork_starts_a_probe_and_paces_it_to_the_end_then_disarms():
    sub, source = subscriber()
    consume(sub, source, "cam", 1111)
    publish, _ = subscriber("publish")
    sub.router.registry.transports["webrtc-publish"] = publish  # no estimator: skipped
    sub.probe_target_bps = 3_000_000
    clockwork = Clockwork(sub.router.registry, NoticeClock(), 1.0)
    try:
        clockwork.tick_bandwidth()
        assert clockwork._probe_timer is not None and sub.pacer is not None
        cluster = sub.pacer.cluster
        for _ in range(100):  # the cluster lasts 40 ms; 5 ms ticks, or later on a busy machine
            await asyncio.sleep(PACE_INTERVAL_US / 1e6)
            if clockwork._probe_timer is None:
                break
        assert clockwork._probe_timer is None and sub.pacer is None
        assert sub.counters.bwe_probe_packets >= cluster.min_packets
        assert sub.counters.bwe_probe_bytes >= cluster.min_bytes
        clockwork.tick_bandwidth()  # the cluster is in flight until its feedback: no other
        assert sub.counters.bwe_probes == 1 and clockwork._probe_timer is None
    finally:
        clockwork.stop()
