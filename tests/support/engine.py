"""A producer and its consumers without a network, for the tests of sfu/engine/: a `Sink`
that keeps what a transport would send, a settable clock, and the two made as the router
makes them.

    producer, counters = make_producer(kind="audio")
    sink = Sink()
    consumer = make_consumer(producer, counters, sink)
    producer.on_rtp(packet(1, pt=109), 1111)
    assert header(sink.rtp[0]).ssrc == 5555
"""

from __future__ import annotations

from sfu.engine.consumer import Consumer
from sfu.engine.producer import Producer, ProducerParams
from sfu.engine.stats import Counters
from sfu.wire import rtp

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
    native_to = None  # the Python path (sfu.transport.native)

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
