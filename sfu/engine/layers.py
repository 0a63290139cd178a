"""Which simulcast layer one subscriber receives of one video track, decided per packet.

A simulcast producer receives up to three spatial layers (one SSRC each, 0 the lowest);
a VP8 layer also carries temporal layers (the payload descriptor's TID, 0..2). Each
subscriber gets one spatial layer and the temporal layers up to a maximum, as one
continuous stream (sfu/engine/munger.py).

Use, on the hot path (no I/O, no logging; `now` is the producer's clock, read once per
packet; PacketInfo is sfu/engine/packet_info.py's):

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

from collections.abc import Callable

from sfu.engine.munger import DROP, FORWARD, StreamMunger
from sfu.engine.packet_info import PacketInfo

__all__ = ["DROP", "FORWARD", "PLI", "LayerSelector"]

PLI = 2  # with DROP or FORWARD: a keyframe of layer `pli_layer` is wanted

_NEVER = -1e18


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
        "on_settled",
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
        # Told (no arguments) whenever `settled` changes: a caller that gives a settled
        # selector only its layer's packets regroups then.
        self.on_settled: Callable[[], None] | None = None
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

    def restart(self) -> None:
        """Start again from the next keyframe of the wanted layer (after a pause, or when
        the subscriber's transport (re)connects); the munger's numbers go on."""
        self.current = -1
        self._last_pli = [_NEVER] * self.layers
        self._settle(-1)

    def _settle(self, layer: int) -> None:
        """`current` is the target and flows (layer), or not (-1): the one test the common
        path makes, set again at every change of target or current."""
        if layer != self.settled:
            self.settled = layer
            if self.on_settled is not None:
                self.on_settled()
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
