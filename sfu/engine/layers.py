"""Which simulcast layer one subscriber receives of one video track, decided per packet.

A simulcast producer receives up to three spatial layers (one SSRC each, 0 the lowest);
a VP8 layer also carries temporal layers (the payload descriptor's TID, 0..2). Each
subscriber gets one spatial layer and the temporal layers up to a maximum, as one
continuous stream (sfu/engine/munger.py).

Use, on the hot path (no I/O, no logging; `now` is the producer's clock, read once per
packet):

    info = PacketInfo("VP8")                  # one per producer, reused for every packet
    selector = LayerSelector(StreamMunger(ssrc, payload_type), layers=3)  # one per consumer
    ...
    if info.read(packet, spatial, now):       # once per incoming packet, for all consumers
        verdict = selector.process(info)      # once per consumer
        if verdict & PLI:                     # ask for a keyframe on layer pli_layer's SSRC
            ...selector.pli_layer...
        if verdict & FORWARD:                 # out values in selector.munger.out_*
            send(selector.munger.packet(info))

(`selector.process` is looked up each time: it changes with the selector's state.)

`set_target(spatial, temporal)` is the allocator's (control path). The selector keeps
forwarding the current spatial layer until the target's keyframe arrives, then starts the
munger on that keyframe (up- and downswitches alike); meanwhile it asks for a PLI on the
target layer at most once per `pli_interval` seconds. A layer from which nothing arrived
for `stall_after` seconds counts as stopped (the publisher paused it, dynacast, its
network): when the target has stopped the selector takes the best layer still flowing
(the highest below the target, else the lowest above) and returns to the target when it
flows again. Arrivals are the producer's (`PacketInfo.arrivals`), so a subscriber that
comes late sees at once which layers stopped; at the producer's start every layer counts
as flowing for `stall_after` seconds, so a subscriber starts on its target rather than
on whichever keyframe came first.

Codecs: VP8 (keyframe from the descriptor, TID, PictureID, TL0PICIDX) and H.264
(switches at an IDR or SPS, no temporal layers). Any other codec never yields a
keyframe here: give such tracks no selector.
"""

from __future__ import annotations

import struct

from sfu.engine.munger import DROP, FORWARD, LAYOUT_TL0, StreamMunger
from sfu.wire import codecs

__all__ = ["DROP", "FORWARD", "PLI", "LayerSelector", "PacketInfo"]

PLI = 2  # with DROP or FORWARD: a keyframe of layer `pli_layer` is wanted
MAX_LAYERS = 3

_SEQ_TS = struct.Struct("!HI")
_NEVER = -1e18


class PacketInfo:
    """What layer decisions need of one RTP packet, read once for every subscriber.

    spatial: the simulcast layer (0..2, from the SSRC; the caller knows); now: arrival
    time; seq, ts: RTP header fields; empty: nothing to forward (padding only, or a
    payload that cannot be read: a malformed VP8 descriptor); keyframe: the first packet
    of a keyframe (VP8: S=1, PID=0, P=0; H.264: an IDR or SPS NAL unit). VP8 descriptor
    fields are -1 when absent: tid, picture_id, tl0; layer_sync is the Y bit.

    The packet in parts every subscriber shares: `head`, its first two bytes with the
    payload type cleared; `middle`, from byte 12 (CSRCs, header extensions, the
    descriptor's first bytes) to `codec_start`; `tail`, from `codec_end` (the rest of the
    descriptor, the payload, padding). Between the two lie the PictureID and TL0PICIDX
    (`layout`: their widths, 0 when there are none), the only bytes after the fixed header
    a subscriber's copy differs in.

    `arrivals[layer]`: when the producer's last packet of each layer arrived (all of them
    the time of the first packet, at first): what the selectors judge stopped layers by.
    """

    __slots__ = (
        "codec",
        "arrivals",
        "spatial",
        "now",
        "seq",
        "ts",
        "head",
        "middle",
        "tail",
        "codec_start",
        "codec_end",
        "layout",
        "empty",
        "keyframe",
        "tid",
        "layer_sync",
        "picture_id",
        "tl0",
    )

    def __init__(self, codec_name: str) -> None:
        name = codec_name.lower().rpartition("/")[2]
        self.codec = 1 if name == "vp8" else 2 if name == "h264" else 0
        self.arrivals: list[float] = []
        self.spatial = 0
        self.now = 0.0
        self.seq = 0
        self.ts = 0
        self.head = 0
        self.middle = b""
        self.tail = b""
        self.codec_start = self.codec_end = 12
        self.layout = 0
        self.empty = True
        self.keyframe = False
        self.tid = -1
        self.layer_sync = False
        self.picture_id = -1
        self.tl0 = -1

    @property
    def picture_id_bits(self) -> int:
        """7 or 15 with a PictureID, else 0."""
        return self.layout & 0x1F

    @property
    def tl0_offset(self) -> int:
        """Where TL0PICIDX is in the packet (with one: tl0 >= 0)."""
        return self.codec_end - 1

    def read(self, packet, spatial: int, now: float) -> bool:
        """Read `packet` (bytes of one RTP packet of layer `spatial`). False when even its
        fixed header is missing (give it to no selector); a packet whose payload cannot be
        read is `empty`: the selector drops it without leaving a gap. The descriptor
        fields are meaningful only when not empty."""
        if len(packet) < 12 or not 0 <= spatial < MAX_LAYERS:
            return False
        arrivals = self.arrivals
        if not arrivals:
            arrivals += [now] * MAX_LAYERS  # every layer counts as flowing, at first
        arrivals[spatial] = now
        self.spatial = spatial
        self.now = now
        self.seq, self.ts = _SEQ_TS.unpack_from(packet, 2)
        self.head = packet[0] << 8 | packet[1] & 0x80
        self.keyframe = False
        self.empty = True
        # rtp.payload_offset's arithmetic, inlined: CSRCs, then the extension's length.
        first = packet[0]
        end = len(packet)
        offset = 12 + 4 * (first & 0x0F)
        if first & 0x10:
            if offset + 4 > end:
                return True
            offset += 4 + 4 * (packet[offset + 2] << 8 | packet[offset + 3])
        if first & 0x20:
            end -= packet[-1]  # RFC 3550 §5.1: the last octet counts the padding
        if end <= offset:
            return True
        if self.codec == 1:
            if self._read_vp8(packet, offset, end):
                self.middle = packet[12 : self.codec_start]
                self.tail = packet[self.codec_end :]
                return True
        else:
            self.empty = False
            if self.codec == 2:
                self.keyframe = codecs.h264_is_keyframe(packet, offset)
        self.layout = 0
        self.middle = packet[12:]
        self.tail = b""
        self.codec_start = self.codec_end = len(packet)
        return True

    def _read_vp8(self, packet, offset: int, end: int) -> int:
        """The RFC 7741 §4.2 descriptor at `offset`: the parse of
        sfu.wire.codecs.vp8_descriptor (test_munger.py checks they agree) without making
        an object per packet. Returns `layout`: 0 when the descriptor has neither PictureID
        nor TL0PICIDX, or cannot be read (then `empty` stays True)."""
        first = packet[offset]  # |X|R|N|S|R| PID |
        pos = offset + 1
        layout = 0
        tid = -1
        sync = False
        if first & 0x80:
            if pos >= end:
                return 0
            extension = packet[pos]  # |I|L|T|K| RSV |
            pos += 1
            if extension & 0x80:  # |M| PictureID |, 15 bits with M
                if pos >= end:
                    return 0
                self.codec_start = pos
                if packet[pos] & 0x80:
                    if pos + 1 >= end:
                        return 0
                    self.picture_id = (packet[pos] & 0x7F) << 8 | packet[pos + 1]
                    layout = 15
                    pos += 2
                else:
                    self.picture_id = packet[pos]
                    layout = 7
                    pos += 1
            if extension & 0x40:
                if pos >= end:
                    return 0
                self.tl0 = packet[pos]
                if not layout:
                    self.codec_start = pos
                layout |= LAYOUT_TL0
                pos += 1
            # PictureID and TL0PICIDX lie next to each other: the bytes a subscriber's differ in.
            self.codec_end = pos
            if extension & 0x30:  # |TID|Y| KEYIDX |
                if pos >= end:
                    return 0
                if extension & 0x20:
                    tid = packet[pos] >> 6
                    sync = bool(packet[pos] & 0x20)
                pos += 1
        if pos >= end:
            return 0  # a descriptor and no VP8 data
        self.empty = False
        # RFC 7741 §4.3: a keyframe starts with S=1, PID=0 and the payload header's P bit clear.
        self.keyframe = first & 0x17 == 0x10 and not packet[pos] & 0x01
        self.tid = tid
        self.layer_sync = sync
        if not layout & 0x1F:
            self.picture_id = -1
        if not layout & LAYOUT_TL0:
            self.tl0 = -1
        self.layout = layout
        return layout


class LayerSelector:
    """One subscriber's layer of one simulcast track (see the module docstring).

    `process(info)` is the one call per packet: DROP or FORWARD, with PLI added when a
    keyframe of layer `pli_layer` should be requested now. It is an attribute that changes
    with the state (the munger's `forward` itself while settled): look it up each time.

    current: the spatial layer being forwarded (-1: none yet, or paused); target: the
    allocator's choice (-1: forward nothing); settled: `current` while it is the target
    and flowing, else -1 (a caller may give a settled selector only the packets of that
    layer, and the others once that layer has stopped: it needs no others);
    `munger.max_tid` / `munger.target_tid`: the temporal ones.
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
        "settled",
        "process",
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
        self.settled = -1
        # process(info) -> DROP or FORWARD (| PLI), for one packet of any layer of the
        # track. Settled, it is the munger's forward itself (which hands packets of other
        # layers to _elsewhere): one call per packet; else _decide.
        self.process = self._decide
        munger.elsewhere = self._elsewhere
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
            self._settle(-1)
        self.munger.set_target_temporal(temporal)

    def _settle(self, layer: int) -> None:
        """`current` is the target and flows (layer), or not (-1): the one test the common
        path makes, set again at every change of target or current."""
        self.settled = layer
        self.process = self.munger.forward if layer >= 0 else self._decide

    # ------------------------------------------------------------------ hot path

    def _elsewhere(self, info: PacketInfo) -> int:
        """Settled, a packet of another layer: dropped, unless the current layer stopped."""
        if info.now - info.arrivals[self.current] < self.stall_after:
            return DROP
        return self._decide(info)

    # ------------------------------------------------------ switching (slow path)

    def _decide(self, info: PacketInfo) -> int:
        if self.target < 0:
            self.current = -1
            return DROP
        layer = info.spatial
        if layer >= self.layers:
            return DROP
        want = self._wanted(info.now, info.arrivals)
        if want == self.current:
            self._settle(want if want == self.target else -1)
            return self.munger.forward(info) if layer == want else DROP
        if layer == want and info.keyframe:
            self.current = want
            self._settle(want if want == self.target else -1)
            self.switches += 1
            return self.munger.start(info)
        # Waiting for the keyframe of `want`: the current layer goes on meanwhile.
        verdict = self.munger.forward(info) if layer == self.current else DROP
        if info.now - self._last_pli[want] >= self.pli_interval:
            self._last_pli[want] = info.now
            self.pli_layer = want
            verdict |= PLI
        return verdict

    def _wanted(self, now: float, seen: list[float]) -> int:
        """The target if it flows, else the best layer that does."""
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
