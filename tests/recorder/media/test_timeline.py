"""recorder.media.timeline: a track's media time before and after sender reports."""

from __future__ import annotations

import pytest

from recorder.media.timeline import ClockDomain, TrackTimeline
from sfu.wire import rtcp


def test_timeline_before_a_sender_report_follows_arrival_and_handles_the_wrap():
    timeline = TrackTimeline(90000, recording_start=100.0)
    first = 0xFFFFFFFF - 45000  # wraps half a second in
    assert timeline.seconds(first, 100.5) == pytest.approx(0.5)
    assert timeline.seconds((first + 90000) & 0xFFFFFFFF, 101.52) == pytest.approx(1.5)
    # A packet with less delay than any before moves the anchor back by 50 ms; the
    # output follows at most 2 ms per frame, then catches up.
    assert timeline.seconds((first + 180000) & 0xFFFFFFFF, 102.45) == pytest.approx(2.498)
    ts = first + 180000
    for _ in range(30):
        ts += 3000
        last = timeline.seconds(ts & 0xFFFFFFFF, 105.0)
    assert last == pytest.approx(2.45 + 30 * 3000 / 90000)
    # The first sender report: its estimate (here: arrival, 5.0 s) is far from the
    # running one (3.48 s), so it is taken at once.
    timeline.on_sender_report(rtcp.ntp_from_unix(500.0), (ts + 3000) & 0xFFFFFFFF)
    assert timeline.seconds((ts + 3000) & 0xFFFFFFFF, 105.0) == pytest.approx(5.0)
    assert timeline.synchronized


def test_timeline_from_sender_reports_keeps_lip_sync_whatever_the_sender_clock():
    sender_skew = -3.7  # the sender's NTP clock is 3.7 s behind ours
    domain = ClockDomain()
    audio = TrackTimeline(48000, recording_start=1000.0, domain=domain)
    video = TrackTimeline(90000, recording_start=1000.0, domain=domain)
    capture = 1001.0  # on our clock
    audio.on_sender_report(rtcp.ntp_from_unix(capture + sender_skew), 0xFFFFFF00)
    video.on_sender_report(rtcp.ntp_from_unix(capture + sender_skew), 12345)
    # audio arrives 20 ms after capture, video 80 ms after: both belong at 1.0 + 0.02
    assert audio.seconds(0xFFFFFF00, capture + 0.020) == pytest.approx(1.02)
    assert video.seconds(12345, capture + 0.080) == pytest.approx(1.02)
    assert not TrackTimeline(90000, 0.0).synchronized
    # two seconds later, across the audio timestamp wrap
    assert audio.seconds((0xFFFFFF00 + 96000) & 0xFFFFFFFF, capture + 2.021) == pytest.approx(3.02)
    assert video.seconds(12345 + 180000, capture + 2.09) == pytest.approx(3.02)
    assert audio.synchronized and video.synchronized
