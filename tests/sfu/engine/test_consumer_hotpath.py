"""The tuned forwarding path gives the same bytes as the straightforward rewrite.

The engine now packs only each consumer's 12-byte header in front of bytes shared by
all consumers, renumbers header extensions once per distinct subscriber extmap, and tests
one `ready` flag per packet. Each test compares against a reference rewrite done the
plain way (bytearray, every field set, extensions renumbered per subscriber), or checks
a state change of the `ready` flag.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.engine import producer as producer_module
from sfu.engine.consumer import Consumer, extension_table
from sfu.engine.producer import Producer, ProducerParams
from sfu.engine.stats import FORWARD_TIME_BUCKETS_US, FORWARD_TIME_SAMPLE_EVERY, Counters
from sfu.wire import rtp

URI_ABS = rtp.URI_ABS_SEND_TIME
URI_TCC = rtp.URI_TRANSPORT_CC
URI_ORIENT = rtp.URI_VIDEO_ORIENTATION
VP8_KEY = bytes([0x10, 0x00, 0x9D, 0x01, 0x2A]) + b"k" * 40


class Sink:
    native_to = None  # the Python path (sfu.transport.native)

    def __init__(self) -> None:
        self.rtcp_ssrc = 0xCAFE
        self.connected = True
        self.rtp: list[bytes] = []
        self.tcc = 1000

    def send_rtp(self, packet: bytes) -> None:
        assert isinstance(packet, bytes)
        self.rtp.append(packet)

    def send_rtcp(self, packet: bytes) -> None:
        pass

    def next_transport_sequence(self) -> int:
        self.tcc = (self.tcc + 1) & 0xFFFF
        return self.tcc


class Clock:
    def __call__(self) -> float:
        return 1.0


def make_producer(kind: str = "video", extmap: dict[str, int] | None = None) -> Producer:
    params = ProducerParams("p", kind, "camera", "0", "VP8" if kind == "video" else "opus",
                            90000 if kind == "video" else 48000, 120, 1111, extmap or {})
    return Producer(params, Sink(), Counters(), Clock(), stream_id="t", cache_size=64)


def add_consumer(producer: Producer, ssrc: int, table: bytes | None = None, tcc_id: int = 0) -> tuple[Consumer, Sink]:
    sink = Sink()
    consumer = Consumer(f"c{ssrc}", producer, sink, "0", ssrc, 96, producer.counters)
    producer.add_consumer(consumer)
    consumer.activate(table, tcc_id, False)
    return consumer, sink


def reference(packet: bytes, consumer: Consumer, tcc_value: int | None = None) -> bytes:
    """The rewrite done the plain way, field by field (RFC 3550 §5.1, RFC 8285)."""
    seq, ts = struct.unpack_from("!HI", packet, 2)
    buf = bytearray(packet)
    buf[1] = (buf[1] & 0x80) | consumer.payload_type
    struct.pack_into("!HII", buf, 2, (seq + consumer.seq_offset) & 0xFFFF,
                     (ts + consumer.ts_offset) & 0xFFFFFFFF, consumer.ssrc)
    if consumer.ext_table is not None:
        rtp.rewrite_extension_ids(buf, consumer.ext_table)
    if tcc_value is not None:
        where = rtp.find_extension(buf, consumer.tcc_id)
        assert where is not None
        struct.pack_into("!H", buf, where[0], tcc_value)
    return bytes(buf)


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=3),
    extensions=st.dictionaries(st.integers(1, 14), st.binary(min_size=1, max_size=4), max_size=3),
    payload=st.binary(min_size=1, max_size=200),
    padding=st.integers(0, 3),
)
def test_plain_consumers_match_the_reference_rewrite(seq, ts, marker, csrcs, extensions, payload, padding):
    producer = make_producer("audio")
    consumers = [add_consumer(producer, 5000 + i) for i in range(3)]
    first = rtp.build_packet(120, seq, ts, 1111, payload=payload)
    producer.on_rtp(first, 1111)  # starts every consumer (audio: no keyframe needed)
    packet = rtp.build_packet(120, (seq + 1) & 0xFFFF, (ts + 960) & 0xFFFFFFFF, 1111, payload=payload,
                              marker=marker, csrcs=csrcs, extensions=extensions or None, padding=padding)
    producer.on_rtp(packet, 1111)
    for consumer, sink in consumers:
        assert sink.rtp[-1] == reference(packet, consumer)
        # Header extensions of a plain consumer (no table, no tcc) pass through unchanged.
        assert sink.rtp[-1][12:] == packet[12:]


def test_subscribers_sharing_an_extmap_get_the_reference_bytes_and_their_own_tcc():
    extmap = {URI_ABS: 2, URI_TCC: 3, URI_ORIENT: 13}
    producer = make_producer("video", extmap)
    browser = {URI_ABS: 3, URI_TCC: 5, URI_ORIENT: 13}
    other = {URI_TCC: 7}  # another client kind: only transport-cc, at another id
    consumers = [add_consumer(producer, 6000 + i, extension_table(extmap, browser), 5) for i in range(3)]
    consumers.append(add_consumer(producer, 7000, extension_table(extmap, other), 7))
    consumers[1][1].tcc = 40000  # transports number independently
    extensions = {2: b"\x01\x02\x03", 3: b"\x00\x09", 13: b"\x01"}
    sent = []
    for i, payload in enumerate((VP8_KEY, b"\x10\x01" + b"d" * 30, b"\x10\x01" + b"e" * 30)):
        packet = rtp.build_packet(120, 10 + i, 1000 + i, 1111, payload=payload, extensions=extensions)
        sent.append(packet)
        producer.on_rtp(packet, 1111)
    for consumer, sink in consumers:
        assert len(sink.rtp) == 3
        tcc_start = sink.tcc - 2
        for i, (packet, out) in enumerate(zip(sent, sink.rtp)):
            assert out == reference(packet, consumer, (tcc_start + i) & 0xFFFF)
    # One layout per distinct (table, tcc id), not one per subscriber.
    assert len(producer._extension_memo) == 2


def test_a_packet_without_the_tcc_element_is_renumbered_without_one():
    extmap = {URI_ABS: 2, URI_TCC: 3}
    producer = make_producer("audio", extmap)
    consumer, sink = add_consumer(producer, 6000, extension_table(extmap, {URI_ABS: 4, URI_TCC: 5}), 5)
    packet = rtp.build_packet(120, 1, 1, 1111, payload=b"x" * 20, extensions={2: b"\x01\x02\x03"})
    producer.on_rtp(packet, 1111)
    assert sink.rtp[-1] == reference(packet, consumer)
    assert sink.tcc == 1000  # no transport-wide number used up


def test_the_extension_memo_stays_bounded(monkeypatch):
    monkeypatch.setattr(producer_module, "MAX_EXTENSION_LAYOUTS", 4)
    extmap = {URI_TCC: 3}
    producer = make_producer("audio", extmap)
    for i in range(10):
        add_consumer(producer, 8000 + i, extension_table(extmap, {URI_TCC: 1 + i}), 1 + i)
    producer.on_rtp(rtp.build_packet(120, 1, 1, 1111, payload=b"x", extensions={3: b"\x00\x01"}), 1111)
    assert len(producer._extension_memo) <= 4


def test_ready_follows_pause_resync_and_close_and_sequence_stays_continuous():
    producer = make_producer("video")
    consumer, sink = add_consumer(producer, 5000)
    seq = 100

    def send(keyframe: bool = False) -> None:
        nonlocal seq
        producer.on_rtp(rtp.build_packet(120, seq, seq * 90, 1111, payload=VP8_KEY if keyframe else b"\x10\x01xx"), 1111)
        seq += 1

    assert not consumer.ready
    send()
    assert sink.rtp == [] and not consumer.ready  # video waits for a keyframe
    send(keyframe=True)
    send()
    assert consumer.ready and len(sink.rtp) == 2
    consumer.set_paused(True)
    assert not consumer.ready
    send(keyframe=True)
    assert len(sink.rtp) == 2
    consumer.set_paused(False)
    send()  # not a keyframe: still waiting after the resume
    send(keyframe=True)
    assert consumer.ready and len(sink.rtp) == 3
    consumer.resync()
    assert not consumer.ready
    send(keyframe=True)
    consumer.close()
    assert not consumer.ready
    send(keyframe=True)
    out_seqs = [struct.unpack_from("!H", p, 2)[0] for p in sink.rtp]
    assert [(s - out_seqs[0]) & 0xFFFF for s in out_seqs] == [0, 1, 2, 3]
    assert producer.keyframe_waiters == 0


def test_audio_resync_twice_waits_once():
    producer = make_producer("audio")
    consumer, _ = add_consumer(producer, 5000)
    consumer.resync()
    consumer.resync()
    assert producer.keyframe_waiters == 1
    producer.on_rtp(rtp.build_packet(120, 1, 1, 1111, payload=b"a"), 1111)
    assert producer.keyframe_waiters == 0 and consumer.ready


def test_fan_out_time_is_sampled_into_a_cumulative_histogram():
    producer = make_producer("audio")
    add_consumer(producer, 5000)
    for seq in range(FORWARD_TIME_SAMPLE_EVERY * 3):
        producer.on_rtp(rtp.build_packet(120, seq, seq, 1111, payload=b"a"), 1111)
    counters, _ = producer.counters.snapshot()
    assert counters["forward_time_samples"] == 3
    assert counters["forward_time_us_le_inf"] == 3
    bounds = [counters[f"forward_time_us_le_{b}"] for b in FORWARD_TIME_BUCKETS_US]
    assert bounds == sorted(bounds)  # cumulative


def test_record_forward_time_buckets():
    counters = Counters()
    for micros in (5, 10, 11, 4999, 5001, 10**6):
        counters.record_forward_time(micros * 1000)
    snapshot, _ = counters.snapshot()
    assert snapshot["forward_time_us_le_10"] == 2
    assert snapshot["forward_time_us_le_25"] == 3
    assert snapshot["forward_time_us_le_5000"] == 4
    assert snapshot["forward_time_us_le_inf"] == 6
    assert snapshot["forward_time_us_sum"] == 5 + 10 + 11 + 4999 + 5001 + 10**6
