"""A router is one meeting's forwarding domain inside a worker (mediasoup's Router).

A worker's objects form one tree: Worker → Router → Transport → Producer / Consumer.
Each object is registered under its owner by whoever makes it, and closing any object
closes what hangs below it, each step written once:

- `Router.close` closes its transports;
- `Transport.close` closes its producers and its consumers;
- `Producer.close` closes its consumers (on whichever transports they send);
- a producer or consumer that closes tells its transport (its listener), which forgets
  it and tells its router, which forgets it too.

The router keeps its transports, producers and consumers by id, and the meeting's
dominant-speaker detector (`sfu.engine.speaker.DominantSpeaker`): every microphone
registered here that carries RFC 6464 levels feeds it (`Producer.hear_levels`), a closed
producer is forgotten by it, and the worker's clockwork asks it for a decision
(`tick_speaker`), and the meeting's last-N (`set_last_n`), which each subscriber's
allocation reads (`sfu.engine.subscription.Subscription`: it runs again when the
speakers or last-N changed). The worker's `Registry` (every live object of the worker by id, for
the channel's requests, which name an entity but not its router) is kept by the routers
in the same steps: nothing else writes to it.

Transports live in `sfu.transport`, above this package: the router knows them only
through `RouterTransport`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

from sfu.engine.speaker import DominantSpeaker

if TYPE_CHECKING:
    from sfu.engine.consumer import Consumer
    from sfu.engine.producer import Producer


class RouterTransport(Protocol):
    """What a router needs from its transports (sfu.transport.base.Transport)."""

    id: str

    async def close(self) -> None: ...


class Registry:
    """Every live router, transport, producer and consumer of one worker by id.

    Ids are unique per worker, whatever their router: the channel's requests name a
    transport, producer or consumer alone. Only routers write here (`Router`)."""

    __slots__ = ("routers", "transports", "producers", "consumers")

    def __init__(self) -> None:
        self.routers: dict[str, Router] = {}
        self.transports: dict[str, RouterTransport] = {}
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}


T = TypeVar("T")


def _add(own: dict[str, T], registry: dict[str, T], key: str, value: T, what: str) -> None:
    if key in registry:
        raise ValueError(f"{what} {key} exists")
    own[key] = value
    registry[key] = value


def _forget(own: dict[str, T], registry: dict[str, T], key: str, value: T) -> None:
    # By identity: an id may be taken again by a new object once the old one closed.
    if own.get(key) is value:
        del own[key]
    if registry.get(key) is value:
        del registry[key]


class Router:
    __slots__ = ("id", "registry", "transports", "producers", "consumers", "speaker", "last_n", "closed")

    def __init__(self, router_id: str, registry: Registry) -> None:
        if router_id in registry.routers:
            raise ValueError(f"router {router_id} exists")
        self.id = router_id
        self.registry = registry
        self.transports: dict[str, RouterTransport] = {}
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}
        self.speaker = DominantSpeaker()  # who speaks, by producer id
        self.last_n: int | None = None  # video of at most this many participants per subscriber (None: all)
        self.closed = False
        registry.routers[router_id] = self

    # ------------------------------------------------------------ registration

    def add_transport(self, transport: RouterTransport) -> None:
        self._check_open()
        _add(self.transports, self.registry.transports, transport.id, transport, "transport")

    def add_producer(self, producer: Producer) -> None:
        self._check_open()
        _add(self.producers, self.registry.producers, producer.id, producer, "producer")
        producer.hear_levels(self.speaker)

    def add_consumer(self, consumer: Consumer) -> None:
        self._check_open()
        if self.producers.get(consumer.producer.id) is not consumer.producer:
            raise ValueError("producer and transport are in different meetings")
        _add(self.consumers, self.registry.consumers, consumer.id, consumer, "consumer")

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"router {self.id} is closed")

    # ---------------------------------------------- what closed below (the one path up)

    def on_transport_closed(self, transport: RouterTransport) -> None:
        _forget(self.transports, self.registry.transports, transport.id, transport)

    def on_producer_closed(self, producer: Producer) -> None:
        _forget(self.producers, self.registry.producers, producer.id, producer)
        self.speaker.remove(producer.id)

    def on_consumer_closed(self, consumer: Consumer) -> None:
        _forget(self.consumers, self.registry.consumers, consumer.id, consumer)

    # ------------------------------------------------------------ the active speaker

    def tick_speaker(self, now_ms: int) -> str | None:
        """The producer id of the new dominant speaker when a decision is due and it
        changed (the detector decides every DECISION_INTERVAL_MS), else None."""
        return self.speaker.tick(now_ms)  # type: ignore[return-value]

    def set_last_n(self, last_n: int) -> None:
        """The meeting's last-N (0: no limit). Every subscriber's allocation sees the
        change at its next look (sfu.engine.subscription) and runs again at once."""
        if last_n < 0:
            raise ValueError(f"last_n: {last_n}, expected >= 0 (0: no limit)")
        self.last_n = last_n or None

    # ------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Close every transport (and so everything below them), then leave the registry."""
        if self.closed:
            return
        self.closed = True
        if self.registry.routers.get(self.id) is self:
            del self.registry.routers[self.id]
        for transport in list(self.transports.values()):
            await transport.close()
