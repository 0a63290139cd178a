"""sfu.clockwork: the routers' active speakers, decided on the clockwork's tick. Real RTP
through real producers of two meetings, on a fake clock; each change is told once, with
its router, and the periodic task is part of what `start` runs."""

from __future__ import annotations

import asyncio

from sfu.clockwork import SPEAKER_POLL_S, Clockwork
from sfu.engine.notice_clock import NoticeClock
from sfu.engine.quality import LinkQuality
from sfu.engine.router import Router
from sfu.wire import rtcp, rtp
from tests.support.speech import LEVEL_ID, Talk, play
from tests.support.tree import OPUS, Clock, new_tree, producer, wire
from tests.support.tree import VP8 as VP8_CODEC

LEVELS = {rtp.URI_AUDIO_LEVEL: LEVEL_ID}


def mics(router: Router, clock: Clock, *names: str, first_ssrc: int):
    made = {}
    for index, name in enumerate(names):
        made[name] = producer(wire(router, f"pub-{name}"), name, first_ssrc + index, "audio", clock, extmap=LEVELS)
    sub = wire(router, f"sub-{router.id}")
    for mic in made.values():
        sub.consume(f"sub-{mic.id}", mic, OPUS)
    return made


def test_each_change_of_speaker_is_told_once_with_its_router():
    registry, first = new_tree()
    second = Router("r2", registry)
    clock = Clock(0.0)
    heard: list[tuple[str, str]] = []
    clockwork = Clockwork(registry, NoticeClock(), 1.0, lambda router, who: heard.append((router, who)), clock)
    producers = {**mics(first, clock, "a", "b", first_ssrc=100), **mics(second, clock, "x", "y", first_ssrc=200)}
    talk = Talk().speak("a", 1000, 4000).speak("b", 4000, 7000).speak("y", 2000, 6000)
    ticks_ms = int(SPEAKER_POLL_S * 1000)
    play(talk, producers, clock, 0, 9000, ticks_ms, lambda t: clockwork.tick_speakers())
    assert heard == [("r", "a"), ("r2", "y"), ("r", "b")]


def test_nothing_is_told_in_silence_nor_by_a_router_nobody_speaks_in():
    registry, router = new_tree()
    clock = Clock(0.0)
    heard: list[tuple[str, str]] = []
    clockwork = Clockwork(registry, NoticeClock(), 1.0, lambda router, who: heard.append((router, who)), clock)
    play(Talk(), mics(router, clock, "a", "b", first_ssrc=1), clock, 0, 5000, 50, lambda t: clockwork.tick_speakers())
    Router("empty", registry)
    clockwork.tick_speakers()
    assert heard == []


async def test_start_runs_the_speaker_tick():
    registry, router = new_tree()
    ticked = asyncio.Event()

    class Watched(Router):
        __slots__ = ()

        def tick_speaker(self, now_ms: int) -> str | None:
            ticked.set()
            return None

    registry.routers.clear()
    Watched("r", registry)
    clockwork = Clockwork(registry, NoticeClock(), 1.0)
    clockwork.start()
    try:
        await asyncio.wait_for(ticked.wait(), 2.0)
    finally:
        clockwork.stop()


class _Subscription:
    def __init__(self, fails: bool) -> None:
        self.fails = fails
        self.estimate_bps = 300_000
        self.runs = 0

    def due(self, now: float) -> bool:
        return True

    def run(self, now: float) -> list[dict]:
        self.runs += 1
        if self.fails:
            raise ZeroDivisionError("a bug in one subscriber's allocation")
        return [{"consumer_id": f"c{self.runs}"}]


class _Transport:
    def __init__(self, transport_id: str, fails: bool) -> None:
        self.id = transport_id
        self.subscription = _Subscription(fails)


def test_one_failing_allocation_leaves_the_others_allocated_and_logs_once(caplog):
    registry, _ = new_tree()
    told: list[tuple[str, int, list[dict]]] = []
    clockwork = Clockwork(registry, NoticeClock(), 1.0, clock=Clock(0.0), on_allocation=lambda *a: told.append(a))
    broken, fine = _Transport("t-broken", fails=True), _Transport("t-fine", fails=False)
    registry.transports["t-broken"] = broken  # first: its failure must not stop the round
    registry.transports["t-fine"] = fine
    for _ in range(3):
        clockwork.tick_allocations()
    assert [transport for transport, _, _ in told] == ["t-fine"] * 3
    assert broken.subscription.runs == 3 and clockwork.failures == 3
    logged = [r for r in caplog.records if "allocation of t-broken failed" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None


def test_each_judged_transport_s_window_is_told_when_it_had_reports():
    registry, router = new_tree()
    clock = Clock(0.0)
    told: list[tuple[str, dict]] = []
    clockwork = Clockwork(registry, NoticeClock(), 1.0, clock=clock,
                          on_quality=lambda transport, window: told.append((transport.id, window)))  # fmt: skip
    reporting, silent, unjudged = wire(router, "reporting"), wire(router, "silent"), wire(router, "unjudged")
    reporting.quality, silent.quality = LinkQuality(clock), LinkQuality(clock)
    reporting.quality.own_reception(rtcp.ReportBlock(1, 128, 0, 0, 0, 0, 0), 90_000)  # half lost
    clockwork.tick_quality()
    assert [(tid, window["loss_ratio"]) for tid, window in told] == [("reporting", 0.5)]
    clockwork.tick_quality()  # a new window, empty: nothing more
    assert len(told) == 1 and unjudged.quality is None


def test_a_keyframe_request_deferred_by_the_limit_is_sent_when_due_with_nobody_waiting():
    """Regression (found by the pipes between workers): a PLI that came within the limit
    from a consumer that forwards already (so nobody waits for a keyframe) was remembered
    but never polled, so it was lost; it leaves at the next poll past the limit."""
    registry, router = new_tree()
    clock = Clock()
    camera = producer(wire(router, "pub"), "cam", 1111, "video", clock)
    sub = wire(router, "sub")
    consumer = sub.consume("c", camera, VP8_CODEC)
    camera.keyframe_waiters = 0  # forwarding already: nobody waits
    clockwork = Clockwork(registry, NoticeClock(), 1.0, clock=clock)
    publisher = registry.transports["pub"]
    camera.request_keyframe()
    sent = len(publisher.rtcp)
    clock.now += 0.1
    consumer.request_keyframe()  # within the limit: deferred
    clockwork._poll_keyframes()
    assert len(publisher.rtcp) == sent
    clock.now += 0.5
    clockwork._poll_keyframes()
    assert len(publisher.rtcp) == sent + 1 and rtcp.parse_compound(publisher.rtcp[-1])[0].media_ssrc == 1111
