"""Dynacast, the worker's side (issue 11, item 5): which simulcast layers of a producer
some consumer takes, so that the publisher may stop encoding the others.

A consumer takes its selector's target layer, the layer it forwards now (until the
switch to the target happens, the current one still has to flow) and the layer its
subscriber's tile asks for (its allocation's ladder top) with those below it (the
subscriber's way up as its estimate grows), whatever that subscriber's
bandwidth allows today: like LiveKit's subscribed quality, what the publisher encodes
follows what is watched, not one subscriber's estimate (a subscriber that starts at
300 kbit/s and is probed up, or dips for a while, would otherwise switch the top layer
off for everyone, and then wait for the publisher's encoder to ramp it back). A
hidden tile or one cut by last-N asks for none. A consumer nobody
allocates (the recorder's plain-transport consumer, a transport without an allocator)
keeps the target it was made with, the top layer, so it takes the highest.
`sfu.engine.simulcast.SimulcastProducer.taken_layers` collects that set.

`LayerDemand` turns the set, sampled on a timer, into what the publisher is told:
a layer someone starts to take is wanted at once (a subscriber waits for it: its
selector sends what flows meanwhile, `sfu.engine.layers.LayerSelector.stall_after`);
a layer nobody takes stays wanted for `hold_s` more (a subscriber's allocation that
dips for a moment must not cost the publisher a keyframe on every layer). With no
consumer at all, nothing is wanted after the hold.

Pure: time is given (seconds), no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

HOLD_S = 3.0


class LayerDemand:
    """The wanted layers of one simulcast producer (all of them, at first: the
    publisher starts by sending every encoding)."""

    __slots__ = ("hold_s", "wanted", "_layers", "_last_taken")

    def __init__(self, layers: int, hold_s: float = HOLD_S) -> None:
        self.hold_s = hold_s
        self.wanted = frozenset(range(layers))
        self._layers = layers
        self._last_taken: list[float] | None = None  # when each layer was last taken


    def update(self, taken: Iterable[int], now: float) -> frozenset[int] | None:
        """The layers consumers take now: the new wanted set when it changed, else None."""
        last = self._last_taken
        if last is None:  # the first look: every layer counts as just taken (the hold starts)
            last = self._last_taken = [now] * self._layers
        for index in taken:
            if 0 <= index < len(last):
                last[index] = now
        wanted = frozenset(i for i, at in enumerate(last) if now - at < self.hold_s)
        if wanted == self.wanted:
            return None
        self.wanted = wanted
        return wanted

    @property
    def paused(self) -> int:
        """Layers the publisher is told to pause."""
        return self._layers - len(self.wanted)
