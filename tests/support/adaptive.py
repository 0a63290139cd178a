"""Adaptive media without a network: subscribe transports with a real estimator and a
real `sfu.engine.subscription.Subscription` (as `WebRtcTransport` has them), simulcast
producers fed real VP8 packets of known sizes, on a settable clock."""

from __future__ import annotations

from sfu.engine.bwe import BandwidthEstimator
from sfu.engine.consumer import Consumer
from sfu.engine.producer import Producer, ProducerParams
from sfu.engine.router import Router
from sfu.engine.simulcast import SimulcastProducer
from sfu.engine.stats import Counters
from sfu.engine.subscription import Subscription
from sfu.wire import sdp
from tests.support.simulcast import PT, Simulcast
from tests.support.tree import Clock, Wire

RIDS = ("q", "h", "f")
SIZES = ((320, 180), (640, 360), (1280, 720))
# Bytes added to each packet of a layer: at 30 fps and (1, 2, 3) packets a frame that is
# ~140, ~510 and ~910 kbit/s.
EXTRA = (540, 1020, 1220)


class SubscriberWire(Wire):
    """A subscribe transport as the allocation sees it: its wire is a list."""

    __slots__ = ("estimator", "probe_target_bps", "subscription")

    def __init__(self, transport_id: str, router: Router, counters: Counters) -> None:
        super().__init__(transport_id, router, counters)
        self.estimator = BandwidthEstimator()
        self.probe_target_bps = 0
        self.subscription = Subscription(self, counters)

    def consume(self, consumer_id: str, producer: Producer, codec: sdp.Codec) -> Consumer:
        consumer = super().consume(consumer_id, producer, codec)
        self.subscription.changed()
        return consumer

    def on_consumer_closed(self, consumer: Consumer) -> None:
        super().on_consumer_closed(consumer)
        self.subscription.changed()


def subscriber(router: Router, transport_id: str = "sub", counters: Counters | None = None) -> SubscriberWire:
    transport = SubscriberWire(transport_id, router, counters or Counters())
    router.add_transport(transport)
    return transport


def simulcast_producer(transport: Wire, producer_id: str, clock: Clock, source: str = "camera") -> SimulcastProducer:
    """Three layers (ssrc 1000 + i, as tests.support.simulcast.Simulcast sends them)."""
    params = ProducerParams(producer_id, "video", source, transport.allocate_mid(), "VP8", 90000, PT, None, {},
                            rtx_payload_type=97, rids=RIDS)
    made = SimulcastProducer(params, transport, transport.counters, clock, stream_id=transport.id,
                             cache_size=256, listener=transport)
    for index, rid in enumerate(RIDS):
        made.learn(1000 + index, rid, False)
    transport.add_producer(made)
    return made


def sized(packet: bytes, spatial: int) -> bytes:
    """A packet of the test source with its layer's VP8 frame size (keyframes) and its
    layer's extra bytes."""
    where = packet.find(b"\x9d\x01\x2a")
    if where >= 0:
        width, height = SIZES[spatial]
        packet = packet[: where + 3] + width.to_bytes(2, "little") + height.to_bytes(2, "little") + packet[where + 7 :]
    return packet + bytes(EXTRA[spatial])


def send_frame(source: Simulcast, producer: SimulcastProducer, clock: Clock, keyframe: bool) -> None:
    """One frame of every active layer of `source` into `producer` (keyframes on all)."""
    for spatial, packet, now in source.frame(range(3) if keyframe else ()):
        clock.now = now
        producer.on_rtp(sized(packet, spatial), 1000 + spatial)
