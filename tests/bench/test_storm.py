"""bench.storm's accounting: what a storm's clients reported becomes the per-join costs,
the time from the first join until everyone received, and the ratios across sizes."""

from __future__ import annotations

import pytest

from bench.storm import StormResult, _account, format_sizes

pytestmark = pytest.mark.unit


def _client(started: float, media_at: float | None, sent: int, messages: dict[str, int]) -> dict:
    return {"join_started": started, "joined": True, "media_at": media_at, "signaling_bytes": sent,
            "signaling_messages": messages}  # fmt: skip


def test_a_storm_is_accounted_from_the_first_join_to_the_last_receiver():
    before = {"pub0": _client(0.0, None, 1000, {"participants_changed": 2})}
    now = {
        "pub0": _client(0.0, None, 1500, {"participants_changed": 4}),
        "j0": _client(100.0, 103.0, 3000, {"joined": 1, "participants_changed": 3}),
        "j1": _client(101.0, 112.5, 2500, {"joined": 1, "participants_changed": 1}),
    }
    result = StormResult(joiners=2, publishers=1, media=["video"])
    result.control_cpu_s = 0.03
    _account(result, before, now, {"j0", "j1"})
    assert (result.joined, result.receiving, result.all_media_s) == (2, 2, 12.5)
    assert result.signaling_bytes == 500 + 3000 + 2500  # the publisher's part during the storm only
    assert result.messages_by_type == {"participants_changed": 6, "joined": 2}
    assert (result.roster_messages_max, result.roster_messages_mean) == (3, 2.0)
    assert result.per_join() == {"control_cpu_ms": 15.0, "signaling_bytes": 3000.0, "signaling_messages": 4.0}
    assert result.within_target


def test_a_joiner_without_media_leaves_the_storm_unfinished():
    now = {"j0": _client(100.0, 101.0, 10, {}), "j1": _client(100.0, None, 10, {})}
    result = StormResult(joiners=2, publishers=1, media=["video"])
    _account(result, {}, now, {"j0", "j1"})
    assert result.receiving == 1 and result.all_media_s is None and not result.within_target
    report = {"results": [{**result.__dict__, "per_join": result.per_join()}], "ratio_largest_over_smallest": {}}
    assert "| 2 (+1) | 2 | 1 | None |" in format_sizes(report)
