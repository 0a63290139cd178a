"""sfu.engine.dynacast.LayerDemand on a fake clock: a layer nobody takes is unwanted after
the hold, one someone takes is wanted at once; each change is told once."""

from __future__ import annotations

from sfu.engine.dynacast import LayerDemand


def test_every_layer_is_wanted_until_the_hold_ends():
    demand = LayerDemand(3, hold_s=3.0)
    assert demand.update({0}, 10.0) is None
    assert demand.update({0}, 12.9) is None
    assert demand.update({0}, 13.0) == frozenset({0})
    assert demand.update({0}, 14.0) is None
    assert demand.paused == 2


def test_a_layer_taken_again_is_wanted_at_once_and_released_after_the_hold():
    demand = LayerDemand(3, hold_s=3.0)
    demand.update({0}, 0.0)
    demand.update({0}, 3.0)
    assert demand.update({0, 2}, 5.0) == frozenset({0, 2})
    assert demand.update({2}, 6.0) is None
    assert demand.update({2}, 7.9) is None  # 0 was last taken at 5.0
    assert demand.update({2}, 8.0) == frozenset({2})


def test_a_moment_without_a_layer_within_the_hold_changes_nothing():
    demand = LayerDemand(2, hold_s=3.0)
    demand.update({0, 1}, 0.0)
    assert demand.update({0}, 1.0) is None
    assert demand.update({0, 1}, 2.0) is None
    assert demand.update({0, 1}, 10.0) is None


def test_nobody_takes_anything_nothing_is_wanted():
    demand = LayerDemand(3, hold_s=1.0)
    demand.update((), 0.0)
    assert demand.update((), 1.0) == frozenset()
    assert demand.paused == 3
    assert demand.update({7, -1}, 2.0) is None  # no such layers
