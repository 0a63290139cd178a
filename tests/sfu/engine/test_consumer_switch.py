"""sfu.engine.consumer.Consumer.switch_producer: a WHEP player's slot changes source and
the subscriber still sees one stream (same SSRC, sequence without a gap, timestamps on
by the time elapsed), video from the new source's keyframe, which is asked for."""

from __future__ import annotations

import pytest

from sfu.engine.producer import Producer, ProducerParams
from sfu.engine.stats import Counters
from sfu.wire import rtcp
from tests.support.engine import VP8_KEY, FakeClock, Sink, header, make_consumer, make_producer, packet

pytestmark = pytest.mark.unit


def second_producer(clock, sink, kind="video"):
    params = ProducerParams(
        producer_id="p2", kind=kind, source="screen" if kind == "video" else "microphone", mid="1",
        codec_name="VP8" if kind == "video" else "opus", clock_rate=90000 if kind == "video" else 48000,
        payload_type=100 if kind == "video" else 111, ssrc=3333, extmap={},
    )  # fmt: skip
    return Producer(params, sink, Counters(), clock, stream_id="t2", cache_size=64)


def test_video_switch_continues_sequence_and_time_from_the_new_keyframe():
    clock = FakeClock()
    first, counters = make_producer(clock=clock)
    new_sink = Sink()
    second = second_producer(clock, new_sink)
    sink = Sink()
    consumer = make_consumer(first, counters, sink)
    first.on_rtp(packet(10, ts=5000, payload=VP8_KEY), 1111)
    first.on_rtp(packet(11, ts=8000), 1111)
    before = header(sink.rtp[-1])

    consumer.switch_producer(second, None)
    assert consumer not in first.consumers and consumer in second.consumers
    assert [type(p).__name__ for p in rtcp.parse_compound(new_sink.rtcp[0])] == ["Pli"]  # keyframe asked
    first.on_rtp(packet(12, ts=11000), 1111)  # the old source sends nothing more to it
    clock.now += 0.5
    second.on_rtp(packet(700, ts=123, pt=100, ssrc=3333), 3333)  # not a keyframe: waits
    assert len(sink.rtp) == 2
    second.on_rtp(packet(701, ts=456, pt=100, ssrc=3333, payload=VP8_KEY), 3333)
    second.on_rtp(packet(702, ts=3456, pt=100, ssrc=3333), 3333)
    key, after = header(sink.rtp[2]), header(sink.rtp[3])
    assert key.ssrc == before.ssrc == 5555 and key.payload_type == 96
    assert key.sequence_number == (before.sequence_number + 1) & 0xFFFF
    assert (key.timestamp - before.timestamp) & 0xFFFFFFFF == 45000  # 0.5 s at 90 kHz
    assert (after.timestamp - key.timestamp) & 0xFFFFFFFF == 3000  # its own spacing kept
    assert first.keyframe_waiters == 0 and second.keyframe_waiters == 0


def test_audio_switch_starts_at_the_next_packet():
    clock = FakeClock()
    first, counters = make_producer(kind="audio", clock=clock)
    second = second_producer(clock, Sink(), kind="audio")
    sink = Sink()
    consumer = make_consumer(first, counters, sink, use_rtx=False)
    first.on_rtp(packet(1, ts=960, pt=109), 1111)
    consumer.switch_producer(second, None)
    clock.now += 0.02
    second.on_rtp(packet(9000, ts=77, pt=111, ssrc=3333), 3333)
    a, b = (header(p) for p in sink.rtp)
    assert b.sequence_number == (a.sequence_number + 1) & 0xFFFF
    assert (b.timestamp - a.timestamp) & 0xFFFFFFFF == 960


def test_switch_while_waiting_for_a_keyframe_moves_the_wait():
    clock = FakeClock()
    first, counters = make_producer(clock=clock)
    second = second_producer(clock, Sink())
    consumer = make_consumer(first, counters, Sink())
    assert first.keyframe_waiters == 1  # nothing forwarded yet
    consumer.switch_producer(second, None)
    assert (first.keyframe_waiters, second.keyframe_waiters) == (0, 1)
    consumer.close()
    assert second.keyframe_waiters == 0 and consumer not in second.consumers
