"""sfu.transport.negotiation without a network: what one participant's SDP may make the
SFU carry. Publish offers are capped in m-lines and in tracks sent (refused whole, with
nothing changed); a producer whose mid leaves the offer is closed. A subscriber's offer
stays bounded however often tracks come and go: a closed consumer's m-line is rejected,
then recycled under a new mid once the client answered."""

from __future__ import annotations

import pytest
from aiortc.rtcdtlstransport import RTCCertificate

from sfu.engine.producer import Producer, ProducerParams
from sfu.engine.stats import Counters
from sfu.transport import negotiation
from sfu.transport.udp import MediaSocket
from sfu.transport.webrtc import WebRtcTransport
from sfu.wire import sdp
from tests.support.hostile_sdp import answer_subscribe, compact_publish_offer
from tests.support.tree import new_tree, producer, wire

POLICY = sdp.default_codec_policy()
_CERTIFICATE: list[RTCCertificate] = []


def certificate() -> RTCCertificate:
    if not _CERTIFICATE:
        _CERTIFICATE.append(RTCCertificate.generateCertificate())
    return _CERTIFICATE[0]


def webrtc(router, transport_id: str, direction: str, max_consumer_slots: int = 64) -> WebRtcTransport:
    counters = Counters()
    transport = WebRtcTransport(
        transport_id, router, direction, MediaSocket(counters), certificate(), counters, lambda t, s: None,
        max_consumer_slots=max_consumer_slots,
    )  # fmt: skip
    router.add_transport(transport)
    return transport


def local(transport: WebRtcTransport) -> sdp.LocalTransport:
    return negotiation.local_description(transport, ("sha-256", ":".join(["AB"] * 32)), ["127.0.0.1"], 40000)


def publish(transport: WebRtcTransport, offer: str, **limits):
    """apply_publish_offer as the worker runs it: closed producers closed, new ones added."""
    counter = iter(range(10_000))

    def make(params: ProducerParams) -> Producer:
        params.producer_id = f"{transport.id}-p{next(counter)}-{params.mid}"
        return Producer(params, transport, transport.counters, lambda: 0.0, stream_id=transport.id, listener=transport)

    answer, created, closed = negotiation.apply_publish_offer(transport, offer, {}, local(transport), POLICY, make, **limits)
    for gone in closed:
        gone.close()
    for made in created:
        transport.add_producer(made)
    return answer, created, closed


# --- publish -----------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [60, 200])
def test_a_publish_offer_with_too_many_m_lines_or_tracks_is_refused_and_changes_nothing(count):
    _, router = new_tree()
    transport = webrtc(router, "pub", "publish")
    with pytest.raises(ValueError, match=r"at most (32|8)"):
        publish(transport, compact_publish_offer(count), max_mlines=32, max_producers=8)
    assert not transport.producers and not router.producers and transport.remote_ice_ufrag is None


def test_the_limits_are_the_caller_s():
    _, router = new_tree()
    transport = webrtc(router, "pub", "publish")
    with pytest.raises(ValueError, match="sends 9 tracks, at most 8"):
        publish(transport, compact_publish_offer(9), max_mlines=32, max_producers=8)
    with pytest.raises(ValueError, match="has 33 m-lines, at most 32"):
        publish(transport, compact_publish_offer(33), max_mlines=32, max_producers=64)
    _, created, _ = publish(transport, compact_publish_offer(8), max_mlines=32, max_producers=8)
    assert len(created) == 8 == len(transport.producers)


def test_fresh_mids_each_time_do_not_accumulate_producers():
    _, router = new_tree()
    transport = webrtc(router, "pub", "publish")
    for round_ in range(20):
        offer = compact_publish_offer(2, first_mid=2 * round_, version=round_ + 1)
        _, created, closed = publish(transport, offer, max_mlines=32, max_producers=8)
        assert len(created) == 2 and len(closed) == (0 if round_ == 0 else 2)
        assert sorted(transport.producers_by_mid) == [str(2 * round_), str(2 * round_ + 1)]
    assert len(router.producers) == 2


def test_an_unchanged_offer_keeps_its_producers():
    _, router = new_tree()
    transport = webrtc(router, "pub", "publish")
    _, first, _ = publish(transport, compact_publish_offer(2))
    _, created, closed = publish(transport, compact_publish_offer(2, version=2))
    assert created == [] and closed == [] and list(transport.producers.values()) == first


# --- subscribe ---------------------------------------------------------------------------------


def offer_and_answer(transport: WebRtcTransport) -> sdp.SessionDescription:
    text, _ = negotiation.create_subscribe_offer(transport, local(transport), POLICY)
    negotiation.apply_subscribe_answer(transport, answer_subscribe(text))
    return sdp.parse(text)


def test_toggling_a_track_a_thousand_times_keeps_the_subscribe_offer_bounded():
    _, router = new_tree()
    source = wire(router, "source")
    camera = producer(source, "cam", 1111)
    microphone = producer(source, "mic", 2222, kind="audio")
    sub = webrtc(router, "sub", "subscribe")
    sub.consume("c-mic", microphone, negotiation.subscriber_codec(POLICY, microphone.params))
    offer_and_answer(sub)
    sizes = set()
    for n in range(1000):
        consumer = sub.consume(f"c-cam-{n}", camera, negotiation.subscriber_codec(POLICY, camera.params))
        offered = offer_and_answer(sub)
        assert [m.mid for m in offered.media if not m.rejected][-1] == consumer.mid
        consumer.close()
        offered = offer_and_answer(sub)
        sizes.add(len(offered.media))
    assert sizes == {2} and len(sub.consumer_slots) == 2
    assert len(router.consumers) == 1  # the microphone's


def test_a_closed_m_line_is_rejected_then_recycled_under_a_new_mid_for_its_kind_only():
    _, router = new_tree()
    source = wire(router, "source")
    camera = producer(source, "cam", 1111)
    screen = producer(source, "screen", 3333)
    microphone = producer(source, "mic", 2222, kind="audio")
    sub = webrtc(router, "sub", "subscribe")

    def consume(consumer_id, made):
        return sub.consume(consumer_id, made, negotiation.subscriber_codec(POLICY, made.params))

    first = consume("c1", microphone)
    cam = consume("c2", camera)
    offer_and_answer(sub)
    cam.close()
    first.close()
    # Not recyclable before the client answered the offer that rejects it.
    early = consume("c3", screen)
    assert len(sub.consumer_slots) == 3 and early.mid == "2"
    text, _ = negotiation.create_subscribe_offer(sub, local(sub), POLICY)
    offered = sdp.parse(text)
    assert [(m.mid, m.port, m.direction) for m in offered.media] == [
        ("0", 40000, "inactive"),  # the first m-line tags the BUNDLE group: never rejected
        ("1", 0, "inactive"),
        ("2", 40000, "sendonly"),
    ]
    assert offered.bundle == ["0", "2"]
    negotiation.apply_subscribe_answer(sub, answer_subscribe(text))
    again = consume("c4", camera)
    assert sub.consumer_slots.index(again) == 1 and again.mid == "3"  # recycled, a new mid
    audio = consume("c5", microphone)
    assert sub.consumer_slots.index(audio) == 3  # no audio m-line to recycle: a new one


def test_the_subscribe_m_lines_are_capped():
    _, router = new_tree()
    source = wire(router, "source")
    sub = webrtc(router, "sub", "subscribe", max_consumer_slots=3)
    made = [producer(source, f"p{i}", 1000 + i) for i in range(4)]
    for index, each in enumerate(made[:3]):
        sub.consume(f"c{index}", each, negotiation.subscriber_codec(POLICY, each.params))
    with pytest.raises(ValueError, match="at most 3"):
        sub.consume("c3", made[3], negotiation.subscriber_codec(POLICY, made[3].params))
    assert "c3" not in router.consumers and len(sub.consumer_slots) == 3
