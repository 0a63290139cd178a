"""Simulcast ingest on a WebRTC publish transport, without a network: Chromium's rid
simulcast offer (tests/data/chromium_publish_offer_simulcast.sdp, captured from
`addTransceiver(track, {sendEncodings: [{rid: 'q', scaleResolutionDownBy: 4},
{rid: 'h', scaleResolutionDownBy: 2}, {rid: 'f'}]})`) is answered with the streams it
receives, makes one producer of three layers, and packets carrying the MID and RTP stream
ID extensions (RTX: the repaired one) bind their SSRCs to the layers on first sight."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sfu.engine.producer import Producer, ProducerParams
from sfu.engine.simulcast import SimulcastConsumer, SimulcastProducer
from sfu.transport import negotiation
from sfu.wire import rtp, sdp
from tests.sfu.transport.test_negotiation import local, webrtc
from tests.support.engine import Sink
from tests.support.simulcast import Simulcast
from tests.support.tree import new_tree

OFFER = (Path(__file__).parents[2] / "data" / "chromium_publish_offer_simulcast.sdp").read_text()
SIMULCAST = dataclasses.replace(sdp.default_codec_policy(), accept_simulcast=True)
MID_ID, RID_ID, RRID_ID = 4, 10, 11  # the offer's extmap


class ClearRx:
    """SRTP that is not: what arrives is the packet."""

    def unprotect(self, data: bytes) -> bytes:
        return data

    def unprotect_rtcp(self, data: bytes) -> bytes:
        return data


def publish(transport, policy=SIMULCAST):
    def make(params: ProducerParams) -> Producer:
        params.producer_id = f"p-{params.mid}"
        kind = SimulcastProducer if params.rids else Producer
        return kind(params, transport, transport.counters, lambda: 0.0, stream_id=transport.id, listener=transport)

    answer, created, closed = negotiation.apply_publish_offer(transport, OFFER, {}, local(transport), policy, make)
    for made in created:
        transport.add_producer(made)
    return sdp.parse(answer), created


def test_the_offer_is_answered_with_the_rids_it_sends_low_to_high():
    transport = webrtc(new_tree()[1], "pub", "publish")
    answer, created = publish(transport)
    video = answer.media[1]
    assert video.simulcast == "recv q;h;f" and video.rids == ["q", "h", "f"]
    text = sdp.serialize(answer)
    assert "a=rid:q recv\r\n" in text and "a=simulcast:recv q;h;f\r\n" in text
    assert video.extmap[rtp.URI_RID] == RID_ID and video.extmap[rtp.URI_REPAIRED_RID] == RRID_ID
    audio, camera = created
    assert type(audio) is Producer and isinstance(camera, SimulcastProducer)
    assert [layer.rid for layer in camera.layers] == ["q", "h", "f"]
    assert (transport.rid_ext_id, transport.rrid_ext_id) == (RID_ID, RRID_ID)


def test_declined_simulcast_is_one_stream():
    transport = webrtc(new_tree()[1], "pub", "publish")
    answer, created = publish(transport, sdp.default_codec_policy())
    assert answer.media[1].simulcast is None and answer.media[1].rids == []
    assert not isinstance(created[1], SimulcastProducer)


def test_more_than_three_streams_are_answered_three():
    offer = sdp.parse(OFFER)
    video = offer.media[1]
    video.rids = ["a", "b", "c", "d"]
    video.simulcast = "send a;b,x;c;d"
    answer, tracks, _ = sdp.answer_publish(offer, local(webrtc(new_tree()[1], "pub", "publish")), SIMULCAST)
    assert answer.media[1].simulcast == "recv a;b;c"
    assert tracks[1].simulcast_rids == ["a", "b", "c"]


def _tagged(packet: bytes, rid: str, repaired: bool = False) -> bytes:
    """The packet again, with the MID and (repaired) RTP stream ID extensions."""
    header = rtp.parse_header(packet)
    payload = packet[header.header_length:]
    extensions = {MID_ID: b"1", (RRID_ID if repaired else RID_ID): rid.encode()}
    return rtp.build_packet(header.payload_type, header.sequence_number, header.timestamp, header.ssrc,
                            payload=payload, marker=header.marker, extensions=extensions)


def test_packets_find_their_layer_by_rid_then_by_ssrc():
    transport = webrtc(new_tree()[1], "pub", "publish")
    _, (_, camera) = publish(transport)
    transport.rx = ClearRx()
    sink = Sink()
    consumer = SimulcastConsumer("c1", camera, sink, "0", 5555, 100, camera.counters)
    camera.add_consumer(consumer)
    consumer.activate(None, 0, False)
    source = Simulcast()
    for layer in source.layers:
        layer.ssrc = 0x1000 + layer.spatial
    packets = source.frames(4, keyframes={0: [0, 1, 2]})
    for spatial, packet, _ in packets[:6]:  # the first packets carry their RID
        transport.on_srtp(_tagged(packet, "qhf"[spatial]))
    assert [layer.ssrc for layer in camera.layers] == [0x1000, 0x1001, 0x1002]
    assert all(transport.producers_by_ssrc[0x1000 + i] is camera for i in range(3))
    for spatial, packet, _ in packets[6:]:  # later ones need not
        transport.on_srtp(packet)
    assert transport.counters.dropped.get("unknown_ssrc", 0) == 0
    assert [layer.reception.received for layer in camera.layers] == [4, 8, 12]
    assert len(sink.rtp) == 12  # layer f, forwarded
    # RTX of layer h: bound by its repaired RID, restores a packet of that layer.
    cached = camera.layers[1].cache.get(source.layers[1].seq)
    camera.layers[1].cache.clear()
    transport.on_srtp(_tagged(rtp.wrap_rtx(cached, 97, 0x2001, 1), "h", repaired=True))
    assert camera.layers[1].rtx_ssrc == 0x2001 and camera.counters.rtx_received == 1
    # An unknown rid binds nothing.
    stray = rtp.build_packet(96, 1, 1, 0x3000, payload=b"\x10\x00" + b"x" * 10, extensions={MID_ID: b"1", RID_ID: b"z"})
    transport.on_srtp(stray)
    assert transport.counters.dropped["unknown_ssrc"] == 1
    camera.close()
    assert camera not in transport.producers_by_ssrc.values()
