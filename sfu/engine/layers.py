"""Which simulcast layer one subscriber receives of one video track, decided per packet.

A simulcast producer receives up to three spatial layers (one SSRC each, 0 the lowest);
a VP8 layer also carries temporal layers (the payload descriptor's TID, 0..2). Each
subscriber gets one spatial layer and the temporal layers up to a maximum, as one
continuous stream (sfu/engine/munger.py).

Use, on the hot path (no I/O, no logging; `now` is the producer's clock, read once per
packet):

    info = PacketInfo("VP8")                  # one per producer, reused for every packet
    selector = LayerSelector(munger=StreamMunger(ssrc), layers=3)  # one per consumer
    ...
    if info.read(packet, spatial, now):       # once per incoming packet, for all consumers
        verdict = selector.process(info)      # once per consumer
        if verdict & PLI:                     # ask for a keyframe on layer pli_layer's SSRC
            ...selector.pli_layer...
        if verdict & FORWARD:                 # out values in selector.munger.out_*
            buf = bytearray(packet); selector.munger.rewrite(buf, info); send(buf)

`set_target(spatial, temporal)` is the allocator's (control path). The selector keeps
forwarding the current spatial layer until the target's keyframe arrives, then starts the
munger on that keyframe (up- and downswitches alike); meanwhile it asks for a PLI on the
target layer at most once per `pli_interval` seconds. A layer from which nothing arrived
for `stall_after` seconds counts as stopped (the publisher paused it, dynacast, its
network): when the target has stopped the selector takes the best layer still flowing
(the highest below the target, else the lowest above) and returns to the target when it
flows again. At the start every layer counts as flowing for `stall_after` seconds, so a
subscriber starts on its target rather than on whichever keyframe came first.

Codecs: VP8 (keyframe from the descriptor, TID, PictureID, TL0PICIDX) and H.264
(switches at an IDR or SPS, no temporal layers). Any other codec never yields a
keyframe here: give such tracks no selector.
"""

from __future__ import annotations

import struct

from sfu.engine.munger import DROP, FORWARD, StreamMunger
from sfu.wire import codecs, rtp

__all__ = ["DROP", "FORWARD", "PLI", "LayerSelector", "PacketInfo"]

PLI = 2  # with DROP or FORWARD: a keyframe of layer `pli_layer` is wanted

_SEQ_TS = struct.Struct("!HI")
_NEVER = -1e18


class PacketInfo:
    """What layer decisions need of one RTP packet, read once for every subscriber.

    spatial: the simulcast layer (from the SSRC; the caller knows); now: arrival time;
    seq, ts: RTP header fields; empty: nothing to forward (padding only, or a payload
    that cannot be read: a malformed VP8 descriptor); keyframe: the first packet of a
    keyframe (VP8: S=1, PID=0, P=0; H.264: an IDR or SPS NAL unit). VP8 descriptor fields
    are -1 when absent: tid, picture_id (with picture_id_bits, picture_id_offset into the
    packet), tl0 (with tl0_offset); layer_sync is the Y bit.
    """

    __slots__ = (
        "codec",
        "spatial",
        "now",
        "seq",
        "ts",
        "empty",
        "keyframe",
        "tid",
        "layer_sync",
        "picture_id",
        "picture_id_bits",
        "picture_id_offset",
        "tl0",
        "tl0_offset",
    )

    def __init__(self, codec_name: str) -> None:
        name = codec_name.lower().rpartition("/")[2]
        self.codec = 1 if name == "vp8" else 2 if name == "h264" else 0
        self.spatial = 0
        self.now = 0.0
        self.seq = 0
        self.ts = 0
        self.empty = True
        self.keyframe = False
        self.tid = -1
        self.layer_sync = False
        self.picture_id = -1
        self.picture_id_bits = 0
        self.picture_id_offset = 0
        self.tl0 = -1
        self.tl0_offset = 0

    def read(self, packet, spatial: int, now: float) -> bool:
        """Read `packet` (bytes of one RTP packet of layer `spatial`). False when even its
        fixed header is missing (give it to no selector); a packet whose payload cannot be
        read is `empty`: the selector drops it without leaving a gap. The descriptor
        fields are meaningful only when not empty."""
        if len(packet) < 12:
            return False
        self.spatial = spatial
        self.now = now
        self.seq, self.ts = _SEQ_TS.unpack_from(packet, 2)
        self.keyframe = False
        self.empty = True
        try:
            offset = rtp.payload_offset(packet)
        except ValueError:
            return True
        end = len(packet)
        if packet[0] & 0x20:
            end -= packet[-1]  # RFC 3550 §5.1: the last octet counts the padding
        if end <= offset:
            return True
        if self.codec == 1:
            self._read_vp8(packet, offset, end)
            return True
        self.empty = False
        if self.codec == 2:
            self.keyframe = codecs.h264_is_keyframe(packet, offset)
        return True

    def _read_vp8(self, packet, offset: int, end: int) -> None:
        try:
            desc = codecs.vp8_descriptor(packet, offset)
        except ValueError:
            return
        header = offset + desc.header_size
        if header >= end:
            return  # a descriptor and no VP8 data
        self.empty = False
        self.keyframe = desc.start_of_partition and desc.partition_id == 0 and not packet[header] & 0x01
        tid = desc.tid
        if tid is None:
            self.tid = -1
            self.layer_sync = False
        else:
            self.tid = tid
            self.layer_sync = desc.layer_sync
        if desc.picture_id is None:
            self.picture_id = -1
            self.picture_id_bits = 0
        else:
            self.picture_id = desc.picture_id
            self.picture_id_bits = desc.picture_id_bits
            self.picture_id_offset = desc.picture_id_offset
        if desc.tl0_pic_idx is None:
            self.tl0 = -1
        else:
            self.tl0 = desc.tl0_pic_idx
            self.tl0_offset = desc.tl0_pic_idx_offset


class LayerSelector:
    """One subscriber's layer of one simulcast track (see the module docstring).

    current: the spatial layer being forwarded (-1: none yet, or paused); target: the
    allocator's choice (-1: forward nothing); `munger.max_tid` / `munger.target_tid` the
    temporal ones. `process` returns DROP or FORWARD, with PLI added when a keyframe of
    layer `pli_layer` should be requested now.
    """

    __slots__ = (
        "munger",
        "layers",
        "target",
        "current",
        "pli_layer",
        "pli_interval",
        "stall_after",
        "switches",
        "_settled",
        "_seen",
        "_last_pli",
    )

    def __init__(
        self,
        munger: StreamMunger,
        layers: int = 3,
        target: int = 2,
        target_temporal: int = 2,
        pli_interval: float = 0.5,
        stall_after: float = 1.0,
    ) -> None:
        if not 1 <= layers <= 3:
            raise ValueError(f"layers: {layers!r}, expected 1..3")
        self.munger = munger
        self.layers = layers
        self.target = -1
        self.current = -1
        self.pli_layer = -1
        self.pli_interval = pli_interval
        self.stall_after = stall_after
        self.switches = 0  # spatial switches done (the first start included)
        # current == the layer wanted and the layer wanted == target: the one test the
        # common path makes. Every change of target or current sets it False.
        self._settled = False
        self._seen: list[float] | None = None  # per layer, when its last packet arrived
        self._last_pli = [_NEVER] * layers
        self.set_target(target, target_temporal)

    @property
    def current_temporal(self) -> int:
        return self.munger.max_tid

    @property
    def target_temporal(self) -> int:
        return self.munger.target_tid

    def set_target(self, spatial: int, temporal: int = 2) -> None:
        """What the allocator wants: a spatial layer (-1: nothing) and the highest TID."""
        spatial = -1 if spatial < 0 else min(spatial, self.layers - 1)
        if spatial != self.target:
            self.target = spatial
            self._settled = False
        self.munger.set_target_temporal(temporal)

    # ------------------------------------------------------------------ hot path

    def process(self, info: PacketInfo) -> int:
        """One packet of any layer of the track: DROP or FORWARD (| PLI)."""
        seen = self._seen
        if seen is None:
            seen = self._seen = [info.now] * self.layers  # every layer flowing, at first
        layer = info.spatial
        seen[layer] = info.now
        if self._settled:
            if layer == self.current:
                return self.munger.forward(info)
            if info.now - seen[self.current] < self.stall_after:
                return DROP
        return self._decide(info)

    # ------------------------------------------------------ switching (slow path)

    def _decide(self, info: PacketInfo) -> int:
        if self.target < 0:
            self.current = -1
            return DROP
        layer = info.spatial
        want = self._wanted(info.now)
        if want == self.current:
            self._settled = want == self.target
            return self.munger.forward(info) if layer == want else DROP
        if layer == want and info.keyframe:
            self.current = want
            self._settled = want == self.target
            self.switches += 1
            return self.munger.start(info)
        # Waiting for the keyframe of `want`: the current layer goes on meanwhile.
        verdict = self.munger.forward(info) if layer == self.current else DROP
        if info.now - self._last_pli[want] >= self.pli_interval:
            self._last_pli[want] = info.now
            self.pli_layer = want
            verdict |= PLI
        return verdict

    def _wanted(self, now: float) -> int:
        """The target if it flows, else the best layer that does."""
        seen = self._seen or ()
        stall = self.stall_after
        target = self.target
        if now - seen[target] < stall:
            return target
        for layer in range(target - 1, -1, -1):
            if now - seen[layer] < stall:
                return layer
        for layer in range(target + 1, self.layers):
            if now - seen[layer] < stall:
                return layer
        return self.current if self.current >= 0 else target
