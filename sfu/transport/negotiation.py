"""Glue between SDP offer/answer (sfu.wire.sdp) and the engine's producers and consumers.

Publish: the client offers, we answer recvonly and get one producer per sending m-line,
within limits: at most `max_mlines` m-lines in an offer and `max_producers` producers on
the transport (refused whole, ValueError: the worker answers RequestFailed "invalid");
a producer whose mid is gone from the offer, or no longer sends, is closed.
Subscribe: we offer one sendonly m-line per consumer. A closed consumer's m-line is
rejected (port 0; inactive if it is the first, which tags the BUNDLE group), and once
the client has answered that, a new consumer of the same kind recycles it under a new
mid (RFC 8829 §5.2.2): the offer stays as long as what is forwarded, not as long as the
meeting's history of tracks.
"""

from __future__ import annotations

from typing import Callable

from sfu.engine.consumer import Consumer, extension_table
from sfu.engine.producer import Producer, ProducerParams
from sfu.transport.webrtc import WebRtcTransport
from sfu.wire import rtp, sdp


def local_description(
    transport: WebRtcTransport,
    fingerprint: tuple[str, str],
    announced_ips: list[str],
    port: int,
    tcp_port: int = 0,
) -> sdp.LocalTransport:
    """Our side of the SDP: a UDP host candidate per announced IP on `port` (0: none, ICE
    over TCP only), and a passive TCP one on `tcp_port` (0: no ICE-TCP)."""
    return sdp.LocalTransport(
        ice_ufrag=transport.ice_ufrag,
        ice_pwd=transport.ice_pwd,
        fingerprints=[sdp.Fingerprint(algorithm=fingerprint[0], value=fingerprint[1])],
        candidates=[(ip, port) for ip in announced_ips] if port else [],
        tcp_candidates=[(ip, tcp_port) for ip in announced_ips] if tcp_port else [],
    )


def _apply_remote(transport: WebRtcTransport, remote: sdp.RemoteTransport) -> None:
    transport.set_remote(
        remote.ice_ufrag,
        [(f.algorithm, f.value) for f in remote.fingerprints],
        remote.dtls_role,
        remote.ice_pwd,
    )


def apply_publish_offer(
    transport: WebRtcTransport,
    offer_text: str,
    sources: dict[str, str],
    local: sdp.LocalTransport,
    policy: sdp.CodecPolicy,
    make_producer: Callable[[ProducerParams], Producer],
    max_mlines: int = 32,
    max_producers: int = 8,
) -> tuple[str, list[Producer], list[Producer]]:
    """Returns (answer SDP, new producers, producers whose m-line went away or stopped
    sending). Nothing changes on the transport when the offer is refused (ValueError)."""
    offer = sdp.parse(offer_text)
    if len(offer.media) > max_mlines:
        raise ValueError(
            f"the publish offer has {len(offer.media)} m-lines, at most {max_mlines} (media.max_publish_mlines)"
        )
    answer, tracks, remote = sdp.answer_publish(offer, local, policy)
    sending = {track.mid: track for track in tracks if track.active}
    if len(sending) > max_producers:
        raise ValueError(
            f"the publish offer sends {len(sending)} tracks, at most {max_producers} (media.max_published_tracks)"
        )
    _apply_remote(transport, remote)
    closed: list[Producer] = []
    for mid, existing in transport.producers_by_mid.items():
        track = sending.get(mid)
        rids = tuple(track.simulcast_rids) if track is not None and track.kind == "video" else ()
        if track is None or existing.ssrc not in (None, track.ssrc) or existing.params.rids != rids:
            closed.append(existing)  # its m-line is gone, stopped sending, or is another stream now
    replaced = {p.params.mid for p in closed}
    created: list[Producer] = []
    for track in sending.values():
        if track.mid in transport.producers_by_mid and track.mid not in replaced:
            continue  # the same stream as before
        if track.extmap.get(rtp.URI_MID):
            transport.mid_ext_id = track.extmap[rtp.URI_MID]
        if track.simulcast_rids:
            transport.rid_ext_id = track.extmap.get(rtp.URI_RID, 0)
            transport.rrid_ext_id = track.extmap.get(rtp.URI_REPAIRED_RID, 0)
        if track.extmap.get(rtp.URI_TRANSPORT_CC):
            transport.tcc_ext_id = track.extmap[rtp.URI_TRANSPORT_CC]
        created.append(make_producer(_producer_params(track, sources)))
    return sdp.serialize(answer), created, closed


def _producer_params(track: sdp.PublishedTrack, sources: dict[str, str]) -> ProducerParams:
    default_source = "microphone" if track.kind == "audio" else "camera"
    return ProducerParams(
        producer_id="",
        kind=track.kind,
        source=sources.get(track.mid, default_source),
        mid=track.mid,
        codec_name=track.codec.name,
        clock_rate=track.codec.clock_rate,
        channels=track.codec.channels,
        fmtp=track.codec.fmtp,
        payload_type=track.codec.payload_type,
        rtx_payload_type=track.codec.rtx_payload_type,
        ssrc=track.ssrc,
        rtx_ssrc=track.rtx_ssrc,
        cname=track.cname,
        extmap=dict(track.extmap),
        rids=tuple(track.simulcast_rids) if track.kind == "video" else (),
    )


def subscriber_codec(policy: sdp.CodecPolicy, params: ProducerParams) -> sdp.Codec:
    """Our payload types for the producer's codec, with the publisher's fmtp (profile etc.)."""
    candidates = policy.audio if params.kind == "audio" else policy.video
    for codec in candidates:
        if codec.name.lower() == params.codec_name.lower():
            return sdp.Codec(
                payload_type=codec.payload_type,
                name=codec.name,
                clock_rate=codec.clock_rate,
                channels=codec.channels,
                fmtp=params.fmtp or codec.fmtp,
                rtcp_fb=codec.rtcp_fb,
                rtx_payload_type=codec.rtx_payload_type if params.kind == "video" else None,
            )
    raise ValueError(f"no subscriber codec for {params.codec_name}")


def create_subscribe_offer(
    transport: WebRtcTransport, local: sdp.LocalTransport, policy: sdp.CodecPolicy
) -> tuple[str, list[Consumer]]:
    tracks = []
    rejected: list[tuple[int, Consumer]] = []
    for index, consumer in enumerate(transport.consumer_slots):
        producer = consumer.producer
        # The first m-line tags the BUNDLE group: a closed one stays inactive, never rejected.
        reject = consumer.closed and index > 0
        if reject:
            rejected.append((index, consumer))
        tracks.append(
            sdp.SubscribeTrack(
                mid=consumer.mid,
                kind=consumer.kind,
                codec=subscriber_codec(policy, producer.params),
                ssrc=consumer.ssrc,
                rtx_ssrc=consumer.rtx_ssrc,
                cname=producer.params.cname or producer.stream_id,
                stream_id=producer.stream_id,
                track_id=producer.id,
                active=not consumer.closed,
                rejected=reject,
            )
        )
    transport.session_version += 1
    offer = sdp.offer_subscribe(local, tracks, policy, transport.rtcp_ssrc, transport.session_version)
    transport.pending_offer = offer
    transport.pending_rejected = rejected
    return sdp.serialize(offer), list(transport.consumer_slots)


def apply_subscribe_answer(transport: WebRtcTransport, answer_text: str) -> None:
    offer = transport.pending_offer
    if offer is None:
        raise ValueError("no subscribe offer is pending for this transport")
    result = sdp.read_subscribe_answer(sdp.parse(answer_text), offer)  # type: ignore[arg-type]
    _apply_remote(transport, result.remote)
    transport.pending_offer = None
    # The client has stopped the transceivers of the rejected m-lines: free for recycling.
    for index, consumer in transport.pending_rejected:
        if index < len(transport.consumer_slots) and transport.consumer_slots[index] is consumer:
            transport.recyclable.add(index)
    transport.pending_rejected = []
    tcc_id = result.extmap.get(rtp.URI_TRANSPORT_CC, 0)
    for consumer in transport.consumer_slots:
        if consumer.closed or not result.accepted.get(consumer.mid, False):
            continue
        table = extension_table(consumer.producer.params.extmap, result.extmap)
        consumer.activate(table, tcc_id, result.rtx.get(consumer.mid, False))
