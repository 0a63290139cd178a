"""sfu.engine.simulcast without a network: a producer of three rid layers (SSRCs learned on
first sight), its per-layer cache, stats, NACKs and PLIs, and consumers that forward one
layer each as one seamless stream, switched by the subscriber's tile."""

from __future__ import annotations

import pytest

from sfu.engine.consumer import Consumer
from sfu.engine.producer import ProducerParams
from sfu.engine.simulcast import SimulcastConsumer, SimulcastProducer
from sfu.engine.stats import Counters
from sfu.wire import rtcp, rtp
from tests.support.engine import FakeClock, Sink
from tests.support.simulcast import PT, Simulcast, assert_seamless, parse_out

RIDS = ("q", "h", "f")
SIZES = ((320, 180), (640, 360), (1280, 720))


def make(clock=None, rids=RIDS, codec="VP8"):
    params = ProducerParams("p1", "video", "camera", "1", codec, 90000, PT, None, {},
                            rtx_payload_type=97, rids=rids)
    sink = Sink()
    producer = SimulcastProducer(params, sink, Counters(), clock or FakeClock(), "t1", cache_size=256)
    for index, rid in enumerate(rids):
        assert producer.learn(1000 + index, rid, False)
        assert producer.learn(2000 + index, rid, True)
    return producer, sink


class LayerSink(Sink):
    """Keeps, with each packet, the layer its consumer was forwarding."""

    consumer = None

    def __init__(self) -> None:
        super().__init__()
        self.layers: list[int] = []

    def send_rtp(self, packet: bytes) -> None:
        super().send_rtp(packet)
        self.layers.append(self.consumer.selector.munger.layer)


def subscribe(producer, ssrc=5555, consumer_id="c1", use_rtx=False):
    sink = LayerSink()
    consumer = SimulcastConsumer(consumer_id, producer, sink, "0", ssrc, 100, producer.counters,
                                 rtx_ssrc=ssrc + 1, rtx_payload_type=101)
    sink.consumer = consumer
    producer.add_consumer(consumer)
    consumer.activate(None, 0, use_rtx)
    return consumer, sink


def sized(packet: bytes, spatial: int) -> bytes:
    """A keyframe of the test source with the VP8 frame size of its layer."""
    where = packet.find(b"\x9d\x01\x2a")
    if where < 0:
        return packet
    width, height = SIZES[spatial]
    return packet[: where + 3] + width.to_bytes(2, "little") + height.to_bytes(2, "little") + packet[where + 7 :]


def feed(producer, clock, packets):
    for spatial, packet, now in packets:
        clock.now = now
        producer.on_rtp(sized(packet, spatial), 1000 + spatial)


def outs(sink):
    return [parse_out(p, layer, 0) for p, layer in zip(sink.rtp, sink.layers)]


def test_layers_are_bound_by_rid_once():
    producer, _ = make()
    assert producer.ssrcs() == [1000, 2000, 1001, 2001, 1002, 2002]
    assert not producer.learn(1003, "x", False)  # no such rid
    assert not producer.learn(1003, "q", False)  # q has its SSRC
    assert producer.learn(1000, "q", False)  # the same again is fine
    with pytest.raises(ValueError):
        make(rids=("only",))


def test_a_consumer_gets_the_top_layer_from_a_keyframe_with_its_own_numbers():
    clock = FakeClock()
    producer, psink = make(clock)
    consumer, sink = subscribe(producer)
    source = Simulcast()
    feed(producer, clock, source.frames(3))
    assert sink.rtp == []  # no keyframe yet: waiting, asking layer 2 (f) for one
    plis = [p for raw in psink.rtcp for p in rtcp.parse_compound(raw) if isinstance(p, rtcp.Pli)]
    assert [p.media_ssrc for p in plis] == [1002]
    feed(producer, clock, source.frames(10, keyframes={0: [0, 1, 2]}))
    out = outs(sink)
    assert out and all(o.ssrc == 5555 for o in out)
    assert len(out) == 10 * 3  # layer 2: three packets a frame
    assert out[0].keyframe
    assert {rtp.parse_header(p).payload_type for p in sink.rtp} == {100}
    assert consumer.selector.current == 2


def test_tile_size_switches_layers_seamlessly_and_hidden_sends_nothing():
    clock = FakeClock()
    producer, psink = make(clock)
    consumer, sink = subscribe(producer)
    source = Simulcast()
    feed(producer, clock, source.frames(5, keyframes={0: [0, 1, 2]}))
    assert [(layer.width, layer.height) for layer in producer.layers] == list(SIZES)
    for height, layer in ((180, 0), (700, 2), (200, 1), (360, 1), (90, 0), (2000, 2)):
        consumer.set_viewport(height * 16 // 9, height, True)
        assert consumer.selector.target == layer
        psink.rtcp.clear()
        feed(producer, clock, source.frames(4))
        plis = [p.media_ssrc for raw in psink.rtcp for p in rtcp.parse_compound(raw) if isinstance(p, rtcp.Pli)]
        if consumer.selector.current != layer:
            assert 1000 + layer in plis
        feed(producer, clock, source.frames(4, keyframes={0: [layer]}))
        assert consumer.selector.current == layer
    out = outs(sink)
    assert_seamless(out)
    switched = [o.spatial for prev, o in zip([None, *out], out) if prev is None or prev.spatial != o.spatial]
    assert switched == [2, 0, 2, 1, 0, 2]
    sent = len(sink.rtp)
    consumer.set_viewport(320, 180, False)
    feed(producer, clock, source.frames(10, keyframes={0: [0, 1, 2]}))
    assert len(sink.rtp) == sent
    consumer.set_viewport(320, 180, True)
    feed(producer, clock, source.frames(3, keyframes={1: [0]}))
    assert len(sink.rtp) > sent and outs(sink)[len(out)].keyframe


def test_a_non_simulcast_producer_keeps_consumer_forward():
    from sfu.engine.producer import Producer
    from sfu.transport.base import Transport

    assert Transport.consume  # the transport picks the class by the producer
    params = ProducerParams("p2", "video", "camera", "0", "VP8", 90000, PT, 1111, {})
    producer = Producer(params, Sink(), Counters(), FakeClock(), "t1")
    assert not isinstance(producer, SimulcastProducer)
    assert SimulcastConsumer.forward is Consumer.forward


def test_nack_is_answered_from_the_layer_it_came_from():
    clock = FakeClock()
    producer, _ = make(clock)
    consumer, sink = subscribe(producer, use_rtx=True)
    source = Simulcast()
    feed(producer, clock, source.frames(6, keyframes={0: [0, 1, 2]}))
    first = rtp.parse_header(sink.rtp[4])
    before = len(sink.rtp)
    consumer.on_nack([(first.sequence_number, 0)])
    assert producer.counters.nack_answered == 1
    repaired = sink.rtp[before]
    header = rtp.parse_header(repaired)
    assert header.ssrc == 5556 and header.payload_type == 101
    original = rtp.unwrap_rtx(repaired, 100, 5555)
    assert original == sink.rtp[4]
    consumer.on_nack([((first.sequence_number + 3000) & 0xFFFF, 0)])  # never sent
    assert producer.counters.nack_missed == 1


def test_gaps_nacked_and_rtx_restored_per_layer():
    clock = FakeClock()
    producer, psink = make(clock)
    subscribe(producer)
    source = Simulcast()
    packets = source.frames(4, keyframes={0: [0, 1, 2]})
    layer1 = [p for p in packets if p[0] == 1]
    lost = layer1[3]
    feed(producer, clock, [p for p in packets if p is not lost])
    nacks = [p for raw in psink.rtcp for p in rtcp.parse_compound(raw) if isinstance(p, rtcp.Nack)]
    assert [(n.media_ssrc, n.lost) for n in nacks] == [(1001, [rtp.parse_header(lost[1]).sequence_number])]
    repaired = rtp.wrap_rtx(lost[1], 97, 2001, 9)
    producer.on_rtp(repaired, 2001)
    assert producer.counters.rtx_received == 1
    assert producer.layers[1].cache.get(rtp.parse_header(lost[1]).sequence_number) == lost[1]
    blocks = producer.report_blocks()
    assert [b.ssrc for b in blocks] == [1000, 1001, 1002]


def test_sender_reports_and_plis_follow_the_forwarded_layer():
    clock = FakeClock()
    producer, psink = make(clock)
    consumer, sink = subscribe(producer)
    source = Simulcast()
    feed(producer, clock, source.frames(3, keyframes={0: [0, 1, 2]}))
    producer.on_sender_report(0x0001000200030004, 1234, 1000)  # layer 0: not forwarded
    assert sink.rtcp == []
    producer.on_sender_report(0x0001000200030004, 1234, 1002)
    (sr,) = rtcp.parse_compound(sink.rtcp[0])
    assert sr.ssrc == 5555 and sr.rtp_timestamp == (1234 + consumer.selector.munger.ts_offset) & 0xFFFFFFFF
    psink.rtcp.clear()
    clock.now += 10
    consumer.request_keyframe()  # the subscriber's PLI: the layer it gets
    (pli,) = rtcp.parse_compound(psink.rtcp[0])
    assert pli.media_ssrc == 1002


def test_pause_and_resume_restart_at_a_keyframe_without_a_gap():
    clock = FakeClock()
    producer, _ = make(clock)
    consumer, sink = subscribe(producer)
    source = Simulcast()
    feed(producer, clock, source.frames(3, keyframes={0: [0, 1, 2]}))
    consumer.set_paused(True)
    feed(producer, clock, source.frames(3))
    sent = len(sink.rtp)
    consumer.set_paused(False)
    feed(producer, clock, source.frames(2))
    assert len(sink.rtp) == sent  # delta frames: waiting for a keyframe
    feed(producer, clock, source.frames(2, keyframes={0: [2]}))
    assert_seamless(outs(sink))


def test_extensions_renumbered_and_transport_sequence_per_subscriber():
    from sfu.engine.consumer import extension_table

    clock = FakeClock()
    producer, _ = make(clock)
    producer.params.extmap = {rtp.URI_TRANSPORT_CC: 3, rtp.URI_RID: 10, rtp.URI_ABS_SEND_TIME: 2}
    subscriber = {rtp.URI_TRANSPORT_CC: 5, rtp.URI_ABS_SEND_TIME: 2}
    table = extension_table(producer.params.extmap, subscriber)
    sinks = []
    for n in range(2):
        sink = LayerSink()
        consumer = SimulcastConsumer(f"c{n}", producer, sink, str(n), 5555 + n, 100, producer.counters)
        sink.consumer = consumer
        producer.add_consumer(consumer)
        consumer.activate(table, 5, False)
        sinks.append(sink)
    source = Simulcast()
    for spatial, packet, now in source.frames(6, keyframes={0: [0, 1, 2]}):
        header = rtp.parse_header(packet)
        tagged = rtp.build_packet(PT, header.sequence_number, header.timestamp, header.ssrc,
                                  payload=packet[header.header_length:], marker=header.marker,
                                  extensions={3: b"\x00\x07", 10: b"qhf"[spatial:spatial + 1], 2: b"abc"})
        clock.now = now
        producer.on_rtp(sized(tagged, spatial), 1000 + spatial)
    for n, sink in enumerate(sinks):
        out = outs(sink)
        assert len(out) == 18
        assert_seamless(out)
        tcc = [int.from_bytes(ext, "big") for raw in sink.rtp
               for ext_id, ext in rtp.parse_header(raw).extensions.items() if ext_id == 5]
        assert tcc == list(range(1, 19))
        for raw in sink.rtp:
            extensions = rtp.parse_header(raw).extensions
            assert extensions[2] == b"abc" and 10 not in extensions and 3 not in extensions


def test_a_consumer_settled_on_a_layer_that_stops_falls_back_and_returns():
    # The producer gives a settled consumer only its layer's packets, and the others' once
    # that layer has stopped (dynacast, the publisher's bandwidth): it moves down, then up.
    clock = FakeClock()
    producer, psink = make(clock)
    consumer, sink = subscribe(producer)
    source = Simulcast(fps=15)
    feed(producer, clock, source.frames(5, keyframes={0: [0, 1, 2]}))
    assert consumer.selector.settled == 2
    source.layers[2].active = False
    feed(producer, clock, source.frames(30, keyframes={20: [1]}))  # 2 s: layer 2 stopped after 1 s
    assert consumer.selector.current == 1 and sink.layers[-1] == 1
    source.layers[2].active = True
    feed(producer, clock, source.frames(10, keyframes={3: [2]}))
    assert consumer.selector.settled == 2 and sink.layers[-1] == 2
    assert_seamless(outs(sink))


def test_h264_layers_switch_at_an_idr_with_assumed_heights():
    from tests.sfu.engine.test_layers import h264_packets

    clock = FakeClock()
    params = ProducerParams("p1", "video", "camera", "1", "H264", 90000, 102, None, {}, rids=("l", "h"))
    producer = SimulcastProducer(params, Sink(), Counters(), clock, "t1")
    producer.learn(1, "l", False)
    producer.learn(2, "h", False)
    assert producer.heights() == [360, 720]  # nothing to read a size from: 720p halved
    consumer, sink = subscribe(producer)
    consumer.set_viewport(640, 360, True)
    assert consumer.selector.target == 0
    low = h264_packets(1, 100, 0, 12, idr_at=(0,), now=100.0, layer=0)
    high = h264_packets(2, 60000, 777, 12, idr_at=(0, 8), now=100.0, layer=1)
    packets = sorted(low + high, key=lambda p: p[2])
    for spatial, packet, now in packets[:8]:
        clock.now = now
        producer.on_rtp(packet, 1 + spatial)
    consumer.set_viewport(1280, 720, True)
    for spatial, packet, now in packets[8:]:
        clock.now = now
        producer.on_rtp(packet, 1 + spatial)
    switched = [layer for prev, layer in zip([None, *sink.layers], sink.layers) if prev != layer]
    assert switched == [0, 1]
    first_high = sink.rtp[sink.layers.index(1)]
    assert first_high[12] & 0x1F == 7  # the SPS before the IDR
    seqs = [rtp.parse_header(p).sequence_number for p in sink.rtp]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))
