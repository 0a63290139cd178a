"""bench.scenarios: the plans are bounded and shaped as their names say."""

from __future__ import annotations

import struct

import pytest

from bench import scenarios
from bench.media import MediaParams


def test_plans_are_bounded_and_shaped():
    assert [len(b.specs) for b in scenarios.fanout(3).batches] == [1, 3]
    assert scenarios.rooms(2, 3).meetings == 2 and scenarios.rooms(2, 3).participants == 6
    assert scenarios.join_storm(5).batches[1].spread_s == 1.0
    with pytest.raises(ValueError):
        scenarios.meeting(scenarios.MAX_PARTICIPANTS + 1)
    assert MediaParams().key() != MediaParams(fps=15).key()
    assert struct.calcsize("!BBHIIHHII") == 24  # RTP header + one-byte extension block
