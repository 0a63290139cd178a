"""The Transport base contract (sfu/transport/base.py), held by all three transports:
WebRTC, plain and direct. No sockets: the WebRTC transport is never checked by ICE, the
plain one never bound.

Each: a place in its router and the worker's registry until it closes; mids in order;
producers found by id, mid and SSRC; `connected`; receiver reports only for streams
received and only while connected; close cascades, is idempotent and leaves nothing.
"""

from __future__ import annotations

import pytest
from aiortc.rtcdtlstransport import RTCCertificate

from sfu.engine.announcer import Announcer
from sfu.engine.producer import Producer
from sfu.engine.stats import Counters
from sfu.transport.base import Transport
from sfu.transport.direct import DirectTransport
from sfu.transport.plain import PlainTransport
from sfu.transport.udp import MediaSocket
from sfu.transport.webrtc import WebRtcTransport
from sfu.wire import rtcp, rtp
from tests.support.tree import OPUS, VP8, Clock, new_tree, nowhere, producer, wire

_CERTIFICATE: list[RTCCertificate] = []


def certificate() -> RTCCertificate:
    if not _CERTIFICATE:
        _CERTIFICATE.append(RTCCertificate.generateCertificate())
    return _CERTIFICATE[0]


def recording(cls: type[Transport]) -> type[Transport]:
    """`cls` with its RTCP kept in a list instead of sent: the base's decisions, no wire."""

    class Recording(cls):  # type: ignore[valid-type,misc]
        __slots__ = ("rtcp_out",)

        def send_rtcp(self, packet: bytes) -> None:
            self.rtcp_out.append(packet)

    Recording.__name__ = cls.__name__
    return Recording


def make(kind: str, router, transport_id: str = "t", direction: str = "publish") -> Transport:
    counters = Counters()
    if kind == "webrtc":
        transport: Transport = recording(WebRtcTransport)(
            transport_id, router, direction, MediaSocket(counters), certificate(), counters, lambda t, s: None
        )
    elif kind == "plain":
        transport = recording(PlainTransport)(transport_id, router, counters, srtp=False)
    else:
        transport = recording(DirectTransport)(transport_id, router, counters)
    transport.rtcp_out = []  # type: ignore[attr-defined]
    router.add_transport(transport)
    return transport


def produce(transport: Transport, producer_id: str, ssrc: int) -> Producer:
    if isinstance(transport, DirectTransport):
        announcer = Announcer(
            producer_id, 111, transport.counters, Clock(), transport, mid=transport.allocate_mid(), listener=transport
        )
        transport.add_producer(announcer)
        return announcer
    return producer(transport, producer_id, ssrc)


KINDS = ["webrtc", "plain", "direct"]


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


async def test_a_transport_is_in_its_router_and_the_registry_until_it_closes(kind):
    registry, router = new_tree()
    transport = make(kind, router)
    assert transport.id == "t" and transport.router is router and not transport.closed
    assert registry.transports["t"] is transport and router.transports["t"] is transport
    await transport.close()
    assert transport.closed and nowhere(registry, transport) == []


def test_mids_are_allocated_in_order_and_never_reused(kind):
    _, router = new_tree()
    transport = make(kind, router)
    assert [transport.allocate_mid() for _ in range(3)] == ["0", "1", "2"]


def test_producers_are_found_by_id_mid_and_ssrc(kind):
    registry, router = new_tree()
    transport = make(kind, router)
    made = produce(transport, "p", 1234)
    assert transport.producers == {"p": made} and transport.producers_by_mid == {made.params.mid: made}
    assert registry.producers["p"] is made and router.producers["p"] is made
    # The announcer has no SSRC: nothing arrives for it.
    assert transport.producers_by_ssrc == ({} if kind == "direct" else {1234: made})
    assert made.sink is transport and made.listener is transport


async def test_close_cascades_is_idempotent_and_leaves_nothing(kind):
    registry, router = new_tree()
    transport = make(kind, router)
    made = produce(transport, "p", 1234)
    subscriber = wire(router, "sub")
    consumer = subscriber.consume("c", made, OPUS if kind == "direct" else VP8)
    await transport.close()
    await transport.close()
    assert made.closed and consumer.closed and not transport.connected
    for obj in (transport, made, consumer):
        assert nowhere(registry, obj) == [], obj
    assert set(registry.transports) == {"sub"} and not registry.producers and not registry.consumers


async def test_a_closed_transport_refuses_new_producers_and_consumers(kind):
    _, router = new_tree()
    transport = make(kind, router, direction="subscribe")
    other = producer(wire(router, "pub"), "other", 99)
    await transport.close()
    with pytest.raises(ValueError, match="closed"):
        produce(transport, "p", 1234)
    with pytest.raises(ValueError, match="closed" if kind != "direct" else "no consumers"):
        transport.consume("c", other, VP8)


def test_connected_means_it_can_send_now(kind):
    _, router = new_tree()
    transport = make(kind, router)
    # A WebRTC transport waits for DTLS-SRTP; a plain one can send (to its remote, once
    # known); a direct one has nothing to wait for.
    assert transport.connected is (kind != "webrtc")


def test_consumers_where_the_transport_has_them(kind):
    registry, router = new_tree()
    camera = producer(wire(router, "pub"), "cam", 1)
    transport = make(kind, router, direction="subscribe")
    if kind == "direct":
        with pytest.raises(ValueError, match="no consumers"):
            transport.consume("c", camera, VP8)
        assert not registry.consumers and not camera.consumers
        return
    consumer = transport.consume("c", camera, VP8)
    assert transport.consumers == {"c": consumer} and registry.consumers["c"] is consumer
    assert consumer.sink is transport and consumer.listener is transport and consumer.mid == "0"
    assert transport.consumers_by_ssrc[consumer.ssrc] is consumer
    # RTX is negotiated in SDP: only a WebRTC subscriber has it; a plain consumer starts at once.
    assert (consumer.rtx_payload_type is not None) is (kind == "webrtc")
    assert consumer.active is (kind == "plain")
    consumer.close()
    assert nowhere(registry, consumer) == [] and not transport.consumers_by_ssrc


def test_receiver_reports_only_for_streams_received_and_only_while_connected(kind):
    _, router = new_tree()
    transport = make(kind, router)
    made = produce(transport, "p", 1234)
    transport.send_receiver_reports()
    assert transport.rtcp_out == []  # nothing received yet
    if kind == "direct":
        return  # nothing is ever received for an announcer
    for seq in range(5):
        made.on_rtp(rtp.build_packet(100, seq, 0, 1234, payload=b"\x10\x01" + b"d" * 20), 1234)
    transport.connected = False
    transport.send_receiver_reports()
    assert transport.rtcp_out == []
    transport.connected = True
    transport.send_receiver_reports()
    (report,) = transport.rtcp_out
    rr, sdes = rtcp.parse_compound(report)
    assert isinstance(rr, rtcp.ReceiverReport) and rr.ssrc == transport.rtcp_ssrc
    assert [b.ssrc for b in rr.reports] == [1234] and rr.reports[0].highest_sequence == 4
