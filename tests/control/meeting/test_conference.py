"""control.meeting.conference against a fake worker supervisor: what control asks of the
media plane when people join, publish, mute, leave, and when a worker dies. No process, no
socket, no sleeping: the fake answers like a worker and keeps what it was asked to make."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from config import LimitsConfig
from control.accounts.tokens import Tokens
from control.errors import SignalingError
from control.meeting import closecodes
from control.meeting.conference import Conference, ConferenceListener
from control.meeting.limits import MeetingLimits
from control.meeting.model import LiveMeeting, MeetingRegistry, Participant, PublishedTrack
from control.store.base import LiveSession, MeetingRecord
from control.tasks import BackgroundTasks
from sfu import api
from tests.support.clock import FakeClock
from tests.support.fake_workers import FakeWorkers

pytestmark = pytest.mark.unit


class Peer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["type"] == kind]


class Heard(ConferenceListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def participant_left(self, meeting: LiveMeeting, participant: Participant) -> None:
        self.events.append(("left", participant.participant_id))

    def track_published(self, meeting: LiveMeeting, track: PublishedTrack) -> None:
        self.events.append(("published", track.source))

    def track_unpublished(self, meeting: LiveMeeting, track: PublishedTrack) -> None:
        self.events.append(("unpublished", track.source))

    def router_lost(self, meeting: LiveMeeting) -> None:
        self.events.append(("router_lost", meeting.meeting_id))


class Setup:
    def __init__(self, capacity: int = 100) -> None:
        self.workers = FakeWorkers()
        self.worker = self.workers.workers[0]
        self.registry = MeetingRegistry()
        self.tasks = BackgroundTasks()
        self.clock = FakeClock()
        tokens = Tokens("x" * 48, store=None, join_ttl_s=600)  # type: ignore[arg-type]  # no revocation here
        self.conference = Conference(
            registry=self.registry, supervisor=self.workers, tokens=tokens, clock=self.clock, tasks=self.tasks
        )  # type: ignore[arg-type]
        self.workers.add_down_listener(self.conference.worker_down)  # as control.app wires it
        self.workers.add_notification_listener(self.conference.worker_notification)
        self.heard = Heard()
        self.conference.add_listener(self.heard)
        record = MeetingRecord(
            id="meeting1", meeting_number="12345678901", host_id="h", customer_id="c", title="T", passcode="123456"
        )
        self.meeting = self.registry.live(record, LiveSession("ls1", "meeting1", "h", "c", 0.0))
        self.meeting.limits = MeetingLimits(LimitsConfig(max_participants_per_meeting=capacity), 1000)

    async def join(self, name: str) -> tuple[Participant, Peer]:
        peer = Peer()
        participant = Participant(name, name, peer)
        await self.conference.join(self.meeting, participant, [])
        return participant, peer

    async def publish(self, participant: Participant, *sources: str) -> None:
        mids = {str(n): source for n, source in enumerate(sources)}
        await self.conference.publish(self.meeting, participant, "offer", mids)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_first_join_places_the_meeting_and_gives_two_transports():
    s = Setup()
    ann, peer = await s.join("ann")
    assert s.worker.routers == {"meeting1"} and s.meeting.placement is not None
    assert [m.NAME for m in s.worker.requests].count("ROUTER_CREATE") == 1
    directions = sorted(direction for _, direction in s.worker.transports.values())
    assert directions == ["direct", "publish", "subscribe"]  # the router's own (the notices) and ann's two
    joined = peer.of_type("joined")[0]
    assert joined["participants"] == [] and joined["tracks"] == []
    await s.join("bob")
    assert [m.NAME for m in s.worker.requests].count("ROUTER_CREATE") == 1  # one router per meeting


async def test_a_track_reaches_everyone_else_once_and_is_offered():
    s = Setup()
    ann, _ = await s.join("ann")
    bob, bob_peer = await s.join("bob")
    await s.publish(ann, "microphone", "camera")
    await settle()
    published = {t.producer_id for t in ann.tracks.values()}
    consumed = {p for t, p in s.worker.consumers.values() if t == bob.subscribe_transport_id}
    notices = s.meeting.server_tracks["announcer"].producer_id
    assert consumed == published | {notices}  # ann's two tracks, and the server's notice track
    assert {p for t, p in s.worker.consumers.values() if t == ann.subscribe_transport_id} == {notices}
    offers = bob_peer.of_type("offer")
    assert len(offers) == 1
    described = sorted((t["track_id"], t["participant_id"], t["source"]) for t in offers[0]["tracks"])
    assert described == sorted([("announcer", None, "announcement"),
                                *((t.track_id, "ann", t.source) for t in ann.tracks.values())])  # fmt: skip
    assert s.heard.events == [("published", "microphone"), ("published", "camera")]
    # A late joiner gets both tracks in `joined` and consumers for them.
    cy, cy_peer = await s.join("cy")
    assert sorted(t["source"] for t in cy_peer.of_type("joined")[0]["tracks"]) == ["camera", "microphone"]
    assert len([1 for t, _ in s.worker.consumers.values() if t == cy.subscribe_transport_id]) == 3


async def test_alone_with_only_the_server_track_nobody_gets_an_offer_until_it_plays():
    s = Setup()
    ann, peer = await s.join("ann")
    await settle()
    assert ann.active_consumer_for("announcer") is not None and peer.of_type("offer") == []
    await s.conference.play(s.meeting, "announcer", ["AAE="], [ann])
    assert s.worker.requests[-1] == api.NoticePlay(
        producer_id=s.meeting.server_tracks["announcer"].producer_id,
        frames=["AAE="],
        consumer_ids=[ann.active_consumer_for("announcer").consumer_id],
    )
    ann.negotiation.ensure_offered()  # what the recording does for whoever has not heard it yet
    await settle()
    assert [t["source"] for t in peer.of_type("offer")[0]["tracks"]] == ["announcement"]


async def test_leaving_releases_media_and_unpublishes_for_the_others():
    s = Setup()
    ann, _ = await s.join("ann")
    bob, bob_peer = await s.join("bob")
    await s.publish(ann, "microphone")
    await s.conference.leave(s.meeting, ann)
    assert ann.publish_transport_id is None and ann.subscribe_transport_id is None
    assert len(s.worker.participant_transports()) == 2  # bob's only
    s.clock.advance(0.1)  # the window of participant changes (control.meeting.roster)
    news = [m for m in bob_peer.sent if m["type"] in ("track_unpublished", "participants_changed")]
    # bob knew ann from his `joined`: he hears of her leaving only, after her track went
    assert [m["type"] for m in news] == ["track_unpublished", "participants_changed"]
    assert news[0]["participant_id"] == "ann" and news[1] == {"type": "participants_changed", "left": ["ann"]}
    assert ("unpublished", "microphone") in s.heard.events and ("left", "ann") in s.heard.events
    assert list(s.meeting.participants) == ["bob"]


async def test_a_full_meeting_refuses_the_next_one():
    s = Setup(capacity=1)
    await s.join("ann")
    with pytest.raises(SignalingError) as refused:
        await s.join("bob")
    assert refused.value.code == "meeting_full"
    assert len(s.worker.participant_transports()) == 2  # nothing was made for bob


async def test_mute_and_hold_pause_the_producers_on_the_worker():
    s = Setup()
    ann, _ = await s.join("ann")
    await s.publish(ann, "microphone", "camera")
    microphone = next(t for t in ann.tracks.values() if t.source == "microphone")
    await s.conference.mute(s.meeting, ann, "microphone", True)
    assert s.worker.paused == {microphone.producer_id}
    await s.conference.set_media_held(s.meeting, ann, True)
    assert s.worker.paused == {t.producer_id for t in ann.tracks.values()}
    await s.conference.mute(s.meeting, ann, "microphone", False)  # held: stays paused
    assert microphone.producer_id in s.worker.paused
    await s.conference.set_media_held(s.meeting, ann, False)
    assert s.worker.paused == set()


async def test_host_mute_cannot_be_undone_by_the_participant():
    s = Setup()
    ann, peer = await s.join("ann")
    await s.publish(ann, "microphone")
    await s.conference.host_mute(s.meeting, ann, "microphone", True)
    assert peer.of_type("muted_by_host")[-1] == {"type": "muted_by_host", "source": "microphone", "muted": True}
    with pytest.raises(SignalingError) as refused:
        await s.conference.mute(s.meeting, ann, "microphone", False)
    assert refused.value.code == "muted_by_host"


async def test_a_dead_worker_sends_everyone_back_with_a_fresh_token():
    s = Setup()
    ann, ann_peer = await s.join("ann")
    bob, bob_peer = await s.join("bob")
    s.workers.kill(0)
    await s.tasks.wait(1.0)
    for peer in (ann_peer, bob_peer):
        reconnect = peer.of_type("reconnect")[0]
        assert reconnect["token"].count(".") == 2  # a join token to come back as themselves
        assert peer.closed is not None and peer.closed[0] == closecodes.SERVICE_RESTART
    assert s.meeting.placement is None and s.meeting.participants == {}
    assert ("router_lost", "meeting1") in s.heard.events


async def test_replacing_a_connection_closes_the_old_one():
    s = Setup()
    first, first_peer = await s.join("ann")
    second, second_peer = await s.join("ann")
    assert first_peer.closed is not None and first_peer.closed[0] == closecodes.SESSION_ENDED
    assert s.meeting.participants["ann"] is second
    assert len(s.worker.participant_transports()) == 2  # the first connection's transports are gone


async def test_an_unanswered_offer_closes_the_socket_after_the_timeout():
    s = Setup()
    ann, _ = await s.join("ann")
    bob, bob_peer = await s.join("bob")
    await s.publish(ann, "microphone")
    await settle()
    assert bob_peer.of_type("offer") and bob_peer.closed is None
    s.clock.advance(s.conference.answer_timeout_s + 1)
    assert bob_peer.closed is not None and bob_peer.closed[0] == closecodes.POLICY_VIOLATION


async def test_the_end_closes_everyone_and_the_router():
    s = Setup()
    _, ann_peer = await s.join("ann")
    await s.conference.end(s.meeting, {"type": "meeting_ended", "reason": "ended_by_host"}, closecodes.MEETING_ENDED)
    assert ann_peer.of_type("meeting_ended") and ann_peer.closed[0] == closecodes.MEETING_ENDED
    assert api.RouterClose(router_id="meeting1") in s.worker.requests
    assert s.worker.transports == {} and s.worker.routers == set()


async def test_host_mute_covers_every_source_of_its_kind():
    """A microphone the host muted cannot come back as screen-audio (nor a camera as a
    screen share), published before or after the mute; lifting it lets them go again."""
    s = Setup()
    ann, _ = await s.join("ann")
    await s.publish(ann, "microphone", "screen-audio", "camera")
    by_source = {t.source: t.producer_id for t in ann.tracks.values()}
    await s.conference.host_mute(s.meeting, ann, "microphone", True)
    assert s.worker.paused == {by_source["microphone"], by_source["screen-audio"]}
    with pytest.raises(SignalingError) as refused:
        await s.conference.mute(s.meeting, ann, "screen-audio", False)
    assert refused.value.code == "muted_by_host"
    await s.publish(ann, "microphone", "screen-audio", "camera", "screen")  # a fresh screen share with audio
    audio = {t.producer_id for t in ann.tracks.values() if t.source in ("microphone", "screen-audio")}
    assert audio <= s.worker.paused
    await s.conference.host_mute(s.meeting, ann, "camera", True)
    assert {t.producer_id for t in ann.tracks.values()} <= s.worker.paused
    await s.conference.host_mute(s.meeting, ann, "microphone", False)
    screen_audio = {t.producer_id for t in ann.tracks.values() if t.source == "screen-audio"}
    assert not screen_audio & s.worker.paused  # allowed again (the microphone stays muted: theirs to unmute)


async def test_tile_size_reaches_the_consumer_now_and_when_it_is_made_again():
    s = Setup()
    ann, _ = await s.join("ann")
    bob, _ = await s.join("bob")
    await s.publish(ann, "microphone", "camera")
    await settle()
    camera = next(t for t in ann.tracks.values() if t.source == "camera")
    microphone = next(t for t in ann.tracks.values() if t.source == "microphone")
    await s.conference.set_tile(s.meeting, bob, camera.track_id, 320, 180, True)
    consumer = bob.active_consumer_for(camera.track_id)
    assert s.worker.viewports == {consumer.consumer_id: (320, 180, True)}
    sent = len(s.worker.requests)
    await s.conference.set_tile(s.meeting, bob, camera.track_id, 320, 180, True)  # unchanged: nothing sent
    await s.conference.set_tile(s.meeting, bob, microphone.track_id, 0, 0, False)  # audio: nothing to choose
    assert len(s.worker.requests) == sent
    await s.conference.set_tile(s.meeting, bob, camera.track_id, 320, 180, False)
    assert s.worker.viewports[consumer.consumer_id] == (320, 180, False)
    # Off and on again: the new consumer starts with the tile.
    await s.conference.set_subscription(s.meeting, bob, camera.track_id, False)
    await s.conference.set_subscription(s.meeting, bob, camera.track_id, True)
    again = bob.active_consumer_for(camera.track_id)
    assert again.consumer_id != consumer.consumer_id
    assert s.worker.viewports[again.consumer_id] == (320, 180, False)
    sent = len(s.worker.requests)
    await s.conference.set_tile(s.meeting, ann, camera.track_id, 1, 1, True)  # her own track: ignored
    await s.conference.set_tile(s.meeting, bob, "gone", 1, 1, True)  # a track that went: ignored
    assert len(s.worker.requests) == sent and "gone" not in bob.tiles
