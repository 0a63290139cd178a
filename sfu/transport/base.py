"""What every transport of a router has, whatever carries its packets.

A transport is one path between the worker and one peer (WebRTC: ICE + DTLS-SRTP on the
shared socket; plain: a UDP port of its own; direct: no socket, the worker feeds its
producers itself). Here: its place in the tree (router, producers, consumers, each by id
and by what the packet path looks them up by), mids, RTCP routing and receiver reports,
`connected`, and the close cascade, written once for all three:

    transport.close() → producer.close() → its consumers' close() → ... → router forgets

Producers and consumers report their own closing back here (`on_producer_closed`,
`on_consumer_closed`: the transport is their listener), whoever closed them, so the maps
are kept in one place. Subclasses add the wire: `send_rtp`, `send_rtcp` and what they
release on close (`_release`).
"""

from __future__ import annotations

import random
import secrets
import socket
from typing import TYPE_CHECKING, ClassVar

from sfu.engine import feedback
from sfu.engine.consumer import Consumer
from sfu.engine.producer import Producer
from sfu.engine.quality import LinkQuality
from sfu.engine.simulcast import SimulcastConsumer, SimulcastProducer
from sfu.engine.stats import Counters

if TYPE_CHECKING:
    from sfu.engine.router import Router
    from sfu.transport.native import NativeSender
    from sfu.wire.sdp import Codec


def random_ssrc() -> int:
    return random.randint(1, 0xFFFFFFFF)


class Transport:
    __slots__ = (
        "id",
        "router",
        "counters",
        "rtcp_ssrc",
        "cname",
        "producers",
        "producers_by_mid",
        "producers_by_ssrc",
        "consumers",
        "consumers_by_ssrc",
        "next_mid",
        "connected",
        "closed",
        "quality",
        "native",
        "native_to",
    )

    KIND: ClassVar[str] = ""  # "WebRTC", "plain", "direct": what requests call it
    # Carries packets over the network: counted in the worker's `transports` gauge, and
    # its producers are incoming streams (the `producers` gauge).
    NETWORK: ClassVar[bool] = True
    # Consumers are described and started by SDP offer/answer (WebRTC), not at once.
    NEGOTIATES: ClassVar[bool] = False

    def __init__(self, transport_id: str, router: Router, counters: Counters) -> None:
        self.id = transport_id
        self.router = router
        self.counters = counters
        self.rtcp_ssrc = random.getrandbits(32) or 1
        self.cname = secrets.token_hex(8)
        self.producers: dict[str, Producer] = {}
        self.producers_by_mid: dict[str, Producer] = {}
        self.producers_by_ssrc: dict[int, Producer] = {}
        self.consumers: dict[str, Consumer] = {}  # live ones
        self.consumers_by_ssrc: dict[int, Consumer] = {}
        self.next_mid = 0
        self.connected = False  # can send now (see RtpSink.connected)
        self.closed = False
        # How good the path to the peer is (WebRTC transports: sfu.engine.quality); None:
        # not judged (plain and direct transports are the server's own).
        self.quality: LinkQuality | None = None
        # The native forwarding path (sfu.transport.native), when the worker uses it, and
        # where this transport sends through it now (a route: socket, address, SRTP
        # context), or None (the Python path: not connected, ICE-TCP, no native module).
        self.native: NativeSender | None = None
        self.native_to: object | None = None

    # ------------------------------------------------------------------ the wire

    def send_rtp(self, packet: bytes) -> None:
        raise NotImplementedError

    def send_rtcp(self, packet: bytes) -> None:
        raise NotImplementedError

    def send_header(self, first: int, seq: int, ts: int, ssrc: int, body: bytes, tcc_at: int) -> None:
        """Send a copy the native module writes: the consumer's header, then body (a
        transport-wide number at tcc_at, -1: none). Only called while `native_to` is
        set; a transport that sets it overrides this and send_rewritten."""
        raise NotImplementedError

    def send_rewritten(
        self, first: int, seq: int, ts: int, ssrc: int, body: bytes, tcc_at: int, codec: bytes, tail: bytes
    ) -> None:
        """send_header with a simulcast consumer's own codec bytes, then the tail."""
        raise NotImplementedError

    def next_transport_sequence(self) -> int:
        return 0  # only WebRTC subscribers negotiate transport-wide-cc (tcc_id stays 0)

    def own_socket(self) -> socket.socket | None:
        """The socket this transport alone receives on (None: the worker's shared one, or none)."""
        return None

    # ------------------------------------------------------------------ RTCP

    def _route_rtcp(self, plain: bytes) -> None:
        """One decrypted compound RTCP packet to the producers and consumers it names."""
        feedback.handle_rtcp(plain, self.producers_by_ssrc, self.consumers_by_ssrc, self.counters)

    def send_receiver_reports(self) -> None:
        """Periodic RR (+SDES) for the streams we receive (RFC 3550 §6.4.2); nothing before
        a producer has received a packet. Not while disconnected: a report block starts
        the next loss interval, so one computed and not sent would hide that loss."""
        if not self.connected or not self.producers_by_mid:
            return
        producers = self.producers_by_mid.values()
        for packet in feedback.receiver_reports(self.rtcp_ssrc, self.cname, producers, self.quality):
            self.send_rtcp(packet)

    def send_transport_feedback(self) -> None:
        """Periodic transport-wide congestion control feedback, where negotiated (WebRTC)."""

    def check_consent(self) -> None:
        """Periodic: stop sending to a peer whose consent lapsed (WebRTC, RFC 7675)."""

    # ------------------------------------------------------------------ the tree

    def allocate_mid(self) -> str:
        mid = str(self.next_mid)
        self.next_mid += 1
        return mid

    def add_producer(self, producer: Producer) -> None:
        """Register a producer arriving on this transport (made with this transport as its
        sink and listener): here, then in the router."""
        self._check_open()
        self.router.add_producer(producer)  # first: it refuses an id that exists
        self.producers[producer.id] = producer
        self.producers_by_mid[producer.params.mid] = producer
        for ssrc in producer.ssrcs():
            self.producers_by_ssrc[ssrc] = producer
        if self.native is not None:
            producer.flush_sends = self.native.flush

    def consume(
        self,
        consumer_id: str,
        producer: Producer,
        codec: Codec,
        *,
        mid: str | None = None,
        ssrc: int | None = None,
        rtx_ssrc: int | None = None,
    ) -> Consumer:
        """A new consumer of `producer` (of this transport's router) sending on this
        transport with `codec`'s payload types, registered here, in the producer and in
        the router. `mid` and the SSRCs: fixed by an answer already given (a player's
        slot, sfu.transport.playback); fresh ones otherwise. ValueError: a consumer that
        cannot be made here."""
        self._check_open()
        rtx_payload_type = self._rtx_payload_type(codec)
        kind = SimulcastConsumer if isinstance(producer, SimulcastProducer) else Consumer
        consumer = kind(
            consumer_id,
            producer,
            self,
            mid if mid is not None else self.allocate_mid(),
            ssrc=ssrc if ssrc is not None else random_ssrc(),
            payload_type=codec.payload_type,
            counters=self.counters,
            rtx_ssrc=(rtx_ssrc if rtx_ssrc is not None else random_ssrc()) if rtx_payload_type else None,
            rtx_payload_type=rtx_payload_type,
            listener=self,
        )
        self.router.add_consumer(consumer)  # first: it refuses an id that exists, or another meeting's producer
        self.consumers[consumer.id] = consumer
        for ssrc in (consumer.ssrc, consumer.rtx_ssrc):
            if ssrc is not None:
                self.consumers_by_ssrc[ssrc] = consumer
        producer.add_consumer(consumer)
        return consumer

    def _rtx_payload_type(self, codec: Codec) -> int | None:
        return None  # RTX is negotiated in SDP: only WebRTC subscribers have it

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"transport {self.id} is closed")

    def on_producer_closed(self, producer: Producer) -> None:
        if self.producers.get(producer.id) is producer:
            del self.producers[producer.id]
        if self.producers_by_mid.get(producer.params.mid) is producer:
            del self.producers_by_mid[producer.params.mid]
        for ssrc in producer.ssrcs():
            if self.producers_by_ssrc.get(ssrc) is producer:
                del self.producers_by_ssrc[ssrc]
        self.router.on_producer_closed(producer)

    def on_consumer_closed(self, consumer: Consumer) -> None:
        # RTCP for its SSRCs is someone else's from now on: a PLI or NACK for a closed
        # consumer must not reach its producer.
        if self.consumers.get(consumer.id) is consumer:
            del self.consumers[consumer.id]
        for ssrc in (consumer.ssrc, consumer.rtx_ssrc):
            if ssrc is not None and self.consumers_by_ssrc.get(ssrc) is consumer:
                del self.consumers_by_ssrc[ssrc]
        self.router.on_consumer_closed(consumer)

    async def close(self) -> None:
        """Close every producer and consumer of this transport, leave the router, then
        release the wire (sockets, DTLS). Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.connected = False
        for producer in list(self.producers.values()):
            producer.close()
        for consumer in list(self.consumers.values()):
            consumer.close()
        self.router.on_transport_closed(self)
        await self._release()

    async def _release(self) -> None:
        """What the subclass lets go of once the tree below it is closed."""
