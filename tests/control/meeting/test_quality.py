"""control.meeting.quality: the rule with its documented thresholds, the hysteresis (down
at once, up after holding), a participant's inputs on a fake time line."""

from __future__ import annotations

import math

import pytest

from control.meeting.quality import (
    EXCELLENT,
    FRESH_S,
    GOOD,
    POOR,
    UPGRADE_HOLD_S,
    Distribution,
    Hysteresis,
    LinkWindow,
    ParticipantQuality,
    level_of,
    mos,
)

pytestmark = pytest.mark.unit


def test_a_clean_path_scores_near_the_top_and_loss_brings_it_down():
    assert mos(0.0, 0.0, 0.0) == pytest.approx(4.40, abs=0.01)
    assert mos(0.04, 0.0, 0.0) > 4.0 > mos(0.06, 0.0, 0.0)  # excellent below ~5 % loss
    assert mos(0.09, 0.0, 0.0) > 3.5 > mos(0.11, 0.0, 0.0)  # good below ~10 %
    assert mos(1.0, 0.0, 0.0) == 1.0


def test_delay_and_jitter_cost_like_the_e_model_says():
    assert mos(0.0, 0.0, 0.2) > 4.0  # 200 ms round trip: still excellent
    assert 3.5 <= mos(0.0, 0.03, 0.4) < 4.0  # 400 ms and 30 ms jitter: good
    assert mos(0.0, 0.1, 1.5) < 3.5  # a second and a half: poor
    assert mos(0.0, 0.0, -1.0) == mos(0.0, 0.0, 0.0)  # unknown round trip: no delay counted


@pytest.mark.parametrize(
    ("score", "freezes", "paused", "level"),
    [
        (4.4, 0.0, 0, EXCELLENT),
        (4.0, 0.0, 0, EXCELLENT),
        (3.99, 0.0, 0, GOOD),
        (3.5, 0.0, 0, GOOD),
        (3.49, 0.0, 0, POOR),
        (4.4, 0.02, 0, GOOD),  # 2 % of the time frozen: at most good
        (3.6, 0.05, 0, GOOD),
        (4.4, 0.10, 0, POOR),  # 10 % frozen: poor
        (4.4, 0.0, 1, POOR),  # a video paused for bandwidth: poor
    ],
)
def test_the_levels_and_their_caps(score, freezes, paused, level):
    assert level_of(score, freezes, paused) == level


@pytest.mark.parametrize(
    ("score", "delivered", "level"),
    [
        (4.4, -1.0, EXCELLENT),  # no video asked for: nothing to say
        (4.4, 1.0, EXCELLENT),
        (4.4, 0.5, EXCELLENT),
        (4.4, 0.49, GOOD),  # under half the bitrate its tiles need: at most good
        (4.4, 0.0, GOOD),
        (3.0, 0.1, POOR),  # the cap never raises a level
    ],
)
def test_video_sent_against_what_the_tiles_need(score, delivered, level):
    assert level_of(score, 0.0, 0, delivered) == level


def test_hysteresis_drops_at_once_and_rises_only_after_holding():
    shown = Hysteresis(hold_s=6.0)
    assert shown.update(EXCELLENT, 0.0) and shown.level == EXCELLENT  # the first one is taken as is
    assert shown.update(POOR, 1.0) and shown.level == POOR  # down: at once
    assert not shown.update(EXCELLENT, 2.0)
    assert not shown.update(EXCELLENT, 7.9)
    assert not shown.update(POOR, 8.0)  # the rise starts over
    assert not shown.update(EXCELLENT, 9.0)
    assert not shown.update(GOOD, 12.0)  # still better: the rise goes on, to the lower of the two
    assert shown.update(EXCELLENT, 15.0) and shown.level == GOOD
    assert not shown.update(EXCELLENT, 16.0) and shown.update(EXCELLENT, 22.0) and shown.level == EXCELLENT


def test_flapping_inputs_do_not_flap_the_level():
    shown = Hysteresis(hold_s=6.0)
    changes = sum(shown.update(POOR if n % 2 else EXCELLENT, float(n)) for n in range(60))
    assert changes == 2 and shown.level == POOR  # excellent, then poor, and it stays


def window(loss: float = 0.0, jitter: float = 0.0, rtt: float = -1.0, at: float = 0.0) -> LinkWindow:
    return LinkWindow.bounded(loss, jitter, rtt, at)


def test_a_worker_s_numbers_are_held_to_sane_ranges():
    assert window(loss=7.0, jitter=-1, rtt=99.0) == LinkWindow(1.0, 0.0, 10.0, 0.0)
    assert window(loss=math.nan, jitter=math.inf, rtt=math.nan) == LinkWindow(0.0, 0.0, -1.0, 0.0)


def test_the_least_delivered_fresh_window_counts():
    person = ParticipantQuality(hold_s=UPGRADE_HOLD_S)
    person.on_link("publish", LinkWindow.bounded(0.0, 0.0, -1.0, 0.0))
    person.on_link("subscribe", LinkWindow.bounded(0.0, 0.0, 0.02, 0.0, delivered=0.2))
    assert person.evaluate(0.0) and person.level == GOOD
    assert LinkWindow.bounded(0, 0, 0, 0, delivered=math.nan).delivered == -1.0
    assert LinkWindow.bounded(0, 0, 0, 0, delivered=3.0).delivered == 1.0


def test_the_worse_direction_decides_and_stale_windows_are_forgotten():
    person = ParticipantQuality(hold_s=UPGRADE_HOLD_S)
    assert not person.evaluate(0.0) and person.level is None  # nothing measured: nothing said
    person.on_link("subscribe", window(loss=0.0, rtt=0.05, at=0.0))
    person.on_link("publish", window(loss=0.2, at=0.0))
    assert person.evaluate(0.0) and person.level == POOR and person.score < 3.5
    person.on_link("subscribe", window(loss=0.0, at=FRESH_S))
    person.evaluate(FRESH_S + 1)  # the publish window is stale now: only the subscribe one counts
    assert person.evaluate(FRESH_S + 1 + UPGRADE_HOLD_S) and person.level == EXCELLENT


def test_freezes_are_the_share_of_the_interval_frozen():
    person = ParticipantQuality(hold_s=UPGRADE_HOLD_S)
    person.on_link("subscribe", window(at=0.0))
    person.on_freezes(10.0, 0.0)  # the first total only sets where counting starts
    assert person.evaluate(0.0) and person.level == EXCELLENT
    person.on_freezes(11.0, 5.0)  # 1 s of 5 frozen: 20 %
    assert person.freeze_ratio == pytest.approx(0.2)
    assert person.evaluate(5.0) and person.level == POOR
    person.on_freezes(0.5, 10.0)  # a new connection: its total starts over, no ratio from it
    assert person.freeze_ratio == pytest.approx(0.2)
    person.on_freezes(0.5, 15.0)
    assert person.freeze_ratio == 0.0


def test_the_freeze_a_pause_for_bandwidth_leaves_is_not_counted_again():
    person = ParticipantQuality(hold_s=UPGRADE_HOLD_S)
    person.on_link("subscribe", window(at=0.0))
    person.on_freezes(0.0, 0.0)
    assert person.evaluate(1.0, paused_for_bandwidth=1) and person.level == POOR
    person.on_link("subscribe", window(at=10.0))
    person.evaluate(10.0)  # resumed
    person.on_freezes(9.0, 12.0)  # the pause, counted by the browser as one freeze when video came back
    assert person.freeze_ratio == 0.0
    assert not person.evaluate(12.0) and person.level == POOR  # rising since 10 s, not poor again
    assert person.evaluate(10.0 + UPGRADE_HOLD_S) and person.level == EXCELLENT
    person.on_link("subscribe", window(at=30.0))
    person.on_freezes(12.0, 30.0)  # well after the pause: a freeze is a freeze
    assert person.freeze_ratio == pytest.approx(3 / 18)


def test_a_distribution_counts_cumulatively():
    distribution = Distribution((0.1, 0.5))
    for value in (0.05, 0.3, 2.0):
        distribution.observe(value)
    assert distribution.counts == [1, 2] and distribution.count == 3 and distribution.total == pytest.approx(2.35)


def test_a_window_is_summarized_for_the_host_in_milliseconds_and_bits():
    window = LinkWindow.bounded(0.0312, 0.0045, 0.0801, 10.0, 0.5, 1_234_567.8)
    assert window.summary() == {"loss_ratio": 0.0312, "jitter_ms": 4.5, "rtt_ms": 80.1, "bandwidth_bps": 1_234_567}
    unknown = LinkWindow.bounded(0.0, 0.0, -1.0, 10.0, -1.0, float("nan"))
    assert unknown.summary() == {"loss_ratio": 0.0, "jitter_ms": 0.0, "rtt_ms": None, "bandwidth_bps": None}
