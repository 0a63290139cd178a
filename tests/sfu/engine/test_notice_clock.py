"""Announcers on direct transports, paced by the notice clock (sfu/engine/notice_clock.py),
with a fake clock: no sleeping, no sockets.

The tree is the worker's (a router per meeting, a direct transport holding the
announcer, subscribers on `Wire` transports consuming it like any producer); the loop
timer is simulated: it fires at the clock's `next_due`, on time or late.
"""

from __future__ import annotations

import os

import pytest

from sfu.engine.announcer import FRAME_SAMPLES, FRAME_SECONDS, MAX_CATCH_UP_S, MAX_WAIT_S, WAIT_POLL_S, Announcer
from sfu.engine.consumer import Consumer
from sfu.engine.notice_clock import NoticeClock
from sfu.engine.router import Registry, Router
from sfu.engine.stats import Counters
from sfu.transport.direct import DirectTransport
from sfu.wire import rtp
from tests.support.tree import OPUS, Wire, nowhere, wire

T0 = 500.0


def clip(count: int) -> list[bytes]:
    # TOC 0x78: config 15 (hybrid, 20 ms), code 0, like the shipped notices.
    return [b"\x78" + i.to_bytes(2, "big") + os.urandom(30) for i in range(count)]


def meeting(registry: Registry, name: str, listeners: int = 2) -> tuple[Router, Announcer, list[Wire]]:
    """A router with an announcer made as the worker makes it, and `listeners` subscribers."""
    router = Router(name, registry)
    counters = Counters()
    direct = DirectTransport(f"{name}-direct", router, counters)
    router.add_transport(direct)
    announcer = Announcer(
        f"{name}-announcer", 111, counters, lambda: T0, direct, mid=direct.allocate_mid(), listener=direct
    )
    direct.add_producer(announcer)
    subscribers = [wire(router, f"{name}-s{i}") for i in range(listeners)]
    for subscriber in subscribers:
        subscriber.consume(f"{subscriber.id}-n", announcer, OPUS)
    return router, announcer, subscribers


def fire(clock: NoticeClock, until: float, late: float = 0.0) -> list[float]:
    """The worker's timer: at each `next_due` (plus `late`) up to `until`; the deadlines asked."""
    asked = []
    while (due := clock.next_due) is not None and due <= until:
        asked.append(due)
        assert clock.tick(due + late) == []
    return asked


def seqs(subscriber: Wire) -> list[int]:
    return [rtp.parse_header(p).sequence_number for p in subscriber.rtp]


def test_deadlines_stay_absolute_when_every_timer_fires_late():
    registry = Registry()
    _, announcer, subscribers = meeting(registry, "m")
    clock = NoticeClock()
    clock.play(announcer, clip(50), announcer.consumers, T0)
    asked = fire(clock, T0 + 10, late=0.004)  # each firing 4 ms late: no drift
    assert asked == pytest.approx([T0 + i * FRAME_SECONDS for i in range(50)])
    assert clock.next_due is None and clock.plays == 1 and clock.packets_sent == 100
    for subscriber in subscribers:
        assert len(subscriber.rtp) == 50 and seqs(subscriber) == [(seqs(subscriber)[0] + i) & 0xFFFF for i in range(50)]


def test_a_late_timer_sends_the_overdue_frames_at_once_and_a_stall_resumes_the_pace():
    registry = Registry()
    _, announcer, (subscriber, _) = meeting(registry, "m")
    clock = NoticeClock()
    clock.play(announcer, clip(20), announcer.consumers, T0)
    clock.tick(T0 + 2 * FRAME_SECONDS + 0.005)  # late, within the catch-up window
    assert len(subscriber.rtp) == 3
    stalled = T0 + 1.0  # the loop was blocked: no burst, one frame, then the pace again
    assert MAX_CATCH_UP_S < stalled - clock.next_due
    clock.tick(stalled)
    assert len(subscriber.rtp) == 4 and clock.next_due == pytest.approx(stalled + FRAME_SECONDS)
    fire(clock, stalled + 1)
    assert len(subscriber.rtp) == 20  # nothing skipped
    stamps = [rtp.parse_header(p).timestamp for p in subscriber.rtp]
    assert all((b - a) % (1 << 32) == FRAME_SAMPLES for a, b in zip(stamps, stamps[1:]))


def test_one_clock_paces_the_announcers_of_every_meeting():
    registry = Registry()
    _, first, first_subs = meeting(registry, "a")
    _, second, second_subs = meeting(registry, "b", listeners=1)
    clock = NoticeClock()
    clock.play(first, clip(10), first.consumers, T0)
    clock.play(second, clip(5), second.consumers, T0 + 0.007)
    assert clock.next_due == T0
    asked = fire(clock, T0 + 10)
    assert asked == sorted(asked) and len(asked) == 15  # interleaved, earliest first
    assert [len(s.rtp) for s in (*first_subs, *second_subs)] == [10, 10, 5]
    assert clock.plays == 2 and clock.packets_sent == 25 and clock.next_due is None


def test_a_play_to_some_consumers_only():
    registry = Registry()
    _, announcer, (target, bystander) = meeting(registry, "m")
    clock = NoticeClock()
    clock.play(announcer, clip(3), [target.consumers["m-s0-n"]], T0)
    fire(clock, T0 + 1)
    assert len(target.rtp) == 3 and bystander.rtp == []


def test_a_subscriber_not_connected_yet_hears_the_clip_from_its_start_once_it_is():
    registry = Registry()
    _, announcer, (joiner,) = meeting(registry, "m", listeners=1)
    joiner.connected = False  # e.g. DTLS not up yet
    clock = NoticeClock()
    frames = clip(5)
    clock.play(announcer, frames, announcer.consumers, T0)
    assert clock.next_due == pytest.approx(T0 + WAIT_POLL_S)  # it looks again later
    fire(clock, T0 + 0.3)
    assert joiner.rtp == []
    joiner.connected = True
    fire(clock, T0 + 1)
    assert [p[rtp.payload_offset(p) :] for p in joiner.rtp] == frames
    assert rtp.parse_header(joiner.rtp[0]).marker


def test_a_subscriber_that_never_connects_is_given_up():
    registry = Registry()
    _, announcer, (never,) = meeting(registry, "m", listeners=1)
    never.connected = False
    clock = NoticeClock()
    clock.play(announcer, clip(5), announcer.consumers, T0)
    fire(clock, T0 + MAX_WAIT_S + 1)
    assert clock.next_due is None and never.rtp == []


class Broken(Wire):
    __slots__ = ()

    def send_rtp(self, packet: bytes) -> None:
        raise RuntimeError("a bug on the send path")


def test_an_announcer_that_raises_is_stopped_and_reported_and_the_others_play_on():
    registry = Registry()
    _, healthy, (listener,) = meeting(registry, "ok", listeners=1)
    broken_router, broken, _ = meeting(registry, "bad", listeners=0)
    sink = Broken("bad-s", broken_router, Counters())
    broken_router.add_transport(sink)
    sink.consume("bad-n", broken, OPUS)
    clock = NoticeClock()
    clock.play(healthy, clip(4), healthy.consumers, T0)
    clock.play(broken, clip(4), broken.consumers, T0)
    failed = clock.tick(T0)
    assert [(a, type(e)) for a, e in failed] == [(broken, RuntimeError)]
    assert broken.next_due is None  # stopped: not 50 failures a second
    fire(clock, T0 + 1)
    assert len(listener.rtp) == 4 and clock.next_due is None


async def test_closing_the_router_mid_play_ends_it_and_leaves_nothing():
    registry = Registry()
    router, announcer, subscribers = meeting(registry, "m")
    clock = NoticeClock()
    clock.play(announcer, clip(50), announcer.consumers, T0)
    fire(clock, T0 + 0.1)
    consumers = [c for s in subscribers for c in s.consumers.values()]
    await router.close()
    assert clock.next_due is None and clock.tick(T0 + 0.2) == []
    assert not (registry.routers or registry.transports or registry.producers or registry.consumers)
    assert announcer.closed and all(c.closed for c in consumers)


async def test_closing_the_direct_transport_closes_the_announcer_and_its_consumers():
    registry = Registry()
    router, announcer, subscribers = meeting(registry, "m")
    direct = registry.transports["m-direct"]
    consumers: list[Consumer] = list(announcer.consumers)
    await direct.close()
    for obj in (direct, announcer, *consumers):
        assert obj.closed and nowhere(registry, obj) == [], obj
    assert set(registry.transports) == {s.id for s in subscribers}


def test_rtcp_toward_the_announcer_goes_nowhere():
    registry = Registry()
    _, announcer, _ = meeting(registry, "m")
    direct = registry.transports["m-direct"]
    announcer.request_keyframe()  # audio: nothing to ask
    announcer.poll_keyframe_request()
    direct.send_receiver_reports()  # nothing is ever received for it
    assert direct.rtcp_dropped == 0
    direct.send_rtcp(b"\x81\xc9\x00\x01" + b"\x00" * 4)  # were anything to reach it: dropped
    assert direct.rtcp_dropped == 1
