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
from sfu.engine.simulcast import SimulcastConsumer
from sfu.transport.base import random_ssrc
from sfu.transport.webrtc import WebRtcTransport
from sfu.wire import rtp, sdp, sdp_playback


class Playback:
    """The slots of one playback transport, by kind, and where each slot's stream stands
    when its consumer closes (`handed`: the last sequence number and timestamp sent, and
    when), so that the next consumer on the slot goes on from there: the player sees one
    stream whatever the consumers behind it (a simulcast source cannot be switched in
    place, so control replaces the consumer; without this the new one's timestamps could
    fall behind the old ones', and Chromium drops such frames as old)."""

    __slots__ = ("slots", "handed")

    def __init__(self, tracks: list[sdp_playback.PlaybackTrack]) -> None:
        self.slots = {track.kind: track for track in tracks}
        self.handed: dict[str, tuple[int, int, float, int]] = {}

    def consumer_closed(self, consumer: Consumer) -> None:
        slot = self.slots.get(consumer.kind)
        if slot is None or consumer.ssrc != slot.ssrc:
            return
        sent = _last_sent(consumer)
        if sent is not None:
            # The RTX stream (retransmissions, probes) goes on too: SRTP refuses an index
            # it has protected already.
            self.handed[consumer.kind] = (*sent, consumer.producer.clock(), consumer.rtx_seq)


def _last_sent(consumer: Consumer) -> tuple[int, int] | None:
    """(sequence number, timestamp) of the last packet `consumer` sent; None if none."""
    if isinstance(consumer, SimulcastConsumer):
        munger = consumer.selector.munger
        return (munger.out_seq, munger.out_ts) if munger.started else None
    last_ts = consumer.producer.last_timestamp(consumer)
    if consumer.packets_sent == 0 or last_ts is None:
        return None
    return consumer.last_seq_out, (last_ts + consumer.ts_offset) & 0xFFFFFFFF


def _go_on(consumer: Consumer, handed: tuple[int, int, float, int]) -> None:
    """A new consumer on a slot continues the stream its predecessor sent."""
    seq, ts, at, rtx_seq = handed
    consumer.rtx_seq = rtx_seq
    if isinstance(consumer, SimulcastConsumer):
        elapsed = max(1, round((consumer.producer.clock() - at) * consumer.producer.params.clock_rate))
        consumer.selector.munger.continue_from(seq + 1, ts + elapsed)
    else:  # Consumer._restart takes the sequence on from here, the time by the elapsed
        consumer.last_seq_out, consumer.rebase_ts, consumer.rebase_at = seq, ts, at


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
    handed = transport.playback.handed.pop(slot.kind, None) if transport.playback else None
    if handed is not None:
        _go_on(consumer, handed)
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
