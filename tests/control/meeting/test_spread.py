"""control.meeting.spread: where a meeting's subscribers sit (the pure `choose_worker`),
and the conference over two fake workers with spreading on: subscribe transports on the
other worker, publishers at home, each producer piped once, the requests about a
subscriber sent where it sits, copies closed with their tracks, the routers closed with
the meeting, and the subscribers of a dead worker told to reconnect. Off (0), nothing
of it happens."""

from __future__ import annotations

import pytest

from control.meeting import closecodes
from control.meeting.adaptive import effective_last_n
from control.meeting.spread import SpreadMeetings, choose_worker
from sfu import api
from tests.control.meeting.test_conference import Setup, settle
from tests.support.fake_workers import FakeWorkers

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("seated", "live", "share", "expected"),
    [
        ({}, [0, 1], 0, 0),  # off: home, always
        ({0: 5}, [0, 1], 0, 0),
        ({}, [1, 0], 2, 0),  # home first, whatever the load order
        ({0: 1}, [0, 1], 2, 0),
        ({0: 2}, [1, 2, 0], 2, 1),  # home full: the least loaded worker not used yet
        ({0: 2, 2: 1}, [1, 2, 0], 2, 2),  # a used worker with room before a new one
        ({0: 2, 2: 2}, [1, 2, 0], 2, 1),
        ({0: 2, 1: 2}, [0, 1], 2, 1),  # all full: the emptiest, home last among equals
        ({0: 3, 1: 2}, [0, 1], 2, 1),
        ({0: 2, 1: 4}, [0, 1], 2, 0),
        ({0: 2, 1: 1}, [0], 2, 0),  # the other worker is down: home
        ({0: 2}, [], 2, 0),
    ],
)
def test_choose_worker(seated, live, share, expected):
    assert choose_worker(seated, 0, live, share) == expected


class Spread(Setup):
    def __init__(self, share: int = 1) -> None:
        super().__init__()
        self.workers.workers.append(FakeWorkers(2).workers[1])
        self.conference.spread = SpreadMeetings(self.workers, self.tasks, share)  # type: ignore[arg-type]
        self.home, self.other = self.workers.workers


def names(worker) -> list[str]:
    return [m.NAME for m in worker.requests]


async def test_subscribers_past_the_share_sit_on_another_worker_fed_through_a_pipe():
    s = Spread(share=1)
    ann, _ = await s.join("ann")
    bob, bob_peer = await s.join("bob")
    assert s.meeting.placement.worker_index == 0 and s.meeting.spread_workers == {1: 1}
    # Bob publishes at home and receives from the other worker, through one pipe pair.
    assert s.home.transports[bob.publish_transport_id][1] == "publish"
    assert s.other.transports[bob.subscribe_transport_id][1] == "subscribe"
    assert bob.subscribe_transport_id not in s.home.transports
    pipes = [t for t, (_, kind) in s.home.transports.items() if kind == "pipe"]
    assert len(pipes) == 1 and [k for _, k in s.other.transports.values()].count("pipe") == 1
    assert s.other.last_n == {"meeting1": effective_last_n(s.meeting)}  # its allocations run under it too
    # The server's notices reach him from an announcer of that worker (a notice played to
    # some participants only must be played where they sit).
    announcer = s.meeting.server_tracks["announcer"].producer_id
    assert announcer not in s.other.producers
    far_announcer = next(p for p, (t, _) in s.other.producers.items() if s.other.transports[t][1] == "direct")
    assert {p for t, p in s.other.consumers.values() if t == bob.subscribe_transport_id} == {far_announcer}

    await s.publish(ann, "microphone", "camera")
    await settle()
    ann_tracks = [t.producer_id for t in ann.tracks.values()]
    assert all(p in s.other.producers for p in ann_tracks)  # piped once each
    assert names(s.home).count("PIPE_CONSUME") == 2 and names(s.other).count("PIPE_PRODUCER_CREATE") == 2
    bob_consumers = {p for t, p in s.other.consumers.values() if t == bob.subscribe_transport_id}
    assert set(ann_tracks) <= bob_consumers
    assert "SUBSCRIBE_OFFER_CREATE" in names(s.other)  # his negotiation talks to his worker

    # Requests about his subscriptions go to his worker.
    camera = next(t for t in ann.tracks.values() if t.source == "camera")
    await s.conference.set_tile(s.meeting, bob, camera.track_id, 320, 180, True)
    assert list(s.other.viewports.values()) == [(320, 180, True)]
    await s.conference.set_subscription(s.meeting, bob, camera.track_id, False)
    assert camera.producer_id not in {p for t, p in s.other.consumers.values() if t == bob.subscribe_transport_id}

    # Ann leaves: her tracks' copies go from the other worker with their consumers there.
    await s.conference.leave(s.meeting, ann)
    await settle()
    assert not any(p in s.other.producers for p in ann_tracks)
    assert bob_peer.of_type("track_unpublished")

    await s.conference.end(s.meeting, {"type": "meeting_ended"}, closecodes.SESSION_ENDED)
    assert s.home.router_ids == set() and s.other.router_ids == set()
    assert s.other.routers == set() and s.meeting.spread_workers == {}


async def test_a_notice_plays_where_its_listeners_sit():
    s = Spread(share=1)
    ann, _ = await s.join("ann")
    bob, _ = await s.join("bob")
    frames = ["AA=="]
    await s.conference.play(s.meeting, "announcer", frames, None)  # everyone: both workers
    home_plays = [m for m in s.home.requests if isinstance(m, api.NoticePlay)]
    far_plays = [m for m in s.other.requests if isinstance(m, api.NoticePlay)]
    assert [(m.producer_id, m.consumer_ids) for m in home_plays] == [
        (s.meeting.server_tracks["announcer"].producer_id, [])
    ]
    assert len(far_plays) == 1 and far_plays[0].consumer_ids == [] and far_plays[0].producer_id in s.other.producers
    await s.conference.play(s.meeting, "announcer", frames, [ann, bob])  # these two: each where they sit
    home_plays = [m for m in s.home.requests if isinstance(m, api.NoticePlay)][1:]
    far_plays = [m for m in s.other.requests if isinstance(m, api.NoticePlay)][1:]
    assert [m.consumer_ids for m in home_plays] == [[ann.active_consumer_for("announcer").consumer_id]]
    assert [m.consumer_ids for m in far_plays] == [[bob.active_consumer_for("announcer").consumer_id]]


async def test_a_subscriber_seated_elsewhere_is_found_by_its_worker_news():
    s = Spread(share=1)
    await s.join("ann")
    bob, _ = await s.join("bob")
    s.workers.notify(1, bob.subscribe_transport_id, api.TransportStateChanged(state="connected"))
    assert bob.subscribe_connected
    assert s.registry.using_worker(1, 1) == [s.meeting] and s.registry.on_worker(1) == []


async def test_the_death_of_the_other_worker_sends_only_its_subscribers_back():
    s = Spread(share=1)
    ann, ann_peer = await s.join("ann")
    _, bob_peer = await s.join("bob")
    s.workers.kill(1)
    await settle()
    assert bob_peer.closed[0] == closecodes.SERVICE_RESTART
    assert bob_peer.of_type("reconnect")[0]["token"]
    assert ann_peer.closed is None and not ann.closed and s.meeting.placement is not None
    assert s.meeting.spread_workers == {} and list(s.meeting.participants) == ["ann"]
    home_pipes = [t for t, (_, kind) in s.home.transports.items() if kind == "pipe"]
    assert home_pipes == []  # home's end of the dead pipe is closed too
    # Back, he sits at home (the only live worker).
    again, _ = await s.join("bob")
    assert again.subscribe_transport_id in s.home.transports


async def test_the_death_of_home_closes_the_routers_it_fed():
    s = Spread(share=1)
    await s.join("ann")
    await s.join("bob")
    s.workers.kill(0)
    await settle()
    assert s.meeting.placement is None and s.meeting.spread_workers == {}
    assert s.other.router_ids == set()


async def test_off_by_default_nothing_spreads():
    s = Spread(share=0)
    for name in ("ann", "bob", "cid"):
        await s.join(name)
    assert s.other.requests == [] and s.meeting.spread_workers == {}
    assert not any(n.startswith("PIPE_") for n in names(s.home))
