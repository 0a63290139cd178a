"""bench.report: percentiles, from samples and from the latency histogram."""

from __future__ import annotations

from array import array

import pytest

from bench.peer import ABS_SEND_TIME_UNITS, LATENCY_BUCKETS
from bench.report import percentile, percentile_from_histogram


def test_percentiles():
    hist = array("Q", bytes(8 * LATENCY_BUCKETS))
    hist[10] = 50
    hist[100] = 49
    hist[1000] = 1
    assert percentile_from_histogram(hist, 0.5) == pytest.approx(11 * 1e6 / ABS_SEND_TIME_UNITS)
    assert percentile_from_histogram(hist, 0.99) == pytest.approx(101 * 1e6 / ABS_SEND_TIME_UNITS)
    assert percentile_from_histogram(array("Q", bytes(8 * 4)), 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0 and percentile([], 0.5) is None
