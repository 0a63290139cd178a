"""sfu.engine.twcc: transport-wide congestion control feedback from recorded arrivals."""

from __future__ import annotations

from sfu.engine.twcc import TransportCcRecorder
from sfu.wire import rtcp


def test_transport_feedback_reports_arrivals_and_losses():
    recorder = TransportCcRecorder()
    assert recorder.take_feedback(1, 2) is None
    for seq, at in ((65534, 1_000_000), (65535, 1_010_000), (1, 1_030_000)):
        recorder.record(seq, at)
    packet = recorder.take_feedback(1, 2)
    (feedback,) = rtcp.parse_compound(packet)
    assert isinstance(feedback, rtcp.TransportFeedback)
    assert (feedback.base_sequence, feedback.status_count, feedback.fb_count) == (65534, 4, 0)
    recorder.record(2, 1_040_000)
    (feedback,) = rtcp.parse_compound(recorder.take_feedback(1, 2))
    assert (feedback.base_sequence, feedback.status_count, feedback.fb_count) == (2, 1, 1)
