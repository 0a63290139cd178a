"""What a stream costs to forward, measured: a byte count kept on the hot path, a rate
computed on the control path.

The packet path only adds each packet's length to an int it owns (`Layer.octets`,
`Producer.octets`); the worker's clockwork calls `BitrateMeter.sample(octets, now)`
about once a second. An encoder's rate control swings ±20 % from one second to the next
and a keyframe doubles a second's bytes: the allocator is fed the highest one-second
rate of the last WINDOW samples (`bps`), so that a track it has given a layer is not cut
by the next ordinary swing (sfu.engine.allocator's docstring: "feed a smoothed value").

A stream that stops (the publisher paused that simulcast encoding: dynacast; or its
network) measures 0 after a window; `last_bps` keeps the last rate it had while it
flowed, which is what asking for it back would cost.

Pure: time is given (seconds), no I/O.
"""

from __future__ import annotations

WINDOW = 4  # one-second samples the smoothed rate looks back on
MIN_SPAN_S = 0.5  # a shorter interval is not a rate yet (samples taken too close)


class BitrateMeter:
    __slots__ = ("_octets", "_at", "_rates", "bps", "last_bps")

    def __init__(self) -> None:
        self._octets = 0
        self._at: float | None = None
        self._rates: list[int] = []
        self.bps = 0  # the highest one-second rate of the last WINDOW samples
        self.last_bps = 0  # `bps` at the last sample the stream flowed in (0: never measured)

    def sample(self, octets: int, now: float) -> None:
        """`octets`: the stream's byte count so far (it only grows)."""
        if self._at is None:
            self._octets, self._at = octets, now
            return
        span = now - self._at
        if span < MIN_SPAN_S:
            return
        rate = int((octets - self._octets) * 8 / span)
        self._octets, self._at = octets, now
        rates = self._rates
        rates.append(max(0, rate))
        if len(rates) > WINDOW:
            del rates[0]
        self.bps = max(rates)
        if rate > 0:  # still flowing: what it costs (not the window's decay after it stopped)
            self.last_bps = self.bps

    @property
    def cost_bps(self) -> int:
        """What forwarding the stream would cost: its rate now, else while it last flowed
        (0: never measured)."""
        return self.bps or self.last_bps
