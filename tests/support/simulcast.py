"""Simulcast VP8 (and H.264) RTP packets as a Chromium publisher sends them, and a
subscriber's side of sfu.engine.layers, for the tests of layer switching.

    source = Simulcast()                        # three layers, L1T3, 30 fps
    sub = Subscriber(LayerSelector(StreamMunger(5555, PT)))
    sub.feed(source.frames(10, keyframes={0: [0]}))
    assert sub.out[0].keyframe

Every layer has its own SSRC, random sequence number, timestamp and PictureID bases, and
its own TL0PICIDX; a captured frame goes out as 1, 2 and 3 packets (layers 0, 1, 2), the
layers interleaved as they leave the publisher. TIDs follow the L1T3 pattern 0, 2, 1, 2
(reset by a keyframe); the first TL1 and TL2 frame after a keyframe has the Y bit.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import pairwise

from sfu.engine.layers import FORWARD, PLI, LayerSelector
from sfu.engine.packet_info import PacketInfo
from sfu.wire import codecs, rtp

PT = 96
CLOCK = 90000
TID_PATTERN = (0, 2, 1, 2)


def vp8_payload(
    *,
    picture_id: int | None = None,
    pid_bits: int = 15,
    tl0: int | None = None,
    tid: int | None = None,
    layer_sync: bool = False,
    keyframe: bool = False,
    start: bool = True,
    size: int = 40,
) -> bytes:
    """An RFC 7741 payload descriptor and `size` bytes of VP8 data."""
    ext = 0
    fields = bytearray()
    if picture_id is not None:
        ext |= 0x80
        if pid_bits == 15:
            fields += bytes((0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF))
        else:
            fields.append(picture_id & 0x7F)
    if tl0 is not None:
        ext |= 0x40
        fields.append(tl0 & 0xFF)
    if tid is not None:
        ext |= 0x20
        fields.append(tid << 6 | (0x20 if layer_sync else 0))
    first = (0x80 if ext else 0) | (0x10 if start else 0)
    head = bytes((first, ext)) + fields if ext else bytes((first,))
    if start:
        # VP8 payload header: bit 0 of the first byte is the inverse key frame flag.
        body = (b"\x00\x00\x00\x9d\x01\x2a" if keyframe else b"\x01\x00\x00") + b"v" * size
    else:
        body = b"c" * size
    return head + body


@dataclass
class Layer:
    spatial: int
    ssrc: int
    seq: int
    ts: int
    pid: int
    tl0: int
    packets: int  # per frame
    index: int = 0  # position in the TID pattern
    synced: set[int] = field(default_factory=set)  # TIDs already sent since the keyframe
    active: bool = True


class Simulcast:
    """A VP8 publisher of `layers` simulcast layers; `frames` makes packets, in order."""

    def __init__(
        self,
        layers: int = 3,
        fps: int = 30,
        now: float = 100.0,
        seed: int = 7,
        pid_bits: int = 15,
        temporal: bool = True,
        seqs: tuple[int, ...] | None = None,
        pids: tuple[int, ...] | None = None,
        tl0s: tuple[int, ...] | None = None,
        packets: tuple[int, ...] = (1, 2, 3),
    ) -> None:
        rnd = random.Random(seed)
        self.fps = fps
        self.now = now
        self.pid_bits = pid_bits
        self.temporal = temporal
        pid_mask = 0x7FFF if pid_bits == 15 else 0x7F
        self.layers = [
            Layer(
                spatial=i,
                ssrc=1000 + i,
                seq=seqs[i] if seqs else rnd.getrandbits(16),
                ts=rnd.getrandbits(32),
                pid=pids[i] if pids else rnd.getrandbits(15) & pid_mask,
                tl0=tl0s[i] if tl0s else rnd.getrandbits(8),
                packets=packets[i],
            )
            for i in range(layers)
        ]

    def frame(self, keyframes=()) -> list[tuple[int, bytes, float]]:
        """One captured frame from every active layer: [(spatial, packet, arrival)], and
        time moves on by one frame. `keyframes`: the layers that send a keyframe."""
        out = []
        step = 0.001
        for layer in self.layers:
            if not layer.active:
                continue
            key = layer.spatial in keyframes
            if key:
                layer.index = 0
                layer.synced = set()
            tid = TID_PATTERN[layer.index % 4] if self.temporal else None
            layer.index += 1
            sync = tid is not None and tid > 0 and tid not in layer.synced
            if sync:
                layer.synced.add(tid)
            if tid == 0 or tid is None:
                layer.tl0 = (layer.tl0 + 1) & 0xFF
            pid_mask = 0x7FFF if self.pid_bits == 15 else 0x7F
            layer.pid = (layer.pid + 1) & pid_mask
            layer.ts = (layer.ts + CLOCK // self.fps) & 0xFFFFFFFF
            for k in range(layer.packets):
                payload = vp8_payload(
                    picture_id=layer.pid,
                    pid_bits=self.pid_bits,
                    tl0=layer.tl0 if self.temporal else None,
                    tid=tid,
                    layer_sync=sync,
                    keyframe=key and k == 0,
                    start=k == 0,
                )
                layer.seq = (layer.seq + 1) & 0xFFFF
                packet = rtp.build_packet(PT, layer.seq, layer.ts, layer.ssrc, payload, marker=k == layer.packets - 1)
                out.append((layer.spatial, packet, self.now + step))
                step += 0.0005
        self.now += 1 / self.fps
        return out

    def frames(self, count: int, keyframes: dict[int, list[int]] | None = None) -> list[tuple[int, bytes, float]]:
        """`count` frames; keyframes: {frame number (0-based, of this call): [layers]}."""
        out = []
        for n in range(count):
            out += self.frame((keyframes or {}).get(n, ()))
        return out

    def padding(self, spatial: int, size: int = 200) -> tuple[int, bytes, float]:
        """A padding-only packet of a layer (its next sequence number, the last timestamp)."""
        layer = self.layers[spatial]
        layer.seq = (layer.seq + 1) & 0xFFFF
        return spatial, rtp.build_packet(PT, layer.seq, layer.ts, layer.ssrc, b"", padding=size), self.now


@dataclass
class Out:
    """One packet as the subscriber received it, and what it was made from."""

    seq: int
    ts: int
    ssrc: int
    marker: bool
    picture_id: int | None
    pid_bits: int
    tl0: int | None
    tid: int | None
    keyframe: bool
    start: bool
    spatial: int
    in_seq: int
    packet: bytes


class Subscriber:
    """Feeds packets through PacketInfo and a LayerSelector, keeps what goes out and PLIs."""

    def __init__(self, selector: LayerSelector, codec: str = "VP8") -> None:
        self.selector = selector
        self.info = PacketInfo(codec)
        self.out: list[Out] = []
        self.plis: list[tuple[float, int]] = []
        self.verdicts: list[int] = []
        self.received: dict[tuple[int, int], bytes] = {}  # (layer, seq): what a packet cache keeps

    def feed(self, packets) -> list[Out]:
        """Process packets; returns those that went out."""
        sent = len(self.out)
        for spatial, packet, now in packets:
            self.one(spatial, packet, now)
        return self.out[sent:]

    def one(self, spatial: int, packet: bytes, now: float) -> int:
        info = self.info
        if len(packet) >= 4:
            self.received[(spatial, packet[2] << 8 | packet[3])] = packet
        if not info.read(packet, spatial, now):
            self.verdicts.append(0)
            return 0
        verdict = self.selector.process(info)
        self.verdicts.append(verdict)
        if verdict & PLI:
            self.plis.append((now, self.selector.pli_layer))
        if verdict & FORWARD:
            data = self.selector.munger.packet(info)
            buf = bytearray(packet)
            self.selector.munger.rewrite(buf, info)
            assert bytes(buf) == data, "packet() and rewrite() disagree"
            self.out.append(parse_out(data, spatial, info.seq, self.info.codec == 1))
        return verdict


def parse_out(data: bytes, spatial: int, in_seq: int, vp8: bool = True) -> Out:
    header = rtp.parse_header(data)
    offset = header.header_length
    if vp8:
        desc = codecs.vp8_descriptor(data, offset)
        keyframe = codecs.vp8_is_keyframe(data, offset)
        pid, bits, tl0, tid, start = (
            desc.picture_id,
            desc.picture_id_bits,
            desc.tl0_pic_idx,
            desc.tid,
            desc.start_of_partition and desc.partition_id == 0,
        )
    else:
        keyframe = codecs.h264_is_keyframe(data, offset)
        pid, bits, tl0, tid, start = None, 0, None, None, True
    return Out(
        header.sequence_number,
        header.timestamp,
        header.ssrc,
        header.marker,
        pid,
        bits,
        tl0,
        tid,
        keyframe,
        start,
        spatial,
        in_seq,
        data,
    )


def assert_seamless(out: list[Out], seq_gaps: int = 0, pid_gaps: int = 0) -> None:
    """What a decoder needs of a stream: it starts with a keyframe and every change of
    source layer is at one; one SSRC; sequence numbers without duplicates and with exactly
    `seq_gaps` numbers missing; timestamps never backwards, one per frame; PictureID one
    more per frame (`pid_gaps` missing in all); TL0PICIDX one more at each TL0 frame and
    unchanged otherwise (both wrapping)."""
    assert out, "nothing went out"
    assert out[0].keyframe, "the first packet out is not the start of a keyframe"
    assert len({o.ssrc for o in out}) == 1
    seqs = [o.seq for o in out]
    assert len(set(seqs)) == len(seqs), "duplicate sequence numbers"
    missing = missing_pids = 0
    for prev, cur in pairwise(out):
        step = (cur.seq - prev.seq) & 0xFFFF
        assert 1 <= step < 0x8000, f"sequence went back: {prev.seq} -> {cur.seq}"
        missing += step - 1
        assert (cur.ts - prev.ts) & 0xFFFFFFFF < 0x80000000, f"timestamp went back: {prev.ts} -> {cur.ts}"
        if cur.spatial != prev.spatial:
            assert cur.keyframe, f"switch to layer {cur.spatial} not at a keyframe (seq {cur.seq})"
        same_frame = cur.ts == prev.ts
        pid_step = 1
        if cur.picture_id is not None and prev.picture_id is not None:
            mask = 0x7FFF if cur.pid_bits == 15 else 0x7F
            pid_step = (cur.picture_id - prev.picture_id) & mask
            if same_frame:
                assert pid_step == 0, f"one frame, two PictureIDs at seq {cur.seq}"
            else:
                assert pid_step >= 1, f"PictureID did not advance at seq {cur.seq}"
                missing_pids += pid_step - 1
        if cur.tl0 is not None and prev.tl0 is not None and pid_step <= 1:
            if same_frame or cur.tid != 0:
                assert cur.tl0 == prev.tl0, f"TL0PICIDX changed within a TL0 period at seq {cur.seq}"
            else:
                assert cur.tl0 == (prev.tl0 + 1) & 0xFF, f"TL0PICIDX {prev.tl0} -> {cur.tl0} at seq {cur.seq}"
    assert missing == seq_gaps, f"{missing} sequence numbers missing, expected {seq_gaps}"
    assert missing_pids == pid_gaps, f"{missing_pids} PictureIDs missing, expected {pid_gaps}"


def frame_starts(out: list[Out]) -> list[Out]:
    """The first packet out of each frame."""
    return [o for i, o in enumerate(out) if i == 0 or o.ts != out[i - 1].ts]
