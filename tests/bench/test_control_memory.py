"""bench.control_memory: control's memory per participant is measured, bounded, and the
same for a small and a four times larger webinar (what each participant costs does not
grow with the meeting)."""

from __future__ import annotations

import pytest

from bench.control_memory import measure_async

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

# Today ~2.7 KiB (bench/RESULTS.md): a participant, its subscriptions (one per track), its
# negotiation. Four times that is a regression worth a look, not noise.
MAX_BYTES_PER_PARTICIPANT = 12 * 1024


async def test_control_keeps_a_bounded_constant_amount_per_participant():
    small = await measure_async(40)
    large = await measure_async(160)
    assert 0 < small.bytes_per_participant < MAX_BYTES_PER_PARTICIPANT
    assert 0 < large.bytes_per_participant < MAX_BYTES_PER_PARTICIPANT
    assert large.bytes_per_participant / small.bytes_per_participant < 1.25  # linear in N, not N²


async def test_more_tracks_cost_each_participant_more_so_the_measure_sees_their_state():
    # The measure is not blind: each speaker's two tracks are one subscription more per attendee.
    few = await measure_async(40, speakers=1)
    many = await measure_async(40, speakers=4)
    assert many.bytes_per_participant > few.bytes_per_participant * 1.2
