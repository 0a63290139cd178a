"""A direct transport (mediasoup's DirectTransport): a transport of a router with no socket.

Its producers are fed by the worker itself rather than by a peer: today the announcers
(sfu/engine/announcer.py), which play notice clips that control sends with NOTICE_PLAY.
Subscribers consume them like any other producer, on their own transports. Being a
transport, it gives them a place in the tree: they close with it, and it closes with its
router.

Nothing arrives here and nothing leaves: it has no consumers, and the RTCP its producers
would send upstream (NACK, PLI, receiver reports) has no one to go to, so it is counted
and dropped. Its producers are not incoming streams (the worker's `producers` gauge), and
it is not a network path (the `transports` gauge).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sfu.engine.consumer import Consumer
from sfu.engine.producer import Producer
from sfu.engine.stats import Counters
from sfu.transport.base import Transport

if TYPE_CHECKING:
    from sfu.engine.router import Router
    from sfu.wire.sdp import Codec


class DirectTransport(Transport):
    __slots__ = ("rtcp_dropped",)

    KIND = "direct"
    NETWORK = False

    def __init__(self, transport_id: str, router: Router, counters: Counters) -> None:
        super().__init__(transport_id, router, counters)
        self.connected = True  # nothing to wait for
        self.rtcp_dropped = 0

    def send_rtp(self, packet: bytes) -> None:
        pass  # never called: consume() refuses consumers

    def send_rtcp(self, packet: bytes) -> None:
        self.rtcp_dropped += 1

    def consume(self, consumer_id: str, producer: Producer, codec: Codec) -> Consumer:
        raise ValueError(f"transport {self.id} is a direct transport: it has no consumers")
