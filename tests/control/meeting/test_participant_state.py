"""What control keeps per participant stays bounded by the meeting's live tracks (issue
16 item 4): the tracks they turned off and the tiles they reported are forgotten with the
track, however many tracks came and went."""

from __future__ import annotations

import pytest

from tests.control.meeting.test_conference import Setup, settle

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


async def test_unsubscribed_tracks_and_tiles_go_with_their_tracks():
    s = Setup()
    viewer, _ = await s.join("viewer")
    for round_ in range(30):  # a publisher comes, is turned off and sized, and leaves
        speaker, _ = await s.join(f"speaker{round_}")
        await s.publish(speaker, "camera")
        (track,) = speaker.tracks.values()
        await s.conference.set_tile(s.meeting, viewer, track.track_id, 320, 180, True)
        await s.conference.set_subscription(s.meeting, viewer, track.track_id, False)
        assert track.track_id in viewer.unsubscribed and track.track_id in viewer.tiles
        await s.conference.leave(s.meeting, speaker)
        await settle()
    assert viewer.unsubscribed == set() and viewer.tiles == {}

