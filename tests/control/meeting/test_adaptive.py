"""control.meeting.adaptive against the fake workers: last-N reaches the meeting's router
when it is made and whenever the setting or the cap changes (a worker that refuses it
changes nothing else); the allocator's news reaches the subscriber concerned and nobody
else (`track_paused`, `track_resumed`, `track_quality`); dynacast's reaches the publisher
(`publish_layers`)."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from config import LimitsConfig
from control.meeting.adaptive import AdaptiveMedia, track_quality
from control.meeting.limits import MeetingLimits
from control.store.base import MeetingRecord
from sfu import api
from tests.control.meeting.test_conference import Setup, settle

pytestmark = pytest.mark.unit


class AdaptiveSetup(Setup):
    """The conference with control's adaptive media wired as control.app wires it."""

    def __init__(self, max_last_n: int = 25, last_n: int | None = None) -> None:
        super().__init__()
        self.meeting.limits = MeetingLimits(LimitsConfig(max_last_n=max_last_n), 1000)
        self.meeting.last_n = last_n
        self.adaptive = AdaptiveMedia(registry=self.registry, supervisor=self.workers, tasks=self.tasks)
        self.workers.add_notification_listener(self.adaptive.worker_notification)
        self.conference.add_listener(self.adaptive)

    def record(self, last_n: int | None) -> MeetingRecord:
        return MeetingRecord(id="meeting1", meeting_number="12345678901", host_id="h", customer_id="c", title="T",
                             passcode="123456", last_n=last_n)  # fmt: skip

    def last_n_requests(self) -> list[int]:
        return [m.last_n for m in self.worker.requests if isinstance(m, api.RouterSetLastN)]


def camera_of(participant) -> str:
    return next(t.track_id for t in participant.tracks.values() if t.source == "camera")


def producer_of(participant, source: str = "camera") -> str:
    return next(t.producer_id for t in participant.tracks.values() if t.source == source)


def consumer_of(subscriber, track_id: str) -> str:
    return subscriber.active_consumer_for(track_id).consumer_id


def adaptive_events(peer) -> list[dict]:
    kinds = ("track_paused", "track_resumed", "track_quality", "publish_layers")
    return [m for m in peer.sent if m["type"] in kinds]


async def meeting_of_three():
    s = AdaptiveSetup()
    people = [await s.join(name) for name in ("ann", "bob", "cy")]
    await s.publish(people[0][0], "microphone", "camera")
    await settle()
    return s, people


# ------------------------------------------------------------------ last-N


async def test_the_router_gets_the_default_last_n_when_it_is_made():
    s = AdaptiveSetup()
    await s.join("ann")
    await settle()
    assert s.worker.last_n == {"meeting1": 25}
    await s.join("bob")
    await settle()
    assert s.last_n_requests() == [25]  # once per router, not per join


async def test_the_hosts_setting_and_the_customers_cap_decide_the_value():
    s = AdaptiveSetup(max_last_n=10, last_n=4)
    await s.join("ann")
    await settle()
    assert s.worker.last_n == {"meeting1": 4}
    capped = AdaptiveSetup(max_last_n=3, last_n=None)  # the default 25 is over the cap
    await capped.join("ann")
    await settle()
    assert capped.worker.last_n == {"meeting1": 3}


async def test_a_change_during_the_meeting_reaches_the_router_once():
    s = AdaptiveSetup()
    await s.join("ann")
    await settle()
    await s.adaptive.setting_changed(s.record(last_n=2))
    assert s.worker.last_n == {"meeting1": 2} and s.meeting.last_n == 2
    await s.adaptive.setting_changed(s.record(last_n=2))  # the same again: nothing to send
    assert s.last_n_requests() == [25, 2]


async def test_a_change_before_anyone_joined_is_sent_with_the_router():
    s = AdaptiveSetup()
    await s.adaptive.setting_changed(s.record(last_n=6))
    assert s.worker.requests == []  # no router yet
    await s.join("ann")
    await settle()
    assert s.last_n_requests() == [6]


async def test_a_lower_cap_from_the_operator_applies_at_once():
    s = AdaptiveSetup(last_n=20)
    await s.join("ann")
    await settle()
    s.meeting.limits = dataclasses.replace(s.meeting.limits, account=LimitsConfig(max_last_n=5))
    await s.adaptive.limits_changed(s.meeting)
    assert s.last_n_requests() == [20, 5]


async def test_a_worker_that_refuses_last_n_is_logged_once_and_the_meeting_goes_on(caplog):
    s = AdaptiveSetup()
    s.worker.refuse_last_n = True
    with caplog.at_level(logging.WARNING, logger="control.meeting.adaptive"):
        ann, ann_peer = await s.join("ann")
        await settle()
        await s.adaptive.setting_changed(s.record(last_n=3))
        bob, _ = await s.join("bob")
        await s.publish(ann, "camera")
        await settle()
    assert ann_peer.of_type("joined") and bob.active_consumer_for(camera_of(ann)) is not None
    assert s.worker.last_n == {} and s.adaptive.last_n_sent == 0
    assert len([r for r in caplog.records if "last-N" in r.getMessage()]) == 1


# ------------------------------------------------------------------ allocation


async def test_a_pause_for_bandwidth_is_told_to_that_subscriber_only():
    s, [(ann, ann_peer), (bob, bob_peer), (cy, cy_peer)] = await meeting_of_three()
    track = camera_of(ann)
    entry = {"consumer_id": consumer_of(bob, track), "spatial": -1, "temporal": -1, "layers": 3, "height": 0,
             "paused": "bandwidth"}  # fmt: skip
    s.workers.notify(0, bob.subscribe_transport_id, api.SubscriberAllocation(estimate_bps=90_000, tracks=[entry]))
    assert adaptive_events(bob_peer) == [
        {"type": "track_paused", "track_id": track, "reason": "bandwidth"},
        {"type": "track_quality", "track_id": track, "spatial": -1, "temporal": -1, "layers": 3, "height": 0,
         "fps": 0.0, "paused": "bandwidth"},
    ]  # fmt: skip
    assert adaptive_events(ann_peer) == [] and adaptive_events(cy_peer) == []
    assert bob.track_pauses == {track: "bandwidth"}


async def test_a_pause_decided_as_the_consumer_is_made_reaches_the_subscriber():
    # A worker allocates a new consumer at once (last-N may pause it), and control can
    # read that news before the coroutine that asked for the consumer resumes: the news
    # of a consumer control is still making must not be lost (the worker never repeats it).
    s = AdaptiveSetup()
    (ann, _), (bob, bob_peer) = await s.join("ann"), await s.join("bob")
    made = s.worker._on_consumer_create

    def allocated_before_the_reply(message: api.ConsumerCreate):
        reply = made(message)
        if message.transport_id == bob.subscribe_transport_id and s.worker.producers[message.producer_id][1] == "video":
            entry = {"consumer_id": message.consumer_id, "spatial": -1, "temporal": -1, "layers": 1, "height": 0,
                     "paused": "last_n"}  # fmt: skip
            s.workers.notify(0, bob.subscribe_transport_id, api.SubscriberAllocation(estimate_bps=0, tracks=[entry]))
        return reply

    s.worker._on_consumer_create = allocated_before_the_reply
    await s.publish(ann, "camera")
    await settle()
    track = camera_of(ann)
    assert {"type": "track_paused", "track_id": track, "reason": "last_n"} in adaptive_events(bob_peer)
    assert bob.track_pauses == {track: "last_n"}


async def test_pauses_and_resumes_are_told_once_per_change_and_hidden_is_no_news():
    s, [(ann, _), (bob, bob_peer), _] = await meeting_of_three()
    track = camera_of(ann)
    consumer = consumer_of(bob, track)

    def allocate(paused: str, spatial: int) -> None:
        entry = {"consumer_id": consumer, "spatial": spatial, "temporal": 2, "layers": 3, "height": 180 * (spatial + 1),
                 "paused": paused}  # fmt: skip
        s.workers.notify(0, bob.subscribe_transport_id, api.SubscriberAllocation(500_000, [entry]))

    for paused, spatial in (("hidden", -1), ("", 0), ("bandwidth", -1), ("bandwidth", -1), ("last_n", -1),
                            ("hidden", -1), ("", 2), ("", 1)):  # fmt: skip
        allocate(paused, spatial)
    changes = [(m["type"], m.get("reason")) for m in bob_peer.sent if m["type"] in ("track_paused", "track_resumed")]
    assert changes == [("track_paused", "bandwidth"), ("track_paused", "last_n"), ("track_resumed", None)]
    qualities = [(m["spatial"], m["height"], m["paused"]) for m in bob_peer.of_type("track_quality")]
    assert qualities == [(-1, 0, "hidden"), (0, 180, None), (-1, 0, "bandwidth"), (-1, 0, "bandwidth"),
                         (-1, 0, "last_n"), (-1, 0, "hidden"), (2, 540, None), (1, 360, None)]  # fmt: skip
    assert bob.track_pauses == {}


def test_track_quality_carries_the_temporal_layer_and_frame_rate_and_refuses_nonsense():
    entry = {"consumer_id": "c", "spatial": 1, "temporal": 0, "layers": 3, "height": 360, "fps": 7.5, "paused": ""}
    assert track_quality("t", entry) == {"type": "track_quality", "track_id": "t", "spatial": 1, "temporal": 0,
                                         "layers": 3, "height": 360, "fps": 7.5, "paused": None}
    for bad in ("7.5", True, -1, 1e9, float("nan"), None):
        assert track_quality("t", dict(entry, fps=bad))["fps"] == 0.0
    assert track_quality("t", dict(entry, fps=15))["fps"] == 15.0


async def test_allocation_news_of_unknown_consumers_transports_or_an_old_worker_is_ignored():
    s, [(ann, ann_peer), (bob, bob_peer), (cy, cy_peer)] = await meeting_of_three()
    mine = {"consumer_id": consumer_of(cy, camera_of(ann)), "spatial": -1, "layers": 3, "paused": "bandwidth"}
    s.workers.notify(0, bob.subscribe_transport_id, api.SubscriberAllocation(1, [mine]))  # cy's consumer, bob's transport
    s.workers.notify(0, "no-such-transport", api.SubscriberAllocation(1, [mine]))
    s.workers.notify(0, ann.publish_transport_id, api.SubscriberAllocation(1, [mine]))
    s.workers.notify(0, bob.subscribe_transport_id, api.SubscriberAllocation(1, ["junk", {"consumer_id": 5}]))
    s.worker.generation += 1  # news from a restarted worker process
    s.workers.notify(0, cy.subscribe_transport_id, api.SubscriberAllocation(1, [mine]))
    assert [adaptive_events(p) for p in (ann_peer, bob_peer, cy_peer)] == [[], [], []]


async def test_what_a_subscriber_was_told_of_a_track_goes_with_the_track():
    s, [(ann, _), (bob, _), _] = await meeting_of_three()
    track = camera_of(ann)
    entry = {"consumer_id": consumer_of(bob, track), "spatial": -1, "layers": 3, "paused": "last_n"}
    s.workers.notify(0, bob.subscribe_transport_id, api.SubscriberAllocation(1, [entry]))
    assert bob.track_pauses == {track: "last_n"}
    await s.conference.leave(s.meeting, ann)
    await settle()
    assert bob.track_pauses == {}


# ------------------------------------------------------------------ dynacast


async def test_publish_layers_go_to_the_publisher_only():
    s, [(ann, ann_peer), (bob, bob_peer), (cy, cy_peer)] = await meeting_of_three()
    s.workers.notify(0, producer_of(ann), api.ProducerLayersWanted(active_rids=["q"]))
    s.workers.notify(0, producer_of(ann), api.ProducerLayersWanted(active_rids=["q", "h", "f"]))
    s.workers.notify(0, producer_of(ann), api.ProducerLayersWanted(active_rids=[]))
    track = camera_of(ann)
    assert ann_peer.of_type("publish_layers") == [
        {"type": "publish_layers", "track_id": track, "active": ["q"]},
        {"type": "publish_layers", "track_id": track, "active": ["q", "h", "f"]},
        {"type": "publish_layers", "track_id": track, "active": []},
    ]
    assert adaptive_events(bob_peer) == [] and adaptive_events(cy_peer) == []


async def test_publish_layers_of_unknown_producers_are_ignored_and_odd_rids_dropped():
    s, [(ann, ann_peer), _, _] = await meeting_of_three()
    s.workers.notify(0, "gone", api.ProducerLayersWanted(active_rids=["q"]))
    s.workers.notify(0, s.meeting.server_tracks["announcer"].producer_id, api.ProducerLayersWanted(["q"]))
    assert ann_peer.of_type("publish_layers") == []
    s.workers.notify(0, producer_of(ann), api.ProducerLayersWanted(active_rids=["q", 7, "", "x" * 40, "h", "f", "g"]))
    assert ann_peer.of_type("publish_layers")[0]["active"] == ["q", "h", "f"]
