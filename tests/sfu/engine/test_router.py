"""The object tree (sfu/engine/router.py, sfu/transport/base.py) without sockets: closing a
router, transport, producer or consumer closes what hangs below it and leaves no entry
anywhere: not in the registry, the router, a transport's maps, nor a producer's consumers.

The transports here are `Wire`s (tests/support/tree.py): the real Transport base with a
list for a wire.
"""

from __future__ import annotations

import pytest

from sfu.engine.router import Registry, Router
from sfu.engine.stats import Counters
from sfu.wire import rtcp, rtp
from tests.support.tree import OPUS, VP8, Clock, Wire, new_tree, nowhere, producer, wire

VP8_KEY = bytes([0x10, 0x00, 0x9D, 0x01, 0x2A]) + b"k" * 50


def meeting():
    """A router with a publisher (camera + mic) and two subscribers consuming both."""
    registry, router = new_tree()
    pub = wire(router, "pub")
    cam = producer(pub, "cam", 1111)
    mic = producer(pub, "mic", 2222, kind="audio")
    subs = [wire(router, name) for name in ("s1", "s2")]
    consumers = {
        (sub.id, p.id): sub.consume(f"{sub.id}-{p.id}", p, VP8 if p is cam else OPUS)
        for sub in subs
        for p in (cam, mic)
    }
    return registry, router, pub, (cam, mic), subs, consumers


def empty(registry: Registry) -> bool:
    return not (registry.routers or registry.transports or registry.producers or registry.consumers)


def test_the_tree_registers_everything_once_in_its_router_and_the_registry():
    registry, router, pub, (cam, mic), subs, consumers = meeting()
    assert registry.routers == {"r": router}
    assert registry.transports == router.transports == {"pub": pub, "s1": subs[0], "s2": subs[1]}
    assert registry.producers == router.producers == {"cam": cam, "mic": mic}
    assert registry.consumers == router.consumers == {c.id: c for c in consumers.values()}
    assert pub.producers_by_ssrc == {1111: cam, 2222: mic} and set(pub.producers_by_mid) == {"0", "1"}
    assert cam.consumers == [consumers["s1", "cam"], consumers["s2", "cam"]]
    sub = subs[0]
    assert sub.consumers == {"s1-cam": consumers["s1", "cam"], "s1-mic": consumers["s1", "mic"]}
    assert set(sub.consumers_by_ssrc.values()) == set(sub.consumers.values())


def test_closing_a_consumer_leaves_no_entry_anywhere():
    registry, router, _, (cam, _), subs, consumers = meeting()
    gone = consumers["s1", "cam"]
    gone.close()
    assert gone.closed and nowhere(registry, gone) == []
    assert cam.consumers == [consumers["s2", "cam"]] and len(registry.consumers) == 3
    gone.close()  # idempotent
    assert len(registry.consumers) == 3


def test_closing_a_producer_closes_its_consumers_on_every_transport():
    registry, router, pub, (cam, mic), subs, consumers = meeting()
    cam.close()
    assert cam.closed and nowhere(registry, cam) == []
    for sub in subs:
        closed = consumers[sub.id, "cam"]
        assert closed.closed and nowhere(registry, closed) == []
    assert set(registry.consumers) == {"s1-mic", "s2-mic"} and set(registry.producers) == {"mic"}
    assert pub.producers_by_ssrc == {2222: mic} and list(pub.producers_by_mid) == ["1"]


async def test_closing_a_publisher_transport_closes_its_producers_and_their_consumers():
    registry, router, pub, producers, subs, consumers = meeting()
    keyframe_waiters = [p.keyframe_waiters for p in producers]
    assert keyframe_waiters == [2, 2]  # the consumers wait for a first keyframe / packet
    await pub.close()
    for obj in (pub, *producers, *consumers.values()):
        assert obj.closed and nowhere(registry, obj) == [], obj
    assert set(registry.transports) == {"s1", "s2"} and not registry.producers and not registry.consumers
    assert all(not sub.consumers and not sub.consumers_by_ssrc for sub in subs)


async def test_closing_a_subscriber_transport_closes_its_consumers_only():
    registry, router, pub, (cam, mic), (s1, s2), consumers = meeting()
    await s1.close()
    assert s1.closed and not s1.connected and nowhere(registry, s1) == []
    assert [c.closed for c in consumers.values()] == [True, True, False, False]
    assert cam.consumers == [consumers["s2", "cam"]] and mic.consumers == [consumers["s2", "mic"]]
    assert cam.keyframe_waiters == 1  # the closed one no longer waits
    await s1.close()  # idempotent


async def test_closing_the_router_closes_everything_and_leaves_the_registry_empty():
    registry, router, pub, producers, subs, consumers = meeting()
    other = Router("other", registry)
    wire(other, "elsewhere")
    await router.close()
    assert router.closed and set(registry.routers) == {"other"} and set(registry.transports) == {"elsewhere"}
    for obj in (pub, *subs, *producers, *consumers.values()):
        assert obj.closed and nowhere(registry, obj) == [], obj
    assert not router.transports and not router.producers and not router.consumers
    await other.close()
    assert empty(registry)
    await router.close()  # idempotent


class Counting(Wire):
    """A Wire that lists the closes it heard of."""

    __slots__ = ("heard",)

    def __init__(self, transport_id: str, router: Router) -> None:
        super().__init__(transport_id, router, Counters())
        self.heard: list[str] = []
        router.add_transport(self)

    def on_producer_closed(self, producer) -> None:
        self.heard.append(producer.id)
        super().on_producer_closed(producer)

    def on_consumer_closed(self, consumer) -> None:
        self.heard.append(consumer.id)
        super().on_consumer_closed(consumer)


async def test_each_owner_hears_of_a_close_once_whoever_closes_first():
    registry, router = new_tree()
    pub, sub = Counting("pub", router), Counting("sub", router)
    cam = producer(pub, "cam", 1)
    first, second = sub.consume("c1", cam, VP8), sub.consume("c2", cam, VP8)
    first.close()
    cam.close()  # closes c2; c1 is not closed twice
    await sub.close()
    await pub.close()
    await router.close()
    assert sub.heard == ["c1", "c2"] and pub.heard == ["cam"]
    assert first.closed and second.closed and empty(registry)


def test_ids_are_unique_per_worker_whatever_the_router():
    registry, router = new_tree()
    other = Router("other", registry)
    wire(router, "t")
    with pytest.raises(ValueError, match="transport t exists"):
        wire(other, "t")
    with pytest.raises(ValueError, match="router r exists"):
        Router("r", registry)
    producer(registry.transports["t"], "p", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="producer p exists"):
        producer(wire(other, "t2"), "p", 2)


async def test_an_id_taken_again_after_a_close_survives_the_old_objects_cascade():
    registry, router, _, (cam, _), (s1, s2), consumers = meeting()
    consumers["s1", "cam"].close()
    again = s2.consume("s1-cam", cam, VP8)  # the closed consumer's id, on another transport
    await s1.close()
    assert registry.consumers["s1-cam"] is again and router.consumers["s1-cam"] is again
    assert s2.consumers["s1-cam"] is again and not again.closed


def test_a_consumer_of_another_meetings_producer_is_refused():
    registry, router = new_tree()
    other = Router("other", registry)
    cam = producer(wire(router, "pub"), "cam", 1)
    sub = wire(other, "sub")
    with pytest.raises(ValueError, match="different meetings"):
        sub.consume("c", cam, VP8)
    assert not registry.consumers and not sub.consumers and not cam.consumers


async def test_closed_owners_refuse_new_children():
    registry, router = new_tree()
    pub = wire(router, "pub")
    sub = wire(router, "sub")
    cam = producer(pub, "cam", 1)
    await sub.close()
    with pytest.raises(ValueError, match="transport sub is closed"):
        sub.consume("c", cam, VP8)
    await router.close()
    with pytest.raises(ValueError, match="router r is closed"):
        router.add_transport(pub)
    assert empty(registry)


def test_rtcp_for_a_closed_consumer_reaches_no_producer():
    """Regression: a WebRTC subscriber transport kept closed consumers in its SSRC map, so
    a PLI for a closed m-line still asked the publisher for a keyframe."""
    registry, router = new_tree()
    clock = Clock()
    pub = wire(router, "pub")
    cam = producer(pub, "cam", 1111, clock=clock)
    sub = wire(router, "sub")
    consumer = sub.consume("c", cam, VP8)
    cam.on_rtp(rtp.build_packet(100, 1, 0, 1111, payload=VP8_KEY), 1111)
    assert len(sub.rtp) == 1
    consumer.close()
    clock.now += 10  # past any PLI interval
    before = len(pub.rtcp)
    sub._route_rtcp(rtcp.build_pli(0xABCD, consumer.ssrc) + rtcp.build_nack(0xABCD, consumer.ssrc, [1]))
    assert len(pub.rtcp) == before and len(sub.rtp) == 1  # no PLI upstream, nothing resent
