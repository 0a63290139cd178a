"""sfu.engine.keyframes: keyframe requests are rate limited, and one asked for meanwhile is
sent later, not lost."""

from __future__ import annotations

from sfu.engine.keyframes import KeyframeRequester


def test_keyframe_requests_are_rate_limited_but_not_lost():
    requester = KeyframeRequester(0.5)
    assert requester.request(0.0)
    assert not requester.request(0.1)
    assert not requester.poll(0.3)
    assert requester.poll(0.6)
    assert not requester.poll(2.0)


def test_a_deferred_request_is_pending_until_sent_or_satisfied():
    requester = KeyframeRequester(0.5)
    requester.request(0.0)
    assert not requester.pending
    requester.request(0.1)
    assert requester.pending
    requester.satisfied()
    assert not requester.pending
    requester.request(0.2)
    assert requester.poll(0.6) and not requester.pending
