"""sfu.engine.consumer without a network, fed by a real producer: waiting for a keyframe,
sequence and timestamps across pauses, NACKs answered as RTX, header extensions
renumbered, sender reports translated, when a consumer may send.

The producer's own rules are in test_producer.py, the tuned forwarding path against a
reference rewrite in test_consumer_hotpath.py."""

from __future__ import annotations

import struct

from sfu.engine.consumer import HIDDEN_EXTENSION_ID, Consumer, extension_table
from sfu.wire import rtcp, rtp
from tests.support.engine import (
    URI_LEVEL,
    URI_MID,
    URI_TCC,
    VP8_KEY,
    Sink,
    header,
    make_consumer,
    make_producer,
    packet,
)


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
    consumer.on_nack([(lost, 0)])
    rtx_packet = sink.rtp[-1]
    h = header(rtx_packet)
    assert (h.ssrc, h.payload_type) == (6666, 97)
    restored = rtp.unwrap_rtx(rtx_packet, 96, 5555)
    assert restored == sink.rtp[1]
    assert counters.nack_answered == 1
    consumer.on_nack([((lost + 1000) & 0xFFFF, 0)])
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
