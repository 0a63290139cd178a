"""A router is one meeting's forwarding domain inside a worker (mediasoup's Router)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sfu.engine.announcer import Announcer
    from sfu.engine.producer import Producer


class Router:
    __slots__ = ("id", "producers", "transport_ids", "closed", "announcer")

    def __init__(self, router_id: str) -> None:
        self.id = router_id
        self.producers: dict[str, Producer] = {}
        self.transport_ids: set[str] = set()
        self.closed = False
        # The meeting's server-side audio producer (recording notices); set by the worker,
        # also listed in `producers` so that it is consumed like any other track.
        self.announcer: Announcer | None = None

    def add_producer(self, producer: Producer) -> None:
        self.producers[producer.id] = producer

    def remove_producer(self, producer_id: str) -> Producer | None:
        return self.producers.pop(producer_id, None)
