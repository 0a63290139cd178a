"""The worker's forwarding-time histogram (sfu.engine.stats: cumulative counters
`forward_time_us_le_<bound>`) as the worker-process tests read it."""

from __future__ import annotations

from sfu.engine.stats import FORWARD_TIME_BUCKETS_US

BOUNDS_US = (*FORWARD_TIME_BUCKETS_US, float("inf"))


def histogram(counters: dict[str, int]) -> list[int]:
    return [counters[f"forward_time_us_le_{bound}"] for bound in (*FORWARD_TIME_BUCKETS_US, "inf")]


def p99_bucket(before: list[int], after: list[int]) -> int:
    """The index of the bucket holding the 99th percentile of the samples taken between two
    cumulative histograms."""
    cumulative = [b - a for a, b in zip(before, after)]
    assert cumulative[-1] > 0, "no forwarding time was sampled"
    return next(i for i, count in enumerate(cumulative) if count >= 0.99 * cumulative[-1])


def p99_bound_us(before: list[int], after: list[int]) -> float:
    """The upper bound (µs) of that bucket; inf when it is the open one."""
    return float(BOUNDS_US[p99_bucket(before, after)])
