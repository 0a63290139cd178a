"""control.meeting.conference: the active speaker. The worker names a router's dominant
microphone (ACTIVE_SPEAKER); control tells everyone in that meeting whose it is, tells
each late joiner right after `joined`, says nobody speaks when the speaker leaves, and
counts the changes. Against the fake workers of tests/support/fake_workers.py."""

from __future__ import annotations

import pytest

from sfu import api
from tests.control.meeting.test_conference import Setup, settle

pytestmark = pytest.mark.unit


def mic_of(participant) -> str:
    return next(t.producer_id for t in participant.tracks.values() if t.source == "microphone")


def spoken(peer) -> list[str | None]:
    return [m["participant_id"] for m in peer.of_type("active_speaker")]


async def meeting_of_two():
    s = Setup()
    ann, ann_peer = await s.join("ann")
    bob, bob_peer = await s.join("bob")
    await s.publish(ann, "microphone", "camera")
    await s.publish(bob, "microphone")
    return s, (ann, ann_peer), (bob, bob_peer)


async def test_everyone_hears_who_speaks_once_per_change():
    s, (ann, ann_peer), (bob, bob_peer) = await meeting_of_two()
    router = s.meeting.placement.router_id
    s.workers.notify(0, router, api.ActiveSpeaker(producer_id=mic_of(ann)))
    s.workers.notify(0, router, api.ActiveSpeaker(producer_id=mic_of(ann)))  # the same: nothing new
    s.workers.notify(0, router, api.ActiveSpeaker(producer_id=mic_of(bob)))
    for peer in (ann_peer, bob_peer):
        assert spoken(peer) == ["ann", "bob"]
    assert s.meeting.active_speaker == "bob" and s.conference.active_speaker_changes == 2


async def test_a_late_joiner_hears_who_speaks_right_after_joined():
    s, (ann, _), _ = await meeting_of_two()
    s.workers.notify(0, s.meeting.placement.router_id, api.ActiveSpeaker(producer_id=mic_of(ann)))
    cy, cy_peer = await s.join("cy")
    kinds = [m["type"] for m in cy_peer.sent]
    assert kinds[kinds.index("joined") + 1] == "active_speaker" and spoken(cy_peer) == ["ann"]
    first = Setup()
    _, alone_peer = await first.join("first")
    assert spoken(alone_peer) == []  # nobody spoke yet: nothing to tell


async def test_when_the_speaker_leaves_nobody_speaks_until_someone_does():
    s, (ann, _), (bob, bob_peer) = await meeting_of_two()
    router = s.meeting.placement.router_id
    s.workers.notify(0, router, api.ActiveSpeaker(producer_id=mic_of(ann)))
    await s.conference.leave(s.meeting, ann)
    assert spoken(bob_peer) == ["ann", None] and s.meeting.active_speaker is None
    cy, cy_peer = await s.join("cy")
    assert spoken(cy_peer) == []
    s.workers.notify(0, router, api.ActiveSpeaker(producer_id=mic_of(bob)))
    assert spoken(cy_peer) == ["bob"] and spoken(bob_peer) == ["ann", None, "bob"]


async def test_a_listener_leaving_changes_nothing():
    s, (ann, ann_peer), (bob, _) = await meeting_of_two()
    s.workers.notify(0, s.meeting.placement.router_id, api.ActiveSpeaker(producer_id=mic_of(ann)))
    await s.conference.leave(s.meeting, bob)
    assert spoken(ann_peer) == ["ann"] and s.meeting.active_speaker == "ann"


async def test_news_of_unknown_producers_other_routers_or_a_dead_worker_is_ignored():
    s, (ann, ann_peer), _ = await meeting_of_two()
    router = s.meeting.placement.router_id
    s.workers.notify(0, router, api.ActiveSpeaker(producer_id="gone"))
    s.workers.notify(0, router, api.ActiveSpeaker(producer_id=s.meeting.server_tracks["announcer"].producer_id))
    s.workers.notify(0, "another-router", api.ActiveSpeaker(producer_id=mic_of(ann)))
    worker = s.workers.workers[0]
    worker.generation += 1  # a restarted worker's news of the old router
    s.workers.notify(0, router, api.ActiveSpeaker(producer_id=mic_of(ann)))
    assert spoken(ann_peer) == [] and s.conference.active_speaker_changes == 0


async def test_a_worker_restart_forgets_the_speaker():
    s, (ann, _), _ = await meeting_of_two()
    s.workers.notify(0, s.meeting.placement.router_id, api.ActiveSpeaker(producer_id=mic_of(ann)))
    s.workers.kill(0)
    await settle()
    assert s.meeting.active_speaker is None
