"""The simulcast forwarding path (`SimulcastProducer.on_rtp` grouping consumers by their
settled layer, `SimulcastConsumer.forward_info` skipping the selector while settled and
joining shared parts, `SimulcastProducer.codec_parts` cutting the renumbered extensions
once per packet) against the reference: a `LayerSelector` of its own per subscriber,
given every packet the producer read, whose forwarded packets are made the independent
way (a copy of the packet, `StreamMunger.rewrite`, `rtp.rewrite_extension_ids`, the
transport-wide number written in place). Byte for byte, through switches, temporal
filtering, gaps filled by RTX, reordering and padding."""

from __future__ import annotations

import random
import struct

import pytest

from sfu.engine.consumer import extension_table
from sfu.engine.layers import FORWARD, LayerSelector
from sfu.engine.munger import StreamMunger
from sfu.engine.packet_info import PacketInfo
from sfu.engine.producer import ProducerParams
from sfu.engine.simulcast import SimulcastConsumer, SimulcastProducer
from sfu.engine.stats import Counters
from sfu.wire import rtp
from tests.support.engine import FakeClock, Sink
from tests.support.simulcast import PT, Simulcast

pytestmark = pytest.mark.unit

RIDS = ("q", "h", "f")
PUBLISHER_EXTMAP = {rtp.URI_TRANSPORT_CC: 3, rtp.URI_RID: 10, rtp.URI_ABS_SEND_TIME: 2}
SUBSCRIBER_EXTMAP = {rtp.URI_TRANSPORT_CC: 5, rtp.URI_ABS_SEND_TIME: 2}
_U16 = struct.Struct("!H")


class RecordingInfo(PacketInfo):
    """The producer's PacketInfo, keeping what it read: the reference is fed the same."""

    __slots__ = ("seen",)

    def __init__(self, codec_name: str) -> None:
        super().__init__(codec_name)
        self.seen: list[tuple[bytes, int, float]] = []

    def read(self, packet, spatial: int, now: float) -> bool:
        self.seen.append((packet, spatial, now))
        return super().read(packet, spatial, now)


class Reference:
    """One subscriber the slow, independent way."""

    def __init__(self, consumer: SimulcastConsumer, table: bytes | None, tcc_id: int) -> None:
        live = consumer.munger
        # Before its first start a munger holds its first out numbers here.
        munger = StreamMunger(consumer.ssrc, consumer.payload_type, 90000,
                              first_seq=live._seq_base, first_ts=live._ts_offset)
        self.selector = LayerSelector(munger, layers=3, target=consumer.selector.target, stall_after=1.0)
        self.info = PacketInfo("VP8")
        self.table = table
        self.tcc_id = tcc_id
        self.tcc = 0
        self.out: list[bytes] = []

    def one(self, packet: bytes, spatial: int, now: float) -> None:
        info = self.info
        if not info.read(packet, spatial, now) or not self.selector.process(info) & FORWARD:
            return
        buf = bytearray(packet)
        self.selector.munger.rewrite(buf, info)
        if buf[0] & 0x10 and (self.table is not None or self.tcc_id):
            if self.table is not None:
                rtp.rewrite_extension_ids(buf, self.table)
            where = rtp.find_extension(buf, self.tcc_id) if self.tcc_id else None
            if where is not None and where[1] >= 2:
                self.tcc = (self.tcc + 1) & 0xFFFF
                _U16.pack_into(buf, where[0], self.tcc)
        self.out.append(bytes(buf))


def _setup(count: int, webrtc_every: int):
    clock = FakeClock()
    params = ProducerParams("p1", "video", "camera", "1", "VP8", 90000, PT, None, dict(PUBLISHER_EXTMAP),
                            rtx_payload_type=97, rids=RIDS)
    producer = SimulcastProducer(params, Sink(), Counters(), clock, "t1", cache_size=256)
    producer.info = RecordingInfo("VP8")
    for index, rid in enumerate(RIDS):
        producer.learn(1000 + index, rid, False)
        producer.learn(2000 + index, rid, True)
    pairs = []
    for n in range(count):
        sink = Sink()
        consumer = SimulcastConsumer(f"c{n}", producer, sink, str(n), 7000 + n, 100, producer.counters)
        producer.add_consumer(consumer)
        webrtc = n % webrtc_every == 0
        table = extension_table(PUBLISHER_EXTMAP, SUBSCRIBER_EXTMAP) if webrtc else None
        consumer.activate(table, 5 if webrtc else 0, False)
        consumer.selector.set_target(n % 3)
        reference = Reference(consumer, table, 5 if webrtc else 0)
        pairs.append((consumer, sink, reference))
    return clock, producer, pairs


def _tagged(packet: bytes, spatial: int, number: int) -> bytes:
    """The packet with a publisher's extensions (transport-wide number, RID, abs-send-time)."""
    header = rtp.parse_header(packet)
    padding = packet[-1] if packet[0] & 0x20 else 0
    payload = packet[header.header_length : len(packet) - padding]
    return rtp.build_packet(PT, header.sequence_number, header.timestamp, header.ssrc, payload=payload,
                            marker=header.marker, padding=padding,
                            extensions={3: _U16.pack(number & 0xFFFF), 10: RIDS[spatial].encode(), 2: b"abc"})


def _script(seed: int) -> list:
    """Packets in arrival order, some held back and delivered late (as RTX or reordered),
    padding, and control steps ("target", consumer index, spatial, temporal)."""
    rnd = random.Random(seed)
    source = Simulcast(seed=seed, packets=(1, 2, 4))
    steps: list = []
    held: list[tuple[int, bytes, float]] = []
    rtx_seq = [0, 0, 0]
    number = 0
    for frame in range(240):
        keyframes = [layer for layer in range(3) if frame == 0 or rnd.random() < 0.04]
        for spatial, packet, now in source.frame(keyframes):
            number += 1
            roll = rnd.random()
            if roll < 0.04:
                held.append((spatial, packet, now))  # lost for now: RTX or late later
                continue
            steps.append(("rtp", spatial, _tagged(packet, spatial, number), now, 1000 + spatial))
            if roll > 0.97:
                pad_spatial, pad, pad_now = source.padding(spatial)
                number += 1
                steps.append(("rtp", pad_spatial, _tagged(pad, pad_spatial, number), pad_now, 1000 + pad_spatial))
        while held and rnd.random() < 0.5:
            spatial, packet, now = held.pop(0)
            number += 1
            tagged = _tagged(packet, spatial, number)
            if rnd.random() < 0.5:
                rtx_seq[spatial] += 1
                steps.append(("rtp", spatial, rtp.wrap_rtx(tagged, 97, 2000 + spatial, rtx_seq[spatial]), now,
                              2000 + spatial))
            else:
                steps.append(("rtp", spatial, tagged, now, 1000 + spatial))
        if frame % 20 == 10:
            for index in range(6):
                steps.append(("target", index, rnd.randrange(-1, 3), rnd.randrange(0, 3)))
    return steps


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_fast_path_is_byte_for_byte_the_reference(seed):
    clock, producer, pairs = _setup(count=6, webrtc_every=2)
    info: RecordingInfo = producer.info  # type: ignore[assignment]
    for step in _script(seed):
        if step[0] == "target":
            _, index, spatial, temporal = step
            consumer, _, reference = pairs[index]
            consumer.selector.set_target(spatial, temporal)
            reference.selector.set_target(spatial, temporal)
            continue
        _, spatial, packet, now, ssrc = step
        clock.now = now
        before = len(info.seen)
        producer.on_rtp(packet, ssrc)
        for seen in info.seen[before:]:
            for _, _, reference in pairs:
                reference.one(*seen)
    total = 0
    for consumer, sink, reference in pairs:
        assert sink.rtp == reference.out, consumer.id
        total += len(sink.rtp)
    assert total > 600
    # The script went through what it is meant to: switches, filtered TIDs, RTX, padding.
    assert producer.counters.rtx_received > 0
    assert sum(c.selector.switches for c, _, _ in pairs) > 6
