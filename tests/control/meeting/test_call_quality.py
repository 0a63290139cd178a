"""control.meeting.call_quality against the fake workers and a fake clock: a worker's
TRANSPORT_QUALITY reaches the participant owning that transport, a change of level is
told to everyone admitted (only the one that changed), a joiner hears everyone's level,
a pause for bandwidth and a client's freezes count; and the Prometheus collector
(control.metrics.quality) exports levels and distributions without participant labels."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from control.meeting.call_quality import CallQuality
from control.meeting.quality import UPGRADE_HOLD_S
from control.metrics.quality import QualityCollector
from sfu import api
from tests.control.meeting.test_conference import Setup, settle

pytestmark = pytest.mark.unit


class QualitySetup(Setup):
    def __init__(self) -> None:
        super().__init__()
        self.quality = CallQuality(registry=self.registry, clock=self.clock)
        self.workers.add_notification_listener(self.quality.worker_notification)
        self.conference.add_listener(self.quality)

    def report(self, transport_id: str, direction: str, loss: float = 0.0, rtt: float = 0.03,
               delivered: float = -1.0) -> None:  # fmt: skip
        message = api.TransportQuality(direction=direction, loss_ratio=loss, loss_max=loss, jitter_s=0.002, rtt_s=rtt,
                                       estimate_bps=1_000_000, blocks=3, video_delivered=delivered)  # fmt: skip
        self.workers.notify(0, transport_id, message)


def quality_events(peer) -> list[list[dict]]:
    return [m["participants"] for m in peer.sent if m["type"] == "connection_quality"]


async def test_a_level_is_told_to_everyone_once_and_again_only_on_a_change():
    s = QualitySetup()
    ann, ann_peer = await s.join("ann")
    bob, bob_peer = await s.join("bob")
    s.report(ann.subscribe_transport_id, "subscribe")
    first = quality_events(bob_peer)
    assert first == [[{"participant_id": "ann", "quality": "excellent", "score": pytest.approx(4.4, abs=0.05)}]]
    assert quality_events(ann_peer) == first  # everyone admitted, ann too
    s.clock.advance(2)
    s.report(ann.subscribe_transport_id, "subscribe")  # the same level: nothing new
    assert len(quality_events(bob_peer)) == 1
    s.clock.advance(2)
    s.report(ann.publish_transport_id, "publish", loss=0.3)  # her uplink loses a third: poor at once
    assert quality_events(bob_peer)[-1][0]["quality"] == "poor"
    # Better again: only once it held for the hold time.
    for _ in range(int(UPGRADE_HOLD_S // 2) + 1):
        s.clock.advance(2)
        s.report(ann.publish_transport_id, "publish")
    assert [e[0]["quality"] for e in quality_events(bob_peer)] == ["excellent", "poor", "excellent"]
    assert s.quality.level_counts() == {"poor": 0, "good": 0, "excellent": 1}


async def test_a_joiner_hears_everyone_s_level_after_joined():
    s = QualitySetup()
    ann, _ = await s.join("ann")
    s.report(ann.subscribe_transport_id, "subscribe", loss=0.08)
    cy, cy_peer = await s.join("cy")
    types = [m["type"] for m in cy_peer.sent]
    assert types.index("connection_quality") > types.index("joined")
    good = {"participant_id": "ann", "quality": "good", "score": pytest.approx(3.7, abs=0.1)}
    assert quality_events(cy_peer) == [[good]]


async def test_a_video_paused_for_bandwidth_is_poor():
    s = QualitySetup()
    ann, _ = await s.join("ann")
    ann.track_pauses["some-track"] = "bandwidth"  # as control.meeting.adaptive records it
    s.report(ann.subscribe_transport_id, "subscribe")
    assert s.quality.level_counts()["poor"] == 1


async def test_a_subscriber_sent_a_fraction_of_the_video_it_needs_is_at_most_good():
    s = QualitySetup()
    ann, _ = await s.join("ann")
    s.report(ann.subscribe_transport_id, "subscribe", delivered=0.1)
    assert s.quality.level_counts()["good"] == 1


async def test_freezes_the_client_reports_count():
    s = QualitySetup()
    ann, ann_peer = await s.join("ann")
    s.report(ann.subscribe_transport_id, "subscribe")
    s.quality.freezes_reported(s.meeting, ann, 0.0)
    s.clock.advance(0.5)
    s.quality.freezes_reported(s.meeting, ann, 0.4)  # too soon after the last: ignored
    s.clock.advance(4.5)
    s.quality.freezes_reported(s.meeting, ann, 1.0)  # 1 s frozen of 5: 20 %
    assert quality_events(ann_peer)[-1][0]["quality"] == "poor"


async def test_transports_nobody_owns_and_other_messages_are_ignored():
    s = QualitySetup()
    _, ann_peer = await s.join("ann")
    s.report("someone-else", "subscribe", loss=0.5)
    s.report("someone-else", "sideways")
    s.workers.notify(0, "x", api.ProducerLayersWanted(active_rids=["q"]))
    assert quality_events(ann_peer) == [] and s.quality.windows == 0


async def test_leaving_forgets_a_participant():
    s = QualitySetup()
    ann, _ = await s.join("ann")
    s.report(ann.subscribe_transport_id, "subscribe")
    await s.conference.leave(s.meeting, ann)
    await settle()
    assert s.quality.level_counts() == {"poor": 0, "good": 0, "excellent": 0}


async def test_prometheus_sees_levels_and_distributions_without_participant_labels():
    s = QualitySetup()
    ann, _ = await s.join("ann")
    bob, _ = await s.join("bob")
    s.report(ann.subscribe_transport_id, "subscribe", loss=0.0, rtt=0.04)
    s.report(bob.subscribe_transport_id, "subscribe", loss=0.3, rtt=0.6)
    s.report(bob.publish_transport_id, "publish", loss=0.01, rtt=-1.0)
    registry = CollectorRegistry()
    registry.register(QualityCollector(s.quality))
    text = generate_latest(registry).decode()
    assert 'conclave_participant_quality{quality="excellent"} 1.0' in text
    assert 'conclave_participant_quality{quality="poor"} 1.0' in text
    assert 'conclave_participant_quality{quality="good"} 0.0' in text
    assert 'conclave_rtt_seconds_bucket{le="0.05"} 1.0' in text
    assert 'conclave_rtt_seconds_bucket{le="1.0"} 2.0' in text
    assert "conclave_rtt_seconds_count 2.0" in text  # the publish window had no round trip
    assert 'conclave_loss_ratio_bucket{direction="subscribe",le="0.001"} 1.0' in text
    assert 'conclave_loss_ratio_bucket{direction="publish",le="0.01"} 1.0' in text
    assert "participant_id" not in text and "meeting" not in text
