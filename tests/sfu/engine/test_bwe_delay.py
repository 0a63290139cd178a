"""sfu.engine.bwe.delay: packet groups, the trendline filter, the overuse detector and the
queue delay, each alone on hand-made inputs."""

from __future__ import annotations

import pytest

from sfu.engine.bwe import delay
from sfu.engine.bwe.delay import (
    NORMAL,
    OVERUSING,
    UNDERUSING,
    OveruseDetector,
    PacketGrouper,
    QueueDelay,
    TrendlineFilter,
)

pytestmark = pytest.mark.unit

MS = 1000
S = 1_000_000


# --- trendline ---------------------------------------------------------------------------


def feed(trendline: TrendlineFilter, extra_delay_ms: list[float], interval_ms: float = 20.0) -> float:
    """Groups sent every interval_ms, each arriving extra_delay_ms[i] later than sent."""
    trend = 0.0
    for i, extra in enumerate(extra_delay_ms):
        trend = trendline.update(interval_ms, interval_ms + extra, 1000.0 + (i + 1) * (interval_ms + extra))
    return trend


def test_the_trend_waits_for_a_full_window():
    trendline = TrendlineFilter(window=20)
    assert feed(trendline, [1.0] * 19) == 0.0
    assert feed(trendline, [1.0]) > 0.0


def test_constant_delay_has_no_trend():
    trendline = TrendlineFilter()
    assert feed(trendline, [0.0] * 40) == pytest.approx(0.0, abs=1e-12)


def test_a_growing_queue_has_a_positive_trend_and_a_draining_one_negative():
    growing = feed(TrendlineFilter(), [2.0] * 60)  # each group 2 ms later than the last
    assert growing > 0.05
    draining = feed(TrendlineFilter(), [-2.0] * 60)
    assert draining < -0.05


def test_the_slope_is_the_least_squares_slope_once_smoothing_settles():
    # A queue growing by 1 ms every 21 ms of arrival time: the smoothed curve settles to
    # the same slope (its lag is constant), 1/21 ms per ms.
    trend = feed(TrendlineFilter(), [1.0] * 200)
    assert trend == pytest.approx(1 / 21, rel=0.01)


def test_jitter_without_a_queue_averages_out():
    jitter = [8.0, -8.0] * 30  # ±8 ms, alternating: Wi-Fi, not a queue
    assert abs(feed(TrendlineFilter(), jitter)) < 0.02


def test_window_must_hold_two_points():
    with pytest.raises(ValueError):
        TrendlineFilter(window=1)


# --- overuse detector ----------------------------------------------------------------------


def test_overuse_needs_time_and_two_samples_above_the_threshold():
    detector = OveruseDetector()
    # modified trend = min(samples, 60) * trend * 4 = 60 * 0.1 * 4 = 24 ms > 12.5 ms
    assert detector.detect(0.1, 60, 5.0, 0.0) == NORMAL  # 2.5 ms over: not yet
    assert detector.detect(0.1, 60, 5.0, 5.0) == NORMAL  # 7.5 ms over, two samples
    assert detector.detect(0.1, 60, 5.0, 10.0) == OVERUSING  # 12.5 ms > 10 ms
    assert detector.state == OVERUSING


def test_overuse_needs_a_trend_that_is_not_falling():
    detector = OveruseDetector()
    detector.detect(0.2, 60, 20.0, 0.0)
    assert detector.detect(0.15, 60, 20.0, 20.0) == NORMAL  # above, but falling: a queue past its peak


def test_underuse_and_back_to_normal():
    detector = OveruseDetector()
    assert detector.detect(-0.1, 60, 20.0, 0.0) == UNDERUSING
    assert detector.detect(0.0, 60, 20.0, 20.0) == NORMAL


def test_few_samples_weigh_less():
    detector = OveruseDetector()
    # 4 samples * 0.1 * 4 = 1.6 ms: well inside the threshold however long it lasts
    for i in range(10):
        assert detector.detect(0.1, 4, 20.0, 20.0 * i) == NORMAL
    assert detector.detect(0.1, 1, 20.0, 200.0) == NORMAL  # under two samples: no verdict


def test_the_threshold_rises_slowly_toward_a_persistent_trend_and_falls_faster():
    detector = OveruseDetector()
    # modified = 60 * 0.08 * 4 = 19.2 ms: above 12.5 ms but within the 15 ms adapt offset
    detector.detect(0.08, 60, 20.0, 0.0)
    detector.detect(0.08, 60, 20.0, 20.0)
    risen = detector.threshold_ms
    # k_up * (19.2 - 12.5) * 20 ms = 0.0087 * 6.7 * 20
    assert risen == pytest.approx(12.5 + 0.0087 * 6.7 * 20, rel=1e-6)
    detector.detect(0.0, 60, 20.0, 22.0)  # nothing: k_down toward 0, over 2 ms
    assert detector.threshold_ms == pytest.approx(risen - 0.039 * risen * 2, rel=1e-6)


def test_the_threshold_ignores_spikes_and_stays_in_bounds():
    detector = OveruseDetector()
    detector.detect(1.0, 60, 20.0, 0.0)
    detector.detect(1.0, 60, 20.0, 20.0)  # 240 ms: far beyond threshold + 15 ms, not learnt
    assert detector.threshold_ms == delay.THRESHOLD_START_MS
    for i in range(200):
        detector.detect(0.0, 60, 100.0, 100.0 * (i + 2))
    assert detector.threshold_ms == delay.THRESHOLD_MIN_MS
    detector = OveruseDetector(threshold_ms=590.0)
    for i in range(200):
        detector.detect(2.45, 60, 100.0, 100.0 * i)  # 588 ms, just under: pulls up
    assert detector.threshold_ms <= delay.THRESHOLD_MAX_MS


# --- packet groups -----------------------------------------------------------------------


def test_packets_sent_within_5_ms_form_one_group():
    grouper = PacketGrouper()
    # Group A: sent 0..4 ms; group B: 20..24 ms; group C starts at 40 ms.
    deltas = []
    for send_ms in (0, 2, 4, 20, 22, 24, 40):
        delta = grouper.add(send_ms * 1000, 50_000 + send_ms * 1000 + (3000 if send_ms >= 20 else 0))
        if delta is not None:
            deltas.append(delta)
    # B against A: last sends 24 - 4 ms apart, arrivals 27 - 4 ms apart
    assert deltas == [(20_000, 23_000, 77_000)]


def test_a_burst_arriving_back_to_back_joins_the_group():
    grouper = PacketGrouper()
    grouper.add(0, 100_000)
    # Sent 10 ms later but arrived 1 ms after: queued behind the first, one burst.
    assert grouper.add(10_000, 101_000) is None
    assert grouper.add(30_000, 130_000) is None  # starts the next group
    assert grouper.add(50_000, 150_000) == (20_000, 29_000, 130_000)


def test_packets_sent_before_the_current_group_are_skipped():
    grouper = PacketGrouper()
    grouper.add(20_000, 100_000)
    assert grouper.add(10_000, 101_000) is None
    assert grouper.add(40_000, 120_000) is None
    assert grouper.add(60_000, 140_000) == (20_000, 20_000, 120_000)


def test_a_receiver_clock_jump_starts_over():
    grouper = PacketGrouper()
    for i in range(3):
        grouper.add(i * 20_000, 100_000 + i * 20_000)
    assert grouper.add(60_000, 10_000_000) == (20_000, 20_000, 140_000)  # closes the 40 ms group
    # Closing the 60 ms group: it arrived 9.84 s later than sent after its predecessor.
    assert grouper.add(80_000, 10_020_000) is None
    assert grouper.add(100_000, 10_040_000) is None  # a fresh first group closes, nothing before it
    assert grouper.add(120_000, 10_060_000) == (20_000, 20_000, 10_040_000)


# --- queue delay ---------------------------------------------------------------------------


def test_queue_delay_is_one_way_delay_above_its_floor():
    queue = QueueDelay()
    offset = 7_000_000_000  # the receiver's clock minus ours: anything
    assert queue.update(offset + 30_000, 1 * S) == 0  # 30 ms of propagation
    assert queue.update(offset + 230_000, 1100 * MS) == 200_000  # 200 ms of queue
    assert queue.update(offset + 35_000, 1200 * MS) == 5_000


def test_queue_delay_floor_forgets_after_its_windows():
    queue = QueueDelay()
    queue.update(10_000, 0)
    # The route got 100 ms longer: read as queue until the old floor leaves the windows.
    step = delay.QUEUE_WINDOW_US
    readings = [queue.update(110_000, i * step) for i in range(1, delay.QUEUE_WINDOWS + 2)]
    assert readings[0] == 100_000
    assert readings[-1] == 0


def test_an_implausible_queue_is_a_clock_jump():
    queue = QueueDelay()
    queue.update(10_000, 0)
    assert queue.update(60_000_000, 20 * MS) == 0
    assert queue.update(60_050_000, 40 * MS) == 50_000
