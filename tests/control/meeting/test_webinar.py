"""control.meeting.webinar with the conference on fake workers: an attendee joins with no
publish transport and is refused when it publishes; a promotion gives it one and its
tracks reach everyone; a demotion closes it and its tracks stop for everyone; hands
reach the moderators in order. No process, no socket, no sleeping."""

from __future__ import annotations

import asyncio

import pytest

from control.errors import SignalingError
from control.meeting.model import Participant
from control.meeting.roles import RoleError
from control.meeting.webinar import Webinar
from control.store.base import MeetingRecord
from tests.control.meeting.test_conference import Peer, Setup, settle

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

HOST_GRANTS = {"publish": True, "subscribe": True, "chat": True, "screen": True, "moderate": True}


class Webinars(Setup):
    def __init__(self, attendees_publish: bool = False) -> None:
        super().__init__()
        self.meeting.stage.attendees_publish = attendees_publish
        self.webinar = Webinar(registry=self.registry, conference=self.conference, clock=self.clock)
        self.conference.add_listener(self.webinar)

    async def join_host(self) -> tuple[Participant, Peer]:
        peer = Peer()
        host = Participant("host", "Host", peer, role="host", grants=dict(HOST_GRANTS))
        await self.conference.join(self.meeting, host, [])
        return host, peer

    def directions_of(self, participant: Participant) -> list[str]:
        ids = (participant.publish_transport_id, participant.subscribe_transport_id)
        return sorted(d for t, (_, d) in self.worker.transports.items() if t in ids)

    def consumed_by(self, participant: Participant) -> set[str]:
        return {p for t, p in self.worker.consumers.values() if t == participant.subscribe_transport_id}


async def test_an_attendee_joins_receive_only_and_its_publish_is_refused():
    s = Webinars()
    host, _ = await s.join_host()
    await s.publish(host, "microphone", "camera")
    ann, ann_peer = await s.join("ann")
    assert s.directions_of(ann) == ["subscribe"] and ann.publish_transport_id is None
    assert ann_peer.of_type("joined")[0]["may_publish"] is False
    assert {t.producer_id for t in host.tracks.values()} <= s.consumed_by(ann)  # receives the speakers
    with pytest.raises(SignalingError) as refused:
        await s.publish(ann, "camera")
    assert refused.value.code == "not_a_speaker"
    assert s.directions_of(host) == ["publish", "subscribe"]


async def test_an_ordinary_meeting_gives_everyone_a_publish_transport():
    s = Webinars(attendees_publish=True)
    ann, peer = await s.join("ann")
    assert s.directions_of(ann) == ["publish", "subscribe"] and peer.of_type("joined")[0]["may_publish"] is True


async def test_a_promoted_attendee_publishes_to_everyone_and_a_demoted_one_stops_for_everyone():
    s = Webinars()
    host, host_peer = await s.join_host()
    ann, ann_peer = await s.join("ann")
    bob, bob_peer = await s.join("bob")
    await s.webinar.promote(s.meeting, host, "ann")
    assert s.directions_of(ann) == ["publish", "subscribe"]
    assert ann_peer.of_type("stage_role")[-1] == {"type": "stage_role", "role": "speaker", "may_publish": True,
                                                  "hand_raised": False}  # fmt: skip
    assert host_peer.of_type("stage")[-1]["speakers"] == ["ann"]
    await s.publish(ann, "microphone", "camera")
    await settle()
    anns = {t.producer_id for t in ann.tracks.values()}
    assert len(anns) == 2 and anns <= s.consumed_by(bob) and anns <= s.consumed_by(host)
    offers_before = len(bob_peer.of_type("offer"))

    await s.webinar.demote(s.meeting, host, "ann")
    await settle()
    assert s.directions_of(ann) == ["subscribe"] and ann.tracks == {}
    assert not anns & set(s.worker.producers) and not anns & (s.consumed_by(bob) | s.consumed_by(host))
    gone = {m["track_id"] for m in bob_peer.of_type("track_unpublished")}
    assert gone == anns and {m["track_id"] for m in host_peer.of_type("track_unpublished")} == anns
    await s.conference.answer(s.meeting, bob, "answer")  # the offer with ann's tracks, answered
    await settle()
    assert len(bob_peer.of_type("offer")) == offers_before + 1  # then renegotiated without them
    assert not {t["track_id"] for t in bob_peer.of_type("offer")[-1]["tracks"] if t.get("active", True)} & anns
    assert ann_peer.of_type("stage_role")[-1]["may_publish"] is False
    with pytest.raises(SignalingError):
        await s.publish(ann, "camera")


async def test_only_the_host_promotes_and_the_host_is_never_demoted():
    s = Webinars()
    host, _ = await s.join_host()
    ann, _ = await s.join("ann")
    bob, _ = await s.join("bob")
    with pytest.raises(RoleError) as refused:
        await s.webinar.promote(s.meeting, bob, "ann")
    assert refused.value.code == "forbidden" and s.directions_of(ann) == ["subscribe"]
    with pytest.raises(RoleError) as refused:
        await s.webinar.demote(s.meeting, None, "host")
    assert refused.value.code == "cannot_demote_host"
    with pytest.raises(SignalingError) as refused:
        await s.webinar.promote(s.meeting, host, "nobody")
    assert refused.value.code == "not_connected"


async def test_hands_reach_the_moderators_in_order_and_go_down_when_promoted_or_gone():
    s = Webinars()
    host, host_peer = await s.join_host()
    ann, ann_peer = await s.join("ann")
    bob, _ = await s.join("bob")
    s.clock.advance(1.0)
    s.webinar.hand(s.meeting, bob, True)
    s.clock.advance(1.0)
    s.webinar.hand(s.meeting, ann, True)
    view = host_peer.of_type("stage")[-1]
    assert [h["participant_id"] for h in view["hands"]] == ["bob", "ann"]
    assert view["hands"][0]["name"] == "bob" and view["hands"][1]["raised_at"] > view["hands"][0]["raised_at"]
    assert ann_peer.of_type("stage_role")[-1]["hand_raised"] is True
    await s.webinar.promote(s.meeting, host, "ann")
    assert [h["participant_id"] for h in host_peer.of_type("stage")[-1]["hands"]] == ["bob"]
    await s.conference.leave(s.meeting, bob)
    assert host_peer.of_type("stage")[-1]["hands"] == []
    with pytest.raises(RoleError):
        s.webinar.hand(s.meeting, ann, False, "host")  # not theirs to lower


async def test_a_promoted_speaker_who_reconnects_is_still_a_speaker():
    s = Webinars()
    host, _ = await s.join_host()
    await s.join("ann")
    await s.webinar.promote(s.meeting, host, "ann")
    again, peer = await s.join("ann")  # a new connection of the same participant
    assert s.directions_of(again) == ["publish", "subscribe"] and peer.of_type("joined")[0]["may_publish"] is True


async def test_turning_attendees_publish_on_live_opens_every_attendees_publish_transport():
    s = Webinars()
    _, host_peer = await s.join_host()
    ann, ann_peer = await s.join("ann")
    record = MeetingRecord(id="meeting1", meeting_number="12345678901", host_id="h", customer_id="c", title="T",
                           passcode="123456", attendees_publish=True)  # fmt: skip
    await s.webinar.setting_changed(record)
    assert s.directions_of(ann) == ["publish", "subscribe"]
    assert ann_peer.of_type("stage_role")[-1]["may_publish"] is True
    assert host_peer.of_type("stage")[-1]["attendees_publish"] is True  # the host's view follows
    await s.publish(ann, "camera")
    record.attendees_publish = False
    await s.webinar.setting_changed(record)  # whoever publishes stays a speaker
    assert s.meeting.stage.may_publish(ann)
    bob, _ = await s.join("bob")
    assert s.directions_of(bob) == ["subscribe"]


async def test_a_publish_racing_a_demotion_is_either_done_before_it_or_refused():
    s = Webinars()
    host, _ = await s.join_host()
    ann, _ = await s.join("ann")
    await s.webinar.promote(s.meeting, host, "ann")
    publish = asyncio.ensure_future(s.publish(ann, "camera"))
    demote = asyncio.ensure_future(s.webinar.demote(s.meeting, host, "ann"))
    results = await asyncio.gather(publish, demote, return_exceptions=True)
    assert not isinstance(results[1], Exception)
    assert ann.tracks == {} and not any(t == ann.publish_transport_id for t, _ in s.worker.producers.values())
