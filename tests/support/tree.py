"""A worker's object tree without sockets: a router, transports whose wire is a list, and
checks that an object left no entry anywhere once it closed."""

from __future__ import annotations

from sfu.engine.consumer import Consumer
from sfu.engine.producer import Producer, ProducerParams
from sfu.engine.router import Registry, Router
from sfu.engine.stats import Counters
from sfu.transport.base import Transport
from sfu.wire import sdp

VP8 = sdp.Codec(payload_type=96, name="VP8", clock_rate=90000, rtx_payload_type=97)
OPUS = sdp.Codec(payload_type=111, name="opus", clock_rate=48000, channels=2)


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Wire(Transport):
    """A transport whose wire is two lists: what it was asked to send. Connected at once;
    consumers start at once, as on a plain transport."""

    __slots__ = ("rtp", "rtcp")

    KIND = "test"

    def __init__(self, transport_id: str, router: Router, counters: Counters) -> None:
        super().__init__(transport_id, router, counters)
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []
        self.connected = True

    def send_rtp(self, packet: bytes) -> None:
        self.rtp.append(packet)

    def send_rtcp(self, packet: bytes) -> None:
        self.rtcp.append(packet)

    def consume(self, consumer_id: str, producer: Producer, codec: sdp.Codec) -> Consumer:
        consumer = super().consume(consumer_id, producer, codec)
        consumer.activate(None, 0, False)
        return consumer


def wire(router: Router, transport_id: str, counters: Counters | None = None) -> Wire:
    transport = Wire(transport_id, router, counters or Counters())
    router.add_transport(transport)
    return transport


def producer(
    transport: Transport,
    producer_id: str,
    ssrc: int,
    kind: str = "video",
    clock: Clock | None = None,
    *,
    source: str | None = None,
    extmap: dict[str, int] | None = None,
) -> Producer:
    """A producer arriving on `transport`, registered (as the worker makes them); `extmap`
    is what its publisher negotiated (e.g. the audio level: `{sdp.URI_AUDIO_LEVEL: 1}`)."""
    params = ProducerParams(
        producer_id=producer_id,
        kind=kind,
        source=source or ("camera" if kind == "video" else "microphone"),
        mid=transport.allocate_mid(),
        codec_name="VP8" if kind == "video" else "opus",
        clock_rate=90000 if kind == "video" else 48000,
        payload_type=100 if kind == "video" else 109,
        ssrc=ssrc,
        extmap=dict(extmap or {}),
    )
    made = Producer(params, transport, transport.counters, clock or Clock(), stream_id=transport.id, listener=transport)
    transport.add_producer(made)
    return made


def new_tree() -> tuple[Registry, Router]:
    registry = Registry()
    return registry, Router("r", registry)


def nowhere(registry: Registry, obj: Router | Transport | Producer | Consumer) -> list[str]:
    """Where `obj` is still listed in the worker's tree (empty: nowhere)."""
    found = []
    maps = {"registry": registry}
    for router in registry.routers.values():
        maps[f"router {router.id}"] = router
    for transport in registry.transports.values():
        maps[f"transport {transport.id}"] = transport
    for where, holder in maps.items():
        for name in ("routers", "transports", "producers", "consumers"):
            table = getattr(holder, name, None)
            if isinstance(table, dict) and obj in table.values():
                found.append(f"{where}.{name}")
    for transport in registry.transports.values():
        for name in ("producers_by_mid", "producers_by_ssrc", "consumers_by_ssrc"):
            if obj in getattr(transport, name).values():
                found.append(f"transport {transport.id}.{name}")
    for each in registry.producers.values():
        if obj in each.consumers:
            found.append(f"producer {each.id}.consumers")
    return found
