"""sfu.engine.producer without a network: repairs from the publisher's RTX, NACKs for gaps,
payload types it does not expect, its receiver-report block, and closing (each owner hears
once, consumers go with their producer)."""

from __future__ import annotations

from sfu.engine.consumer import Consumer
from sfu.wire import rtcp, rtp
from tests.support.engine import VP8_KEY, FakeClock, Sink, make_consumer, make_producer, packet


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
