"""Delay-based congestion detection: is the queue at the bottleneck growing?

When we send faster than the path's bottleneck drains, a queue builds there and each
packet waits a little longer than the one before: the one-way delay *trends upward*
long before anything is dropped. We cannot measure one-way delay (the receiver's clock is
unrelated to ours), but its *variation* is measurable from differences alone:
(arrival_j - arrival_i) - (send_j - send_i). Three stages, after libwebrtc's goog_cc
(inter_arrival.cc, trendline_estimator.cc); the constants are theirs, tuned on real paths:

1. `PacketGrouper`: packets sent within 5 ms of each other form one group (a video
   frame leaves in a burst; comparing single packets inside a burst measures the pacer,
   not the path). Each completed group yields one delay variation against the previous
   group: (send delta, arrival delta) of their last packets.
2. `TrendlineFilter`: the variations are accumulated into a delay curve, smoothed
   (exponential, 0.9), and a least-squares line is fitted over the last 20 points; its
   slope (ms of added delay per ms) is the trend. A filter, not a threshold on raw
   jitter: Wi-Fi jitter of ±20 ms has no slope, a queue growing by 2 ms per 100 ms has.
3. `OveruseDetector`: the slope, scaled by how many samples back it (up to 60) and a gain
   of 4, is compared with a threshold that adapts to the path (rises slowly toward what
   it sees, so a jittery path does not read as permanently overused; falls faster, so a
   clean path stays sensitive). Above it for more than 10 ms and two samples, with the
   trend still rising: OVERUSING. Below minus the threshold: UNDERUSING (a queue
   draining). Otherwise NORMAL.

A slope cannot see a queue that stopped growing: after a 2 Mbit/s → 300 kbit/s step the
first backoffs leave a second or more standing in a deep buffer (a home router, a tbf
with `latency 400ms`), and at 0.85 × capacity it drains at 15 % of capacity, for many
seconds. `QueueDelay` measures it: one-way delay (receiver clock minus ours, an unknown
offset that cancels out) above its minimum over the last ~30 s, per feedback the least
of its packets (so a jitter spike does not read as a queue). The rate control uses it to
drain what stands and not to grow while it stands.

Times are in milliseconds in the trendline and detector (floats), as in the reference:
the thresholds are in ms.
"""

from __future__ import annotations

from collections import deque

NORMAL = 0
UNDERUSING = 1
OVERUSING = 2
USAGE_NAMES = ("normal", "underusing", "overusing")

GROUP_SPAN_US = 5_000  # packets sent within this of a group's first belong to it
BURST_ARRIVAL_US = 5_000  # ...and so do packets arriving in a burst (see _belongs_to_burst)
MAX_BURST_US = 100_000
ARRIVAL_JUMP_RESET_US = 3_000_000  # arrival gap this much beyond the send gap: clock jump
REORDER_RESETS = 3  # consecutive groups arriving before their predecessor: start over

TRENDLINE_WINDOW = 20
TRENDLINE_SMOOTHING = 0.9
TRENDLINE_GAIN = 4.0
TRENDLINE_MAX_SAMPLES_WEIGHT = 60
MAX_SAMPLES_COUNTED = 1000

THRESHOLD_START_MS = 12.5
THRESHOLD_MIN_MS = 6.0
THRESHOLD_MAX_MS = 600.0
THRESHOLD_K_UP = 0.0087
THRESHOLD_K_DOWN = 0.039
THRESHOLD_MAX_ADAPT_OFFSET_MS = 15.0
THRESHOLD_MAX_STEP_MS = 100.0
OVERUSE_TIME_MS = 10.0

QUEUE_WINDOW_US = 5_000_000  # the delay floor is the least of the last QUEUE_WINDOWS windows
QUEUE_WINDOWS = 6
QUEUE_IMPLAUSIBLE_US = 3_000_000  # more than this above the floor: the receiver's clock jumped


class _Group:
    __slots__ = ("first_send_us", "last_send_us", "first_arrival_us", "last_arrival_us")

    def __init__(self, send_us: int, arrival_us: int) -> None:
        self.first_send_us = self.last_send_us = send_us
        self.first_arrival_us = self.last_arrival_us = arrival_us


class PacketGrouper:
    """Received packets (in arrival order) in, delay variations between groups out."""

    __slots__ = ("_current", "_previous", "_reordered")

    def __init__(self) -> None:
        self._current: _Group | None = None
        self._previous: _Group | None = None
        self._reordered = 0

    def reset(self) -> None:
        self._current = self._previous = None
        self._reordered = 0

    def add(self, send_us: int, arrival_us: int) -> tuple[int, int, int] | None:
        """One received packet. Returns (send delta µs, arrival delta µs, arrival µs of the
        completed group) when this packet closes a group, else None."""
        current = self._current
        if current is None:
            self._current = _Group(send_us, arrival_us)
            return None
        if send_us < current.first_send_us:
            return None  # sent before the group we are filling: reordered, not informative
        if send_us - current.first_send_us <= GROUP_SPAN_US or self._belongs_to_burst(current, send_us, arrival_us):
            if send_us > current.last_send_us:
                current.last_send_us = send_us
            if arrival_us > current.last_arrival_us:
                current.last_arrival_us = arrival_us
            return None
        delta = None
        previous = self._previous
        if previous is not None:
            send_delta = current.last_send_us - previous.last_send_us
            arrival_delta = current.last_arrival_us - previous.last_arrival_us
            if arrival_delta - send_delta > ARRIVAL_JUMP_RESET_US:
                self.reset()  # the receiver's clock jumped, or a long stall: start over
                self._current = _Group(send_us, arrival_us)
                return None
            if arrival_delta < 0:
                self._reordered += 1
                if self._reordered >= REORDER_RESETS:
                    self.reset()
                    self._current = _Group(send_us, arrival_us)
                    return None
            else:
                self._reordered = 0
                delta = (send_delta, arrival_delta, current.last_arrival_us)
        self._previous = current
        self._current = _Group(send_us, arrival_us)
        return delta

    @staticmethod
    def _belongs_to_burst(group: _Group, send_us: int, arrival_us: int) -> bool:
        # Packets queued behind each other on the path leave the bottleneck back to back:
        # arriving within 5 ms of the group's last and "faster than sent", they are part of
        # the same burst, however far apart we sent them (bounded at 100 ms).
        arrival_delta = arrival_us - group.last_arrival_us
        send_delta = send_us - group.last_send_us
        if send_delta == 0:
            return True
        return (
            arrival_delta - send_delta < 0
            and arrival_delta <= BURST_ARRIVAL_US
            and arrival_us - group.first_arrival_us < MAX_BURST_US
        )


class TrendlineFilter:
    """Slope of the smoothed accumulated delay over the last `window` group deltas."""

    __slots__ = ("window", "smoothing", "_first_arrival_ms", "_accumulated", "_smoothed", "_points", "samples", "trend")

    def __init__(self, window: int = TRENDLINE_WINDOW, smoothing: float = TRENDLINE_SMOOTHING) -> None:
        if window < 2:
            raise ValueError(f"trendline window must be at least 2, got {window}")
        self.window = window
        self.smoothing = smoothing
        self._first_arrival_ms: float | None = None
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._points: deque[tuple[float, float]] = deque(maxlen=window)
        self.samples = 0  # deltas seen (capped), weighs the slope in the detector
        self.trend = 0.0

    def update(self, send_delta_ms: float, arrival_delta_ms: float, arrival_ms: float) -> float:
        """One group's delay variation; returns the current trend (unchanged until the
        window is full)."""
        self.samples = min(self.samples + 1, MAX_SAMPLES_COUNTED)
        if self._first_arrival_ms is None:
            self._first_arrival_ms = arrival_ms
        self._accumulated += arrival_delta_ms - send_delta_ms
        self._smoothed = self.smoothing * self._smoothed + (1 - self.smoothing) * self._accumulated
        self._points.append((arrival_ms - self._first_arrival_ms, self._smoothed))
        if len(self._points) == self.window:
            slope = _least_squares_slope(self._points)
            if slope is not None:
                self.trend = slope
        return self.trend


def _least_squares_slope(points) -> float | None:
    count = len(points)
    mean_x = sum(x for x, _ in points) / count
    mean_y = sum(y for _, y in points) / count
    numerator = denominator = 0.0
    for x, y in points:
        dx = x - mean_x
        numerator += dx * (y - mean_y)
        denominator += dx * dx
    return numerator / denominator if denominator else None


class OveruseDetector:
    """Trend in, NORMAL / UNDERUSING / OVERUSING out, against an adaptive threshold."""

    __slots__ = ("threshold_ms", "state", "_over_ms", "_over_count", "_previous_trend", "_last_update_ms")

    def __init__(self, threshold_ms: float = THRESHOLD_START_MS) -> None:
        self.threshold_ms = threshold_ms
        self.state = NORMAL
        self._over_ms = -1.0
        self._over_count = 0
        self._previous_trend = 0.0
        self._last_update_ms: float | None = None

    def detect(self, trend: float, samples: int, send_delta_ms: float, now_ms: float) -> int:
        if samples < 2:
            return self.state
        modified = min(samples, TRENDLINE_MAX_SAMPLES_WEIGHT) * trend * TRENDLINE_GAIN
        threshold = self.threshold_ms
        if modified > threshold:
            if self._over_ms == -1.0:
                self._over_ms = send_delta_ms / 2  # assume half the interval was overusing
            else:
                self._over_ms += send_delta_ms
            self._over_count += 1
            if self._over_ms > OVERUSE_TIME_MS and self._over_count > 1 and trend >= self._previous_trend:
                self._over_ms = 0.0
                self._over_count = 0
                self.state = OVERUSING
        elif modified < -threshold:
            self._over_ms = -1.0
            self._over_count = 0
            self.state = UNDERUSING
        else:
            self._over_ms = -1.0
            self._over_count = 0
            self.state = NORMAL
        self._previous_trend = trend
        self._adapt_threshold(modified, now_ms)
        return self.state

    def _adapt_threshold(self, modified: float, now_ms: float) -> None:
        last = self._last_update_ms
        self._last_update_ms = now_ms
        if last is None:
            return
        magnitude = abs(modified)
        if magnitude > self.threshold_ms + THRESHOLD_MAX_ADAPT_OFFSET_MS:
            return  # a spike (a route change, a burst of cross traffic): do not learn from it
        k = THRESHOLD_K_DOWN if magnitude < self.threshold_ms else THRESHOLD_K_UP
        step_ms = min(max(now_ms - last, 0.0), THRESHOLD_MAX_STEP_MS)
        threshold = self.threshold_ms + k * (magnitude - self.threshold_ms) * step_ms
        self.threshold_ms = min(max(threshold, THRESHOLD_MIN_MS), THRESHOLD_MAX_MS)


class QueueDelay:
    """How long packets now wait in queues on the path: one-way delay above its floor.
    Fed once per feedback with the least one-way delay (arrival - send) of its packets."""

    __slots__ = ("_floors", "_window_floor", "_window_start_us", "delay_us")

    def __init__(self) -> None:
        self._floors: deque[int] = deque(maxlen=QUEUE_WINDOWS - 1)  # earlier windows' floors
        self._window_floor = 0
        self._window_start_us: int | None = None
        self.delay_us = 0

    def update(self, least_one_way_us: int, arrival_us: int) -> int:
        """The feedback's least one-way delay and its newest arrival time; returns the
        queue delay it saw (µs, >= 0)."""
        start = self._window_start_us
        if start is None or arrival_us - start >= QUEUE_WINDOW_US or arrival_us < start:
            if start is not None:
                self._floors.append(self._window_floor)
            self._window_floor = least_one_way_us
            self._window_start_us = arrival_us
        elif least_one_way_us < self._window_floor:
            self._window_floor = least_one_way_us
        floor = min(self._window_floor, min(self._floors, default=self._window_floor))
        delay = least_one_way_us - floor
        if delay > QUEUE_IMPLAUSIBLE_US:
            self._floors.clear()
            self._window_floor = least_one_way_us
            delay = 0
        self.delay_us = max(0, delay)
        return self.delay_us
