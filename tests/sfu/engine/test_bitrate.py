"""sfu.engine.bitrate: a byte count sampled on a fake clock into a smoothed rate, and
what a stream that stopped still costs."""

from __future__ import annotations

from sfu.engine.bitrate import WINDOW, BitrateMeter


def run(meter: BitrateMeter, per_second: list[int], start: float = 10.0, octets: int = 0) -> int:
    meter.sample(octets, start)
    for second, count in enumerate(per_second, 1):
        octets += count
        meter.sample(octets, start + second)
    return octets


def test_the_rate_is_the_highest_second_of_the_window():
    meter = BitrateMeter()
    run(meter, [100_000, 150_000, 90_000, 110_000])
    assert meter.bps == 150_000 * 8 == meter.cost_bps
    run(BitrateMeter(), [])  # a first sample alone is no rate
    assert BitrateMeter().bps == 0 and BitrateMeter().cost_bps == 0


def test_a_swing_leaves_the_window_after_window_seconds():
    meter = BitrateMeter()
    run(meter, [300_000] + [100_000] * WINDOW)
    assert meter.bps == 100_000 * 8


def test_samples_too_close_together_wait_for_a_longer_span():
    meter = BitrateMeter()
    meter.sample(0, 1.0)
    meter.sample(10_000, 1.2)
    assert meter.bps == 0
    meter.sample(100_000, 2.0)
    assert meter.bps == 800_000


def test_a_stream_that_stopped_costs_what_it_cost_while_it_flowed():
    meter = BitrateMeter()
    octets = run(meter, [125_000] * 3 + [40_000])  # stopped a third into the last second
    run(meter, [0] * (WINDOW + 1), start=14.0, octets=octets)
    assert meter.bps == 0
    assert meter.cost_bps == 1_000_000
