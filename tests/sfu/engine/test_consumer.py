"""The forwarding engine without a network: producers, consumers, caches, keyframe rules."""

from __future__ import annotations

import struct

import pytest

from sfu.engine.consumer import HIDDEN_EXTENSION_ID, Consumer, extension_table
from sfu.engine.keyframes import KeyframeRequester
from sfu.engine.nack_cache import PacketCache
from sfu.engine.producer import Producer, ProducerParams
from sfu.wire.reception import ReceptionStats
from sfu.engine.stats import Counters
from sfu.wire import rtcp, rtp

URI_LEVEL = rtp.URI_AUDIO_LEVEL
URI_TCC = rtp.URI_TRANSPORT_CC
URI_MID = rtp.URI_MID

VP8_KEY = bytes([0x10, 0x00, 0x9D, 0x01, 0x2A]) + b"k" * 50  # S=1 PID=0, P bit 0
VP8_DELTA = bytes([0x10, 0x01]) + b"d" * 50  # P bit 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Sink:
    def __init__(self) -> None:
        self.rtcp_ssrc = 0xCAFE
        self.connected = True
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []
        self.tcc = 0

    def send_rtp(self, packet: bytes) -> None:
        self.rtp.append(packet)

    def send_rtcp(self, packet: bytes) -> None:
        self.rtcp.append(packet)

    def next_transport_sequence(self) -> int:
        self.tcc += 1
        return self.tcc


def make_producer(kind="video", extmap=None, clock=None, sink=None):
    params = ProducerParams(
        producer_id="p1",
        kind=kind,
        source="camera" if kind == "video" else "microphone",
        mid="0",
        codec_name="VP8" if kind == "video" else "opus",
        clock_rate=90000 if kind == "video" else 48000,
        payload_type=120 if kind == "video" else 109,
        ssrc=1111,
        rtx_ssrc=2222 if kind == "video" else None,
        rtx_payload_type=121 if kind == "video" else None,
        extmap=extmap or {},
    )
    counters = Counters()
    producer = Producer(params, sink or Sink(), counters, clock or FakeClock(), stream_id="t1", cache_size=64)
    return producer, counters


def make_consumer(producer, counters, sink=None, ssrc=5555, use_rtx=True, table=None, tcc_id=0):
    consumer = Consumer("c1", producer, sink or Sink(), "0", ssrc, 96, counters, rtx_ssrc=6666, rtx_payload_type=97)
    producer.add_consumer(consumer)
    consumer.activate(table, tcc_id, use_rtx)
    return consumer


def packet(seq, ts=1000, payload=VP8_DELTA, pt=120, ssrc=1111, extensions=None):
    return rtp.build_packet(pt, seq, ts, ssrc, payload=payload, extensions=extensions)


def header(data):
    return rtp.parse_header(data)


def test_video_consumer_waits_for_keyframe_and_asks_for_one():
    psink = Sink()
    producer, counters = make_producer(sink=psink)
    sink = Sink()
    make_consumer(producer, counters, sink)
    assert [type(p).__name__ for p in rtcp.parse_compound(psink.rtcp[0])] == ["Pli"]
    producer.on_rtp(packet(10), 1111)
    assert sink.rtp == []
    producer.on_rtp(packet(11, payload=VP8_KEY), 1111)
    producer.on_rtp(packet(12), 1111)
    assert len(sink.rtp) == 2
    first, second = (header(p) for p in sink.rtp)
    assert (first.ssrc, first.payload_type) == (5555, 96)
    assert (second.sequence_number - first.sequence_number) & 0xFFFF == 1
    assert producer.keyframe_waiters == 0


def test_sequence_stays_continuous_across_pause_and_timestamps_keep_offset():
    producer, counters = make_producer(kind="audio")
    sink = Sink()
    consumer = make_consumer(producer, counters, sink)
    for seq in range(100, 105):
        producer.on_rtp(packet(seq, ts=seq * 960, pt=109), 1111)
    consumer.set_paused(True)
    for seq in range(105, 150):
        producer.on_rtp(packet(seq, ts=seq * 960, pt=109), 1111)
    consumer.set_paused(False)
    producer.on_rtp(packet(150, ts=150 * 960, pt=109), 1111)
    seqs = [header(p).sequence_number for p in sink.rtp]
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == [0, 1, 2, 3, 4, 5]
    ts = [header(p).timestamp for p in sink.rtp]
    assert (ts[-1] - ts[0]) & 0xFFFFFFFF == 50 * 960  # timing kept: the gap is in time, not in seq


def test_nack_is_answered_from_cache_as_rtx():
    producer, counters = make_producer()
    sink = Sink()
    consumer = make_consumer(producer, counters, sink)
    producer.on_rtp(packet(1, payload=VP8_KEY), 1111)
    producer.on_rtp(packet(2), 1111)
    lost = header(sink.rtp[1]).sequence_number
    consumer.retransmit(lost)
    rtx_packet = sink.rtp[-1]
    h = header(rtx_packet)
    assert (h.ssrc, h.payload_type) == (6666, 97)
    restored = rtp.unwrap_rtx(rtx_packet, 96, 5555)
    assert restored == sink.rtp[1]
    assert counters.nack_answered == 1
    consumer.retransmit((lost + 1000) & 0xFFFF)
    assert counters.nack_missed == 1


def test_extension_ids_are_rewritten_and_unknown_ones_hidden():
    publisher = {URI_LEVEL: 5, URI_MID: 9, URI_TCC: 7}
    subscriber = {URI_LEVEL: 1, URI_TCC: 3}
    table = extension_table(publisher, subscriber)
    producer, counters = make_producer(kind="audio", extmap=publisher)
    sink = Sink()
    make_consumer(producer, counters, sink, table=table, tcc_id=3)
    ext = {5: b"\x80", 9: b"0", 7: b"\x00\x10"}
    producer.on_rtp(packet(1, pt=109, extensions=ext), 1111)
    out = header(sink.rtp[0]).extensions
    assert out[1] == b"\x80"
    assert out[HIDDEN_EXTENSION_ID] == b"0"
    assert out[3] == struct.pack("!H", 1)  # our transport-wide sequence, not the publisher's


def test_identity_extension_table_is_none():
    ids = {URI_LEVEL: 1, URI_TCC: 3}
    assert extension_table(ids, dict(ids)) is None


def test_sender_report_translated_onto_consumer_timeline():
    producer, counters = make_producer(kind="audio")
    sink = Sink()
    consumer = make_consumer(producer, counters, sink)
    producer.on_rtp(packet(1, ts=48000, pt=109), 1111)
    producer.on_sender_report(0x1234567800000000, 48000)
    sr = rtcp.parse_compound(sink.rtcp[-1])[0]
    assert isinstance(sr, rtcp.SenderReport)
    assert sr.ssrc == 5555
    assert sr.ntp_timestamp == 0x1234567800000000
    assert sr.rtp_timestamp == header(sink.rtp[0]).timestamp
    assert sr.packet_count == consumer.packets_sent == 1


def test_rtx_from_publisher_is_restored_and_gap_nacked():
    psink = Sink()
    producer, counters = make_producer(sink=psink)
    sink = Sink()
    make_consumer(producer, counters, sink)
    producer.on_rtp(packet(1, payload=VP8_KEY), 1111)
    producer.on_rtp(packet(3), 1111)
    nacks = [p for raw in psink.rtcp for p in rtcp.parse_compound(raw) if isinstance(p, rtcp.Nack)]
    assert nacks and nacks[0].lost == [2]
    repaired = rtp.wrap_rtx(packet(2), 121, 2222, 77)
    producer.on_rtp(repaired, 2222)
    assert counters.rtx_received == 1
    assert len(sink.rtp) == 3
    producer.on_rtp(repaired, 2222)  # a duplicate repair is not forwarded twice
    assert len(sink.rtp) == 3


def test_wrong_payload_type_is_counted_and_dropped():
    producer, counters = make_producer(kind="audio")
    sink = Sink()
    make_consumer(producer, counters, sink)
    producer.on_rtp(packet(1, pt=13), 1111)
    assert sink.rtp == [] and counters.dropped["unexpected_payload_type"] == 1


def test_receiver_report_block_counts_loss():
    clock = FakeClock()
    producer, _ = make_producer(kind="audio", clock=clock)
    for seq in (1, 2, 3, 5, 6):
        producer.on_rtp(packet(seq, pt=109), 1111)
    producer.on_sender_report(0x0001000200030004, 0)
    clock.now += 0.5
    block = producer.report_block()
    assert block.highest_sequence == 6 and block.cumulative_lost == 1
    assert block.fraction_lost == (1 << 8) // 6
    assert block.lsr == 0x00020003 and block.dlsr == 32768


def test_reception_handles_wraparound():
    stats = ReceptionStats()
    for seq in (65534, 65535, 0, 1):
        stats.update(seq)
    assert stats.report_values(0.0)[2] == 65536 + 1


def test_packet_cache_checks_sequence():
    cache = PacketCache(4)
    cache.put(1, packet(1))
    cache.put(5, packet(5))  # same slot
    assert cache.get(1) is None and cache.get(5) is not None
    with pytest.raises(ValueError):
        PacketCache(3)


def test_keyframe_requests_are_rate_limited_but_not_lost():
    requester = KeyframeRequester(0.5)
    assert requester.request(0.0)
    assert not requester.request(0.1)
    assert not requester.poll(0.3)
    assert requester.poll(0.6)
    assert not requester.poll(2.0)


def test_transport_feedback_reports_arrivals_and_losses():
    from sfu.engine.twcc import TransportCcRecorder

    recorder = TransportCcRecorder()
    assert recorder.take_feedback(1, 2) is None
    for seq, at in ((65534, 1_000_000), (65535, 1_010_000), (1, 1_030_000)):
        recorder.record(seq, at)
    packet = recorder.take_feedback(1, 2)
    (feedback,) = rtcp.parse_compound(packet)
    assert isinstance(feedback, rtcp.TransportFeedback)
    assert (feedback.base_sequence, feedback.status_count, feedback.fb_count) == (65534, 4, 0)
    recorder.record(2, 1_040_000)
    (feedback,) = rtcp.parse_compound(recorder.take_feedback(1, 2))
    assert (feedback.base_sequence, feedback.status_count, feedback.fb_count) == (2, 1, 1)


def test_can_send_is_what_forward_waits_for_keyframes_aside():
    producer, counters = make_producer(kind="audio")
    sink = Sink()
    consumer = Consumer("c1", producer, sink, "0", 5555, 96, counters)
    producer.add_consumer(consumer)
    assert not consumer.can_send()  # the subscriber has not accepted the m-line yet
    consumer.activate(None, 0, False)
    assert consumer.can_send()
    consumer.set_paused(True)
    assert not consumer.can_send()
    consumer.set_paused(False)
    sink.connected = False  # e.g. a WebRTC transport whose DTLS went down
    assert not consumer.can_send()
    producer.on_rtp(packet(1, pt=109), 1111)
    assert sink.rtp == []
    sink.connected = True
    producer.on_rtp(packet(2, pt=109), 1111)
    assert len(sink.rtp) == 1


class Owner:
    def __init__(self) -> None:
        self.heard: list[str] = []

    def on_producer_closed(self, producer) -> None:
        self.heard.append(producer.id)

    def on_consumer_closed(self, consumer) -> None:
        self.heard.append(consumer.id)


def test_owners_hear_once_when_a_producer_or_consumer_closes():
    producer_owner, consumer_owner = Owner(), Owner()
    producer, counters = make_producer()
    producer.listener = producer_owner
    first = Consumer("c1", producer, Sink(), "0", 1, 96, counters, listener=consumer_owner)
    second = Consumer("c2", producer, Sink(), "1", 2, 96, counters, listener=consumer_owner)
    for consumer in (first, second):
        producer.add_consumer(consumer)
        consumer.activate(None, 0, False)
    assert producer.keyframe_waiters == 2
    first.close()
    first.close()
    producer.close()
    producer.close()
    assert consumer_owner.heard == ["c1", "c2"] and producer_owner.heard == ["p1"]
    assert producer.keyframe_waiters == 0 and producer.consumers == []
