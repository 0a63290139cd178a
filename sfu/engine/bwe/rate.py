"""Turning signals into a rate: acknowledged throughput, AIMD on the delay signal, and
the loss-based cap.

- `AckedBitrate`: what the receiver actually got, measured on *its* clock (bytes over
  arrival time, the newest ~300 ms). At a saturated bottleneck this is the capacity
  itself, which is why a backoff is taken from it, not from what we were sending.
- `AimdRateControl` (after libwebrtc aimd_rate_control.cc): OVERUSING → decrease to
  0.85 × acknowledged (at most once per RTT unless the throughput fell below half the
  estimate), then hold until the queue drains; NORMAL → increase. How fast depends on
  `LinkCapacity`, a running average of the throughput at which we last saw overuse:
  far from it (or none known), multiplicative (8 %/s: we do not know where the ceiling
  is); near it (within 3 deviations), additive (about one packet per response time: we
  do, and overshooting it costs a queue). Never above 1.5 × acknowledged + 10 kbit/s, so
  a sender that is not using its estimate does not inflate it unchecked.
  A queue standing on the path (`sfu.engine.bwe.delay.QueueDelay`, beyond
  QUEUE_TOLERANCE_US) holds increases and caps the rate at a fraction of the known
  capacity, 1 - (excess queue in s) / DRAIN_S (at least half), so a second of queue
  drains in about DRAIN_S instead of the many seconds 0.85 × capacity would take. The cap
  is taken from the capacity at the last overuse, not from the acknowledged rate, which
  follows our own sending: a cap on a cap would spiral down if the delay floor were wrong.
- `LossBasedControl` (after libwebrtc send_side_bandwidth_estimation.cc): the loss
  fraction over intervals of at least 1 s and 20 packets (per 50-100 ms feedback the
  fraction is too noisy: one lost packet of fifteen reads as 7 %); under 2 % the cap may
  grow 8 %/s, 2-10 % it holds (a lossy Wi-Fi link is not congestion: backing off would
  not reduce the loss, only the video), over 10 % it shrinks by (1 - loss / 2), at most
  once per 300 ms + RTT.

Rates are bit/s (floats inside, the estimator rounds); times µs.
"""

from __future__ import annotations

import math
from collections import deque

from sfu.engine.bwe.delay import NORMAL, OVERUSING

ACKED_WINDOW_US = 300_000
ACKED_MIN_PACKETS = 8  # widen the window (up to the max) until it holds this many
ACKED_MAX_WINDOW_US = 1_000_000
ACKED_MIN_SPAN_US = 20_000

BACKOFF = 0.85
MULTIPLICATIVE_PER_S = 1.08
MIN_MULTIPLICATIVE_BPS = 1_000
MIN_ADDITIVE_BPS_PER_S = 4_000
THROUGHPUT_CAP_FACTOR = 1.5
THROUGHPUT_CAP_OFFSET_BPS = 10_000
DEFAULT_RTT_US = 200_000
CAPACITY_SMOOTHING = 0.05
CAPACITY_DEVIATIONS = 3.0

QUEUE_TOLERANCE_US = 50_000
DRAIN_S = 1.0
MIN_DRAIN_FRACTION = 0.5

HOLD = 0
INCREASE = 1
DECREASE = 2

LOSS_INTERVAL_US = 1_000_000
LOSS_MIN_PACKETS = 20
LOSS_LOW = 0.02
LOSS_HIGH = 0.10
LOSS_INCREASE_PER_S = 1.08
LOSS_INCREASE_OFFSET_BPS = 1_000
LOSS_DECREASE_INTERVAL_US = 300_000


class AckedBitrate:
    """Received bytes over receiver time, over the newest ACKED_WINDOW_US of arrivals:
    `add` each received packet of a feedback, then `update` once."""

    __slots__ = ("_packets", "_bytes", "_newest_us", "bps")

    def __init__(self) -> None:
        self._packets: deque[tuple[int, int]] = deque()
        self._bytes = 0
        self._newest_us: int | None = None
        self.bps: float | None = None  # None until there is a span to measure over

    def add(self, arrival_us: int, size: int) -> None:
        newest = self._newest_us
        if newest is None or arrival_us > newest:
            self._newest_us = arrival_us
        elif arrival_us < newest - ACKED_MAX_WINDOW_US:
            return  # far older than what we hold: a late report, no rate information
        self._packets.append((arrival_us, size))
        self._bytes += size

    def add_results(self, results) -> None:
        """`add` for each received result of a feedback (`sfu.engine.bwe.send_log.PacketResult`,
        arrival_us set), in one call: a feedback reports hundreds."""
        packets = self._packets
        newest = self._newest_us
        total = self._bytes
        for result in results:
            arrival_us = result.arrival_us
            if newest is None or arrival_us > newest:
                newest = arrival_us
            elif arrival_us < newest - ACKED_MAX_WINDOW_US:
                continue  # far older than what we hold: a late report, no rate information
            size = result.size
            packets.append((arrival_us, size))
            total += size
        self._newest_us = newest
        self._bytes = total

    def update(self) -> float | None:
        packets, newest = self._packets, self._newest_us
        if newest is None:
            return None
        while len(packets) > 1:
            oldest_us, oldest_size = packets[0]
            span = newest - oldest_us
            if span > ACKED_MAX_WINDOW_US or (span > ACKED_WINDOW_US and len(packets) > ACKED_MIN_PACKETS):
                packets.popleft()
                self._bytes -= oldest_size
            else:
                break
        oldest_us, oldest_size = packets[0]
        span = newest - oldest_us
        if len(packets) >= 2 and span >= ACKED_MIN_SPAN_US:
            # The oldest packet's bytes arrived before the span began.
            self.bps = (self._bytes - oldest_size) * 8_000_000 / span
        return self.bps


class LinkCapacity:
    """Where the last overuses happened (kbit/s, with a normalised deviation), so the rate
    control knows whether it is near the ceiling."""

    __slots__ = ("estimate_kbps", "_deviation")

    def __init__(self) -> None:
        self.estimate_kbps: float | None = None
        self._deviation = 0.4

    def reset(self) -> None:
        self.estimate_kbps = None

    def on_overuse(self, acked_bps: float) -> None:
        sample = acked_bps / 1000
        estimate = self.estimate_kbps
        alpha = CAPACITY_SMOOTHING
        estimate = sample if estimate is None else (1 - alpha) * estimate + alpha * sample
        error = estimate - sample
        deviation = (1 - alpha) * self._deviation + alpha * error * error / max(estimate, 1.0)
        self._deviation = min(max(deviation, 0.4), 2.5)
        self.estimate_kbps = estimate

    def _spread_kbps(self) -> float:
        return math.sqrt(self._deviation * (self.estimate_kbps or 0.0))

    def upper_bps(self) -> float:
        if self.estimate_kbps is None:
            return math.inf
        return (self.estimate_kbps + CAPACITY_DEVIATIONS * self._spread_kbps()) * 1000

    def lower_bps(self) -> float:
        if self.estimate_kbps is None:
            return 0.0
        return max(0.0, self.estimate_kbps - CAPACITY_DEVIATIONS * self._spread_kbps()) * 1000


class AimdRateControl:
    """The delay-based estimate: additive increase near the known ceiling, multiplicative
    far from it, multiplicative decrease on overuse."""

    __slots__ = ("bps", "min_bps", "max_bps", "state", "capacity", "_last_change_us", "last_decrease_us", "_excess_us")

    def __init__(self, start_bps: float, min_bps: float, max_bps: float) -> None:
        self.bps = start_bps
        self.min_bps = min_bps
        self.max_bps = max_bps
        self.state = HOLD
        self.capacity = LinkCapacity()
        self._last_change_us: int | None = None
        self.last_decrease_us: int | None = None
        self._excess_us = 0  # queue delay beyond the tolerance, at the last update

    @property
    def queue_standing(self) -> bool:
        return self._excess_us > 0

    @property
    def target_bps(self) -> float:
        """The estimate, lowered while a standing queue drains."""
        excess = self._excess_us
        capacity = self.capacity.estimate_kbps
        if not excess or capacity is None:
            return self.bps
        fraction = max(MIN_DRAIN_FRACTION, 1 - excess / 1e6 / DRAIN_S)
        return max(self.min_bps, min(self.bps, fraction * capacity * 1000))

    def may_reduce_further(self, now_us: int, rtt_us: int, acked_bps: float) -> bool:
        """Another decrease now? Once per RTT (10-200 ms), or at once if the throughput
        fell below half the estimate (the first backoff did not reach the new capacity)."""
        last = self._last_change_us
        if last is None or now_us - last >= min(max(rtt_us, 10_000), 200_000):
            return True
        return acked_bps < 0.5 * self.bps

    def set_estimate(self, bps: float, now_us: int) -> None:
        """Jump to `bps` (a probe's measurement)."""
        if bps < self.bps:
            self.last_decrease_us = now_us
        self.bps = self._clamp(bps)
        self._last_change_us = now_us

    def update(self, usage: int, acked_bps: float | None, now_us: int, rtt_us: int, queue_us: int = 0) -> float:
        self._excess_us = max(0, queue_us - QUEUE_TOLERANCE_US)
        if usage == OVERUSING:
            if self.state != DECREASE:
                self.state = DECREASE
        elif usage == NORMAL:
            if self.state == HOLD:
                self._last_change_us = now_us
                self.state = INCREASE
        else:  # UNDERUSING: the queue is draining; let it
            self.state = HOLD
        if acked_bps is None:
            if self.state == DECREASE:
                # Overuse before any throughput is known: halve, the reference's fallback.
                self.set_estimate(self.bps / 2, now_us)
                self.state = HOLD
            return self.bps
        if self.state == INCREASE:
            if self._excess_us:
                self._last_change_us = now_us  # a queue stands: no growth until it drains
            else:
                self._increase(acked_bps, now_us, rtt_us)
        elif self.state == DECREASE:
            self._decrease(acked_bps, now_us)
        return self.bps

    def _increase(self, acked_bps: float, now_us: int, rtt_us: int) -> None:
        capacity = self.capacity
        if acked_bps > capacity.upper_bps():
            capacity.reset()  # the ceiling moved up: we are no longer near it
        limit = THROUGHPUT_CAP_FACTOR * acked_bps + THROUGHPUT_CAP_OFFSET_BPS
        last = self._last_change_us if self._last_change_us is not None else now_us
        elapsed_s = max(0, now_us - last) / 1e6
        if self.bps < limit:
            if capacity.estimate_kbps is not None:
                increased = self.bps + self._near_ceiling_bps_per_s(rtt_us) * elapsed_s
            else:
                factor = MULTIPLICATIVE_PER_S ** min(elapsed_s, 1.0)
                increased = self.bps + max(self.bps * (factor - 1), MIN_MULTIPLICATIVE_BPS)
            self.bps = self._clamp(min(increased, limit))
        self._last_change_us = now_us

    def _near_ceiling_bps_per_s(self, rtt_us: int) -> float:
        # About one average packet per response time (RTT + the detector's ~100 ms, twice
        # as in the reference's adaptive-threshold mode), for 30 fps video.
        frame_bits = self.bps / 30
        packets_per_frame = math.ceil(frame_bits / (1200 * 8))
        packet_bits = frame_bits / max(packets_per_frame, 1)
        response_s = 2 * (rtt_us + 100_000) / 1e6
        return max(MIN_ADDITIVE_BPS_PER_S, packet_bits / response_s)

    def _decrease(self, acked_bps: float, now_us: int) -> None:
        capacity = self.capacity
        decreased = BACKOFF * acked_bps
        if decreased > self.bps and capacity.estimate_kbps is not None:
            decreased = BACKOFF * capacity.estimate_kbps * 1000
        if decreased < self.bps:
            self.bps = self._clamp(decreased)
            self.last_decrease_us = now_us
        if acked_bps < capacity.lower_bps():
            capacity.reset()  # far below where congestion used to be: the link changed
        capacity.on_overuse(acked_bps)
        self.state = HOLD  # until the queue we built has drained
        self._last_change_us = now_us

    def _clamp(self, bps: float) -> float:
        return min(max(bps, self.min_bps), self.max_bps)


class LossBasedControl:
    """A cap from the loss fraction, evaluated per interval (see the module docstring)."""

    __slots__ = ("bps", "_lost", "_expected", "_interval_start_us", "_last_update_us", "last_decrease_us", "fraction")

    def __init__(self, start_bps: float) -> None:
        self.bps = start_bps
        self._lost = 0
        self._expected = 0
        self._interval_start_us: int | None = None
        self._last_update_us: int | None = None
        self.last_decrease_us: int | None = None
        self.fraction = 0.0  # of the last evaluated interval

    def add(self, expected: int, lost: int, now_us: int) -> None:
        """`expected` packets newly reported, `lost` of them lost (negative: earlier losses
        that arrived after all)."""
        if self._interval_start_us is None:
            self._interval_start_us = now_us
        self._expected += expected
        self._lost += lost

    def update(self, now_us: int, rtt_us: int, ceiling_bps: float) -> bool:
        """Evaluate the interval if it is complete; the cap never exceeds `ceiling_bps`
        (the delay-based estimate: loss only ever lowers). True if the cap changed."""
        start = self._interval_start_us
        if start is None or now_us - start < LOSS_INTERVAL_US or self._expected < LOSS_MIN_PACKETS:
            return False
        fraction = min(max(self._lost, 0) / self._expected, 1.0)
        self.fraction = fraction
        last = self._last_update_us if self._last_update_us is not None else start
        elapsed_s = min(max(now_us - last, 0) / 1e6, 1.0)
        self._interval_start_us = now_us
        self._last_update_us = now_us
        self._expected = self._lost = 0
        before = self.bps
        if fraction < LOSS_LOW:
            self.bps = self.bps * LOSS_INCREASE_PER_S**elapsed_s + LOSS_INCREASE_OFFSET_BPS * elapsed_s
        elif fraction > LOSS_HIGH:
            last_decrease = self.last_decrease_us
            if last_decrease is None or now_us - last_decrease >= LOSS_DECREASE_INTERVAL_US + rtt_us:
                self.bps *= 1 - 0.5 * fraction
                self.last_decrease_us = now_us
        self.bps = min(self.bps, ceiling_bps)
        return self.bps != before

    def raise_to(self, bps: float) -> None:
        """A probe measured `bps` through the path: the loss cap may start there."""
        if bps > self.bps:
            self.bps = bps
