"""bench.layer_switch runs and reports every row (in-process, small). No time is asserted."""

from __future__ import annotations

import pytest

from bench import layer_switch

pytestmark = pytest.mark.unit


def test_the_layer_switch_bench_measures_every_row():
    result = layer_switch.measure(frames=200, fanout=3)
    rows = [key for key in result if key.endswith("_us") or key.endswith("_out")]
    assert len(rows) == 8 and all(result[key] > 0 for key in rows)
    text = layer_switch.render(result)
    assert text.count("\n| ") == 9 and "fan-out ratio" in text


def test_the_simulcast_stream_is_three_interleaved_layers_starting_with_keyframes():
    packets = layer_switch.simulcast(4)
    assert [layer for layer, _, _ in packets[:8]] == [0, 1, 1, 2, 2, 2, 2, 2]
    assert {packet[12 + 6] & 0x01 for _, packet, _ in packets[:8] if packet[12] & 0x10} == {0}
