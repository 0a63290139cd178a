"""A simulcast video track: one producer with up to three layers, and its consumers, each
forwarding one layer as one continuous stream.

Ingest (`SimulcastProducer`). Chromium's rid simulcast: the publish offer names the
streams (`a=rid:<id> send`, `a=simulcast:send q;h;f`) and no SSRCs; each RTP packet
carries the RTP stream ID header extension (RFC 8852 §4.3, RID) and each RTX packet the
repaired RTP stream ID (§4.4, RRID) until the publisher has seen a receiver report for its
SSRC. The transport binds an unknown SSRC on first sight (`learn`): from then on the SSRC
alone finds the producer and its layer. Layers are ordered as the offer's a=simulcast
lists them, and that order is taken as lowest first: Chromium keeps the order of
`sendEncodings` in a=simulcast, and clients (ours: control/static; mediasoup's and
LiveKit's too) list them from the most scaled down (`scaleResolutionDownBy` 4, 2, 1).
A client that lists them the other way round gets its layers upside down (the worker
decodes nothing that would tell; VP8 keyframes give the sizes, `Layer.height`, for the
viewport choice only).

Each layer has its own packet cache, reception stats (its own receiver report block and
NACKs to its SSRC) and keyframe requester (PLI to its SSRC, rate-limited per layer).

Hot path (`SimulcastProducer.on_rtp`): the layer by SSRC, seq for the stats and the
cache, then `PacketInfo.read` once per packet for every consumer, then each consumer's
`SimulcastConsumer.forward_info`: `LayerSelector.process`, and for a forwarded packet the
munger's header, shared extension bytes (`Producer.extension_parts`) and the rewritten
VP8 PictureID/TL0PICIDX. No await, no logging.

Consumers (`SimulcastConsumer`): a `sfu.engine.layers.LayerSelector` with a
`sfu.engine.munger.StreamMunger` on the consumer's SSRC and payload type; the target
layer starts at the highest. On a WebRTC subscriber its allocation sets it
(sfu.engine.subscription: bandwidth, tile, last-N); elsewhere it may follow a viewport
(`set_viewport`: the smallest layer at least as tall as the tile; hidden: none).

Measured for the allocation and dynacast, off the packet path: each layer's byte count
(`Layer.octets`, one add per packet) sampled into its `Layer.meter` (`measure`); while
someone consumes the track, the bytes and frames of each VP8 temporal layer too
(`Layer.tid_octets`, `tid_frames`: an add per packet and one per frame, from the
`PacketInfo` read anyway) into `Layer.tid_meters` and `Layer.fps`, so that the
allocation can offer a layer at a reduced frame rate at its real cost; and the
layers the consumers take (`taken_layers`) into the producer's `demand`. NACKs are answered through
`StreamMunger.source` / `retransmit` from the layer's cache, sender reports translated
for the layer being forwarded. A non-simulcast producer keeps `Consumer.forward`.
"""

from __future__ import annotations

import struct
from typing import Callable

from sfu.engine.bitrate import BitrateMeter
from sfu.engine.consumer import Consumer
from sfu.engine.dynacast import LayerDemand
from sfu.engine.keyframes import KeyframeRequester
from sfu.engine.layers import FORWARD, PLI, LayerSelector
from sfu.engine.munger import StreamMunger
from sfu.engine.nack_cache import PacketCache
from sfu.engine.packet_info import MAX_LAYERS, PacketInfo
from sfu.engine.producer import MAX_EXTENSION_LAYOUTS, MAX_NACK_GAP, Producer, _padding_only
from sfu.engine.retransmit import ANSWER, REFUSED_DUPLICATE, RetransmitBudget
from sfu.wire import rtcp, rtp
from sfu.wire.reception import ReceptionStats

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_HEADER = struct.Struct("!HHII")
_VP8_START = b"\x9d\x01\x2a"
# A tile taller than every known layer height, or with no height known: the top layer.
# With no VP8 keyframe seen yet (H.264), layer i of n is taken as 720 / 2**(n-1-i) tall
# (Chromium's 4/2/1 scaling of a 720p camera).
ASSUMED_TOP_HEIGHT = 720
# A frame rate is measured over at least this long.
MIN_FPS_SPAN_S = 2.0
# A layer above the lowest is worth forwarding at a reduced frame rate (TIDs up to 0, or
# up to 1) only at this many frames a second or more (7.5 of a 30 fps camera's TID 0 or a
# 15 fps one's TIDs 0-1; not 3.75): on from MIN_REDUCED_FPS, off again below
# REDUCED_FPS_OFF, so that a rate measured around one threshold does not make the
# allocation's ladder (and with it a subscriber's layer) flap.
MIN_REDUCED_FPS = 7.0
REDUCED_FPS_OFF = 5.5
# Seconds without a packet after which a layer counts as stopped (LayerSelector's
# stall_after, the same for every consumer: the producer groups by it).
STALL_AFTER = 1.0


class Layer:
    """One simulcast stream of a producer: what is received on its SSRC."""

    __slots__ = ("index", "rid", "ssrc", "rtx_ssrc", "cache", "reception", "keyframes", "width", "height",
                 "octets", "meter", "tid_octets", "tid_frames", "tid_meters", "fps", "reduced", "_frames_at")

    def __init__(self, index: int, rid: str, cache_size: int, pli_min_interval: float) -> None:
        self.index = index
        self.rid = rid
        self.ssrc: int | None = None  # learned from the first packet carrying its RID
        self.rtx_ssrc: int | None = None  # ... and from the first RTX packet with its RRID
        self.cache = PacketCache(cache_size)
        self.reception = ReceptionStats()
        self.keyframes = KeyframeRequester(pli_min_interval)
        self.width = 0  # from its last VP8 keyframe (0: not seen)
        self.height = 0
        self.octets = 0  # bytes received (media, not RTX): the hot path's one count
        self.meter = BitrateMeter()  # its rate, sampled by the clockwork (`measure`)
        # Per VP8 temporal layer (TID 0..2; index 3, i.e. -1, for packets without one),
        # the bytes and frames (packets with the marker bit) of readable packets: what
        # forwarding up to each TID costs and how many frames a second it gives.
        self.tid_octets = [0, 0, 0, 0]
        self.tid_frames = [0, 0, 0, 0]
        self.tid_meters = (BitrateMeter(), BitrateMeter())  # TIDs up to 0, up to 1 (up to 2: `meter`)
        self.fps = [0.0, 0.0, 0.0]  # frames a second forwarded with TIDs up to 0, 1, 2 (0: not measured)
        self.reduced = [False, False]  # TIDs up to 0, up to 1: a frame rate worth offering (MIN_REDUCED_FPS)
        self._frames_at: tuple[float, int, int, int] | None = None

    @property
    def temporal(self) -> bool:
        """Does it carry temporal layers (VP8 TIDs above 0 seen)?"""
        return bool(self.tid_octets[1] or self.tid_octets[2])

    def measure(self, now: float) -> None:
        """Sample its meters and frame rates (about once a second). Packets without a
        TID go out whatever the temporal target: counted in every temporal layer."""
        self.meter.sample(self.octets, now)
        octets, frames = self.tid_octets, self.tid_frames
        self.tid_meters[0].sample(octets[0] + octets[3], now)
        self.tid_meters[1].sample(octets[0] + octets[1] + octets[3], now)
        counts = (frames[0] + frames[3], frames[0] + frames[1] + frames[3], sum(frames))
        last = self._frames_at
        if last is None or now - last[0] >= MIN_FPS_SPAN_S:
            if last is not None:
                span = now - last[0]
                self.fps = [round((count - before) / span, 2) for count, before in zip(counts, last[1:])]
                for temporal in (0, 1):
                    if self.fps[temporal] >= MIN_REDUCED_FPS:
                        self.reduced[temporal] = True
                    elif self.fps[temporal] < REDUCED_FPS_OFF:
                        self.reduced[temporal] = False
            self._frames_at = (now, *counts)


class SimulcastProducer(Producer):
    """A producer of up to MAX_LAYERS rid layers (params.rids, lowest first)."""

    __slots__ = ("layers", "info", "demand", "_by_ssrc", "_layer_of", "_groups", "_settled", "_codec_memo",
                 "_codec_body_memo")

    def __init__(self, params, sink, counters, clock: Callable[[], float], stream_id: str,
                 cache_size: int = 1024, pli_min_interval: float = 0.5, **kwargs) -> None:
        super().__init__(params, sink, counters, clock, stream_id, cache_size=16,
                         pli_min_interval=pli_min_interval, **kwargs)
        if not 1 < len(params.rids) <= MAX_LAYERS:
            raise ValueError(f"simulcast rids: {params.rids!r}, expected 2..{MAX_LAYERS}")
        self.ssrc = None
        self.rtx_ssrc = None
        self.layers = [Layer(i, rid, cache_size, pli_min_interval) for i, rid in enumerate(params.rids)]
        self.info = PacketInfo(params.codec_name)
        self.demand = LayerDemand(len(self.layers))  # dynacast: the layers someone takes
        self._by_ssrc: dict[int, Layer] = {}
        self._layer_of = {rid: layer for rid, layer in zip(params.rids, self.layers)}
        # Who gets a packet of each layer: consumers settled on that layer and those not
        # settled (`_groups[layer]`); and who is settled on each (`_settled[layer]`), given
        # other layers' packets too once their own has stalled. None: to be made again
        # (a consumer came, went, or settled elsewhere).
        self._groups: list[list[Consumer]] | None = None
        self._settled: list[list[Consumer]] = [[] for _ in self.layers]
        # ext key -> (packet, its codec_parts): see codec_parts.
        self._codec_memo: dict[tuple[bytes | None, int], tuple[bytes, tuple[bytes, bytes | None, bytes]]] = {}
        self._codec_body_memo: dict[tuple[bytes | None, int], tuple[bytes, tuple[bytes, int, bytes]]] = {}

    # ------------------------------------------------------------------ first sight

    def learn(self, ssrc: int, rid: str, repaired: bool) -> bool:
        """Bind `ssrc` to the layer of `rid` (as its RTX stream when `repaired`). False:
        no such layer, or that layer already has another SSRC there."""
        layer = self._layer_of.get(rid)
        if layer is None:
            return False
        if repaired:
            if layer.rtx_ssrc is not None and layer.rtx_ssrc != ssrc:
                return False
            layer.rtx_ssrc = ssrc
        else:
            if layer.ssrc is not None and layer.ssrc != ssrc:
                return False
            layer.ssrc = ssrc
        self._by_ssrc[ssrc] = layer
        return True

    def ssrcs(self) -> list[int]:
        return list(self._by_ssrc)

    def layer_of_ssrc(self, ssrc: int) -> Layer | None:
        return self._by_ssrc.get(ssrc)

    # ------------------------------------------------------------------ hot path

    def on_rtp(self, packet: bytes, ssrc: int) -> None:
        layer = self._by_ssrc.get(ssrc)
        if layer is None:
            self.counters.drop("unknown_ssrc")
            return
        if ssrc != layer.ssrc:
            self._on_layer_rtx(layer, packet)
            return
        if packet[1] & 0x7F != self.payload_type:
            self.counters.drop("unexpected_payload_type")
            return
        seq = _U16.unpack_from(packet, 2)[0]
        skipped = layer.reception.update(seq)
        if skipped and skipped <= MAX_NACK_GAP:
            lost = [(seq - i) & 0xFFFF for i in range(skipped, 0, -1)]
            self.sink.send_rtcp(rtcp.build_nack(self.sink.rtcp_ssrc, ssrc, lost))
        layer.cache.put(seq, packet)
        size = len(packet)
        layer.octets += size
        consumers = self.consumers
        if self.paused or not consumers:
            return
        info = self.info
        if not info.read(packet, layer.index, self.clock()):
            return
        if not info.empty:  # the temporal layers' share (tid -1: the "no TID" slot, index 3)
            layer.tid_octets[info.tid] += size
            if info.head & 0x80:
                layer.tid_frames[info.tid] += 1
        if info.keyframe:
            self._on_keyframe(layer, packet)
        groups = self._groups
        if groups is None:
            groups = self._regroup()
        index = layer.index
        for consumer in groups[index]:
            consumer.forward_info(packet, info)  # type: ignore[attr-defined]
        # Consumers settled on a layer that stopped need the others' packets to move on
        # (one test per packet while every layer flows: the oldest arrival is recent).
        now = info.now
        arrivals = info.arrivals
        if now - min(arrivals) >= STALL_AFTER:
            for other, settled in enumerate(self._settled):
                if other != index and settled and now - arrivals[other] >= STALL_AFTER:
                    for consumer in settled:
                        consumer.forward_info(packet, info)  # type: ignore[attr-defined]
        flush = self.flush_sends  # the native path's copies leave now (sfu.transport.native)
        if flush is not None:
            flush()

    def codec_parts(self, packet: bytes, info: PacketInfo,
                    key: tuple[bytes | None, int]) -> tuple[bytes, bytes | None, bytes]:
        """`extension_parts` of the packet `info` was read from, cut again around its
        codec bytes (`info.codec_start`..`codec_end`, which each subscriber writes its
        own): (from byte 12 to the transport-wide number, from after it to the codec
        bytes, from after them to the end); without a transport-wide number (before, None,
        tail). Made once per packet and key, not once per subscriber: each cut of the
        payload is a copy of it."""
        memo = self._codec_memo
        entry = memo.get(key)
        if entry is not None and entry[0] is packet:
            return entry[1]
        before, after = self.extension_parts(packet, key)
        start, end = info.codec_start - 12, info.codec_end - 12
        if after is None:
            parts: tuple[bytes, bytes | None, bytes] = (before[:start], None, before[end:])
        else:
            cut = len(before) + 2  # where `after` starts, counted from byte 12
            parts = (before, after[: start - cut], after[end - cut :])
        if len(memo) >= MAX_EXTENSION_LAYOUTS and key not in memo:
            memo.clear()
        memo[key] = (packet, parts)
        return parts

    def codec_body(self, packet: bytes, info: PacketInfo, key: tuple[bytes | None, int]) -> tuple[bytes, int, bytes]:
        """`codec_parts` as the native path takes them: (the bytes up to the codec bytes,
        the transport-wide number's value left as two zero bytes; where that value is,
        -1: none; the bytes after the codec bytes). Once per packet and key."""
        memo = self._codec_body_memo
        entry = memo.get(key)
        if entry is not None and entry[0] is packet:
            return entry[1]
        before, between, tail = self.codec_parts(packet, info, key)
        if between is None:
            parts = (before, -1, tail)
        else:
            parts = (b"".join((before, b"\0\0", between)), len(before), tail)
        if len(memo) >= MAX_EXTENSION_LAYOUTS and key not in memo:
            memo.clear()
        memo[key] = (packet, parts)
        return parts

    def _regroup(self) -> list[list[Consumer]]:
        settled: list[list[Consumer]] = [[] for _ in self.layers]
        unsettled = []
        for consumer in self.consumers:
            layer = consumer.selector.settled  # type: ignore[attr-defined]
            (settled[layer] if layer >= 0 else unsettled).append(consumer)
        self._settled = settled
        groups = self._groups = [unsettled + mine for mine in settled]
        return groups

    def regroup(self) -> None:
        """A consumer's selector settled elsewhere: group again at the next packet."""
        self._groups = None

    def add_consumer(self, consumer: Consumer) -> None:
        super().add_consumer(consumer)
        self._groups = None

    def remove_consumer(self, consumer: Consumer) -> None:
        super().remove_consumer(consumer)
        self._groups = None

    def _on_keyframe(self, layer: Layer, packet: bytes) -> None:
        layer.keyframes.satisfied()
        self.counters.keyframes_forwarded += 1
        if self.info.codec != 1:
            return
        # RFC 6386 §9.1: after the 3-byte frame tag, the start code and 14-bit sizes.
        start = self.info.codec_end
        where = packet.find(_VP8_START, start, start + 16)
        if where < 0 or where + 7 > len(packet):
            return
        width = (packet[where + 3] | packet[where + 4] << 8) & 0x3FFF
        height = (packet[where + 5] | packet[where + 6] << 8) & 0x3FFF
        if (width, height) != (layer.width, layer.height):
            layer.width, layer.height = width, height
            for consumer in self.consumers:
                consumer.retarget()  # type: ignore[attr-defined]

    def _on_layer_rtx(self, layer: Layer, packet: bytes) -> None:
        if layer.ssrc is None:
            self.counters.drop("unknown_ssrc")
            return
        if len(packet) - rtp.payload_offset(packet) < 2 or packet[0] & 0x20 and _padding_only(packet):
            self.counters.padding_received += 1
            return
        self.counters.rtx_received += 1
        original = rtp.unwrap_rtx(packet, self.payload_type, layer.ssrc)
        if layer.cache.get(_U16.unpack_from(original, 2)[0]) is not None:
            return  # already have it
        self.on_rtp(original, layer.ssrc)

    # ------------------------------------------------------------ control path

    def measure(self, now: float) -> None:
        """Sample every layer's meters and frame rates (about once a second)."""
        for layer in self.layers:
            layer.measure(now)

    def taken_layers(self) -> set[int]:
        """Dynacast: the layers some consumer takes now (its selector's target, the layer
        it forwards until it switches, and those up to the one its tile asks for: a subscriber whose
        estimate is still ramping up, or dips for a while, must find that layer encoded
        when its bandwidth allows it); a paused consumer takes none."""
        taken: set[int] = set()
        for consumer in self.consumers:
            if not consumer.paused:
                selector = consumer.selector  # type: ignore[attr-defined]
                taken.add(selector.target)
                taken.add(selector.current)
                tile_layer = consumer.tile_layer  # type: ignore[attr-defined]
                if tile_layer is not None:  # and the layers below, its way up as it ramps
                    taken.update(range(tile_layer + 1))
        taken.discard(-1)
        return taken

    def active_rids(self, wanted: frozenset[int]) -> list[str]:
        return [layer.rid for layer in self.layers if layer.index in wanted]

    def heights(self) -> list[int]:
        """Each layer's height, known (a VP8 keyframe) or assumed (ASSUMED_TOP_HEIGHT)."""
        count = len(self.layers)
        top = next((layer.height << (count - 1 - layer.index) for layer in reversed(self.layers) if layer.height),
                   ASSUMED_TOP_HEIGHT)
        return [layer.height or top >> (count - 1 - layer.index) for layer in self.layers]

    def request_layer_keyframe(self, index: int) -> None:
        if not 0 <= index < len(self.layers) or self.closed:
            return
        layer = self.layers[index]
        if layer.ssrc is not None and layer.keyframes.request(self.clock()):
            self._send_layer_pli(layer)

    def request_keyframe(self) -> None:
        for layer in self.layers:
            self.request_layer_keyframe(layer.index)

    def poll_keyframe_request(self) -> None:
        now = self.clock()
        for layer in self.layers:
            if layer.ssrc is not None and layer.keyframes.poll(now):
                self._send_layer_pli(layer)

    def _send_layer_pli(self, layer: Layer) -> None:
        self.counters.pli_sent += 1
        self.sink.send_rtcp(rtcp.build_pli(self.sink.rtcp_ssrc, layer.ssrc or 0))

    def on_sender_report(self, ntp_timestamp: int, rtp_timestamp: int, ssrc: int | None = None) -> None:
        layer = self._by_ssrc.get(ssrc) if ssrc is not None else None
        if layer is None or ssrc != layer.ssrc:
            return
        layer.reception.on_sender_report(ntp_timestamp, self.clock())
        for consumer in self.consumers:
            consumer.send_layer_sender_report(layer.index, ntp_timestamp, rtp_timestamp)  # type: ignore[attr-defined]

    def report_block(self) -> rtcp.ReportBlock | None:
        blocks = self.report_blocks()
        return blocks[0] if blocks else None

    def report_blocks(self) -> list[rtcp.ReportBlock]:
        now = self.clock()
        return [layer.reception.report_block(layer.ssrc, now) for layer in self.layers
                if layer.ssrc is not None and layer.reception.started]

    def close(self) -> None:
        if not self.closed:
            for layer in self.layers:
                layer.cache.clear()
            self._codec_memo.clear()
        super().close()


class SimulcastConsumer(Consumer):
    """One subscriber's stream of a `SimulcastProducer`: one layer at a time."""

    __slots__ = ("selector", "munger", "viewport", "tile_layer", "_scratch")

    def __init__(self, consumer_id: str, producer: SimulcastProducer, sink, mid: str, ssrc: int,
                 payload_type: int, counters, **kwargs) -> None:
        super().__init__(consumer_id, producer, sink, mid, ssrc, payload_type, counters, **kwargs)
        count = len(producer.layers)
        munger = StreamMunger(ssrc, payload_type, producer.params.clock_rate)
        self.selector = LayerSelector(munger, layers=count, target=count - 1, stall_after=STALL_AFTER)
        self.selector.on_settled = producer.regroup
        self.munger = munger  # the selector's, read on the hot path without the hop
        self.viewport: tuple[int, int, bool] | None = None  # (width, height, visible) of the tile
        # The layer the subscriber's tile asks for whatever its bandwidth (its allocation's
        # ladder top; -1: hidden or cut by last-N; None: nobody allocates this consumer).
        self.tile_layer: int | None = None
        self._scratch = PacketInfo(producer.params.codec_name)  # for retransmissions

    # ------------------------------------------------------------------ hot path

    def forward_info(self, packet: bytes, info: PacketInfo) -> None:
        """One packet of any layer, read once by the producer into `info`."""
        if not self.ready:
            return
        selector = self.selector
        munger = self.munger
        if selector.settled == info.spatial:
            # Settled on this packet's layer (most packets): the selector's process is the
            # munger's forward itself, which says DROP or FORWARD and never asks for a PLI.
            if not munger.forward(info):
                return
        else:
            verdict = selector.process(info)
            if verdict & PLI:
                self.producer.request_layer_keyframe(selector.pli_layer)  # type: ignore[attr-defined]
            if not verdict & FORWARD:
                return
        out_seq = self.last_seq_out = munger.out_seq
        sink = self.sink
        if sink.native_to is not None:
            # The native path (sfu.transport.native): the same copy, written in C.
            if self.rewrites_extensions and info.head & 0x1000:
                body, tcc_at, tail = self.producer.codec_body(packet, info, self.ext_key)  # type: ignore[attr-defined]
            else:
                body, tcc_at, tail = info.middle, -1, info.tail
            codec = munger.out_codec
            self.packets_sent += 1
            self.octets_sent += len(body) + len(codec) + len(tail)
            sink.send_rewritten(info.head | self.payload_type, out_seq, munger.out_ts, self.ssrc, body, tcc_at,
                                codec, tail)
            return
        header = _HEADER.pack(info.head | self.payload_type, out_seq, munger.out_ts, self.ssrc)
        if self.rewrites_extensions and info.head & 0x1000:
            out = self._with_extensions(packet, info, header, munger.out_codec)
        else:
            # What StreamMunger.packet joins, without the call.
            out = b"".join((header, info.middle, munger.out_codec, info.tail))
        self.packets_sent += 1
        self.octets_sent += len(out) - 12
        self.sink.send_rtp(out)

    def _with_extensions(self, packet: bytes, info: PacketInfo, header: bytes, codec: bytes) -> bytes:
        """The munged packet with extension ids renumbered for this subscriber and its
        transport-wide sequence number: the renumbered bytes, cut around the
        transport-wide number and the codec bytes, are the producer's, made once per
        packet for subscribers with the same extmap; the codec bytes are this subscriber's."""
        before, between, tail = self.producer.codec_parts(packet, info, self.ext_key)  # type: ignore[attr-defined]
        if between is None:
            return b"".join((header, before, codec, tail))
        return b"".join((header, before, _U16.pack(self.sink.next_transport_sequence()), between, codec, tail))

    # ------------------------------------------------------------- feedback path

    def request_keyframe(self) -> None:
        selector = self.selector
        layer = selector.current if selector.current >= 0 else selector.target
        if layer >= 0:
            self.producer.request_layer_keyframe(layer)  # type: ignore[attr-defined]

    def _retransmit(self, out_seq: int, budget: RetransmitBudget, newest_ts: int, max_age: int) -> None:
        counters = self.counters
        counters.nack_requested += 1
        munger = self.selector.munger
        source = munger.source(out_seq)
        producer: SimulcastProducer = self.producer  # type: ignore[assignment]
        # A packet of a layer left behind is no use to the subscriber (its decoder starts
        # again at the new layer's keyframe) and, after a cut for bandwidth, would spend
        # what the link no longer has on the past.
        if source is None or not self.active or source[0] != munger.layer:
            counters.nack_missed += 1
            return
        layer = producer.layers[source[0]]
        packet = layer.cache.get(source[1])
        if packet is None:
            counters.nack_missed += 1
            return
        newest = layer.cache.get(layer.reception.max_seq) if layer.reception.started else None
        if newest is not None:
            age = (_U32.unpack_from(newest, 4)[0] - _U32.unpack_from(packet, 4)[0]) & 0xFFFFFFFF
            if max_age < age < 0x80000000:
                counters.nack_refused_too_old += 1
                return
        info = self._scratch
        if not info.read(packet, layer.index, producer.clock()) or not munger.retransmit(info, out_seq) & FORWARD:
            counters.nack_missed += 1
            return
        verdict = budget.admit(out_seq, len(packet))
        if verdict != ANSWER:
            if verdict == REFUSED_DUPLICATE:
                counters.nack_refused_duplicate += 1
            else:
                counters.nack_refused_budget += 1
            return
        buf = bytearray(packet)
        munger.rewrite(buf, info)
        if buf[0] & 0x10:
            self._rewrite_extensions(buf)
        if self.use_rtx and self.rtx_ssrc is not None and self.rtx_payload_type is not None:
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
            out = rtp.wrap_rtx(bytes(buf), self.rtx_payload_type, self.rtx_ssrc, self.rtx_seq)
        else:
            out = bytes(buf)
        counters.nack_answered += 1
        self.sink.send_rtp(out)

    def send_sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        pass  # simulcast SRs come per layer (send_layer_sender_report)

    def send_layer_sender_report(self, layer: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        """The publisher's SR of `layer`: translated when that layer is the one forwarded."""
        munger = self.selector.munger
        if not self.active or self.packets_sent == 0 or munger.layer != layer:
            return
        self.sink.send_rtcp(
            rtcp.build_sr(self.ssrc, ntp_timestamp, (rtp_timestamp + munger.ts_offset) & 0xFFFFFFFF,
                          self.packets_sent & 0xFFFFFFFF, self.octets_sent & 0xFFFFFFFF)
        )

    # ------------------------------------------------------------ control path

    def resync(self) -> None:
        """Start again from the next keyframe of the wanted layer; numbers go on."""
        self.ready = self.active and not self.paused and not self.closed
        self.selector.restart()

    def set_paused(self, paused: bool) -> None:
        was = self.paused
        self.paused = paused
        if paused:
            self.ready = False
        elif was:
            self.resync()

    def set_viewport(self, width: int, height: int, visible: bool) -> None:
        """The subscriber's tile: hidden, nothing; else the smallest layer at least as
        tall as the tile (the top one when none is)."""
        self.viewport = (max(0, width), max(0, height), visible)
        self.retarget()

    def retarget(self) -> None:
        """Choose the target layer again (a new viewport, or a layer's size learned)."""
        if self.viewport is None:
            return
        _, height, visible = self.viewport
        if not visible:
            self.selector.set_target(-1)
            return
        heights = self.producer.heights()  # type: ignore[attr-defined]
        target = next((i for i, h in enumerate(heights) if h >= height), len(heights) - 1)
        self.selector.set_target(target)
