"""Playback (WHEP) on a subscribe transport: the player offered, the answer fixed a slot
per kind (sfu.wire.sdp_playback), and consumers fill those slots.

A playback transport is a WebRTC subscribe transport whose connection the client offered
once (PLAYBACK_OFFER) and that is never renegotiated. After the answer, a consumer made
on it (CONSUMER_CREATE) takes its kind's slot: the slot's mid, SSRCs, payload types and
extension ids, and starts at once (there is no answer to wait for). A slot holds one
consumer; its source changes with CONSUMER_SET_PRODUCER (`switch_source`), which keeps
the subscriber's stream continuous (`sfu.engine.consumer.Consumer.switch_producer`).
"""

from __future__ import annotations

from sfu.engine.consumer import Consumer, extension_table
from sfu.engine.producer import Producer
from sfu.transport.base import random_ssrc
from sfu.transport.webrtc import WebRtcTransport
from sfu.wire import rtp, sdp, sdp_playback


class Playback:
    """The slots of one playback transport, by kind."""

    __slots__ = ("slots",)

    def __init__(self, tracks: list[sdp_playback.PlaybackTrack]) -> None:
        self.slots = {track.kind: track for track in tracks}


def apply_playback_offer(
    transport: WebRtcTransport, offer_text: str, local: sdp.LocalTransport, policy: sdp.CodecPolicy
) -> str:
    """Answer the player's offer on a fresh subscribe transport. ValueError: not a fresh
    subscribe transport, or a bad offer (nothing changes then)."""
    if transport.direction != "subscribe":
        raise ValueError(f"transport {transport.id} is a {transport.direction} transport")
    if transport.playback is not None or transport.consumers or transport.pending_offer is not None:
        raise ValueError(f"transport {transport.id} is negotiated already: a player offers once")
    answer, tracks, remote = sdp_playback.answer_playback(
        sdp.parse(offer_text), local, policy, random_ssrc, transport.cname
    )
    transport.set_remote(
        remote.ice_ufrag, [(f.algorithm, f.value) for f in remote.fingerprints], remote.dtls_role, remote.ice_pwd
    )
    transport.playback = Playback(tracks)
    return sdp.serialize(answer)


def _slot_for(transport: WebRtcTransport, producer: Producer) -> sdp_playback.PlaybackTrack:
    assert transport.playback is not None
    slot = transport.playback.slots.get(producer.params.kind)
    if slot is None:
        raise ValueError(f"the player receives no {producer.params.kind}")
    codec = slot.codec
    if codec.name.lower() != producer.params.codec_name.lower() or codec.clock_rate != producer.params.clock_rate:
        raise ValueError(f"the player receives {codec.name}, producer {producer.id} sends {producer.params.codec_name}")
    if any(c.mid == slot.mid and not c.closed for c in transport.consumers.values()):
        raise ValueError(f"the player's {slot.kind} has a consumer already: switch its source instead")
    return slot


def consume(transport: WebRtcTransport, consumer_id: str, producer: Producer) -> Consumer:
    """A consumer of `producer` on its kind's slot, forwarding at once (from a keyframe)."""
    slot = _slot_for(transport, producer)
    consumer = transport.consume(
        consumer_id, producer, slot.codec, mid=slot.mid, ssrc=slot.ssrc, rtx_ssrc=slot.rtx_ssrc
    )
    table = extension_table(producer.params.extmap, slot.extmap)
    consumer.activate(table, slot.extmap.get(rtp.URI_TRANSPORT_CC, 0), slot.rtx_ssrc is not None)
    return consumer


def switch_source(consumer: Consumer, producer: Producer) -> None:
    """Forward `producer` on `consumer`'s slot from its next keyframe (audio: packet) on.
    ValueError: another kind or codec, another meeting, or a simulcast stream on either
    side (a simulcast consumer's munger is per producer)."""
    transport = consumer.sink
    if not isinstance(transport, WebRtcTransport) or transport.playback is None:
        raise ValueError(f"consumer {consumer.id} is not a player's: only those switch source")
    if transport.router.producers.get(producer.id) is not producer:
        raise ValueError(f"producer {producer.id} is not in this consumer's meeting")
    slot = transport.playback.slots.get(consumer.kind)
    if slot is None or producer.params.kind != consumer.kind:
        raise ValueError(f"consumer {consumer.id} is {consumer.kind}, producer {producer.id} is {producer.params.kind}")
    if slot.codec.name.lower() != producer.params.codec_name.lower():
        raise ValueError(f"the player receives {slot.codec.name}, producer {producer.id} sends {producer.params.codec_name}")
    if producer.params.rids or type(consumer) is not Consumer:
        raise ValueError("switching to or from a simulcast stream is not supported")
    consumer.switch_producer(producer, extension_table(producer.params.extmap, slot.extmap))
    if transport.subscription is not None:
        transport.subscription.changed()
