"""SDP for playback (WHEP, draft-ietf-wish-whep): the CLIENT offers to receive, we answer.

A subscribe connection of a participant is offered by the server (``sdp.offer_subscribe``)
and renegotiated whenever tracks come and go. A WHEP player cannot be renegotiated: it
offers once, typically one recvonly audio and one recvonly video m= section, and keeps
them for the life of the session. So the answer fixes one *slot* per kind (the first
offered audio section, the first offered video section): its mid, our SSRCs and the
client's payload types and extension ids. Whatever the server later forwards on a slot
(a microphone, the announcer, a camera, a screen) goes out under those, switching
source without renegotiation (sfu.transport.playback).

Sans-I/O and stdlib only; bad input raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from sfu.wire.sdp import (
    _EXTENSION_KIND,
    _RTP_PROTOCOL,
    CodecPolicy,
    LocalTransport,
    RemoteTransport,
    _apply_local_transport,
    _check_publish_offer,
    _choose_codec,
    _rejected_answer,
    _stable_session_id,
    remote_transport,
)
from sfu.wire.sdp_syntax import Codec, MediaDescription, SessionDescription

_RECEIVING = ("recvonly", "sendrecv")


@dataclass(slots=True)
class PlaybackTrack:
    """One slot of the answer: what the client will receive on m= section `mid`."""

    kind: str
    mid: str
    codec: Codec  # the CLIENT's payload types (and its rtx payload type, when it has one)
    ssrc: int
    rtx_ssrc: int | None
    extmap: dict[str, int]  # uri -> the client's id, for the extensions we send


def _opus_stereo(media: MediaDescription) -> MediaDescription:
    """RFC 7587 §7: Opus is always "opus/48000/2" in SDP; GStreamer's webrtcbin 1.22
    writes "OPUS/48000" (no channel count). Read that as what it can only mean."""
    codecs = [replace(c, channels=2) if c.name.lower() == "opus" and c.channels is None else c
              for c in media.codecs]
    return replace(media, codecs=codecs)


def _slot_section(media: MediaDescription, codec: Codec, local: LocalTransport, policy: CodecPolicy,
                  setup: str, ssrc: int, rtx_ssrc: int | None, stream_id: str) -> MediaDescription:
    extmap = {uri: ext_id for uri, ext_id in media.extmap.items()
              if uri in policy.extensions and _EXTENSION_KIND.get(uri, media.kind) == media.kind}
    answer = MediaDescription(media.kind, media.mid, 9, media.protocol, "sendonly",
                              codecs=[codec], extmap=extmap, rtcp_rsize=media.rtcp_rsize)
    _apply_local_transport(answer, local, setup)
    # RFC 8830 §2 / RFC 5576 §4.1: the player learns our SSRCs, so it needs no MID
    # header extension to demultiplex (we do not send one).
    answer.msid = (stream_id, f"{stream_id}-{media.kind}")
    answer.cname = stream_id
    answer.ssrcs = [ssrc]
    if rtx_ssrc is not None:
        answer.ssrcs.append(rtx_ssrc)
        answer.ssrc_groups = [("FID", [ssrc, rtx_ssrc])]  # RFC 4588 §8.7
    return answer


def answer_playback(offer: SessionDescription, local: LocalTransport, policy: CodecPolicy,
                    new_ssrc: Callable[[], int], stream_id: str,
                    ) -> tuple[SessionDescription, list[PlaybackTrack], RemoteTransport]:
    """Answer a player's offer: the first receiving audio and the first receiving video
    section each become a sendonly slot with a codec of ours (the client's payload types);
    every other section is rejected (port 0). ValueError: a malformed offer, or one with
    no section we can send on."""
    _check_publish_offer(offer)  # the same structural rules as any client offer
    remote = remote_transport(offer)
    # RFC 8842 §5.3: answer passive to actpass/active (we are the DTLS server: a
    # GStreamer webrtcbin has an RSA certificate, which aiortc as a client cannot use).
    setup = "passive" if remote.dtls_role == "server" else "active"
    sections: list[MediaDescription] = []
    tracks: list[PlaybackTrack] = []
    taken: set[str] = set()
    for media in offer.media:
        codec = None
        if (media.kind in ("audio", "video") and media.kind not in taken and not media.rejected
                and media.protocol == _RTP_PROTOCOL and media.direction in _RECEIVING):
            codec = _choose_codec(_opus_stereo(media) if media.kind == "audio" else media, policy)
        if codec is None:
            sections.append(_rejected_answer(media, local, setup))
            continue
        taken.add(media.kind)
        ssrc = new_ssrc()
        rtx_ssrc = new_ssrc() if codec.rtx_payload_type is not None else None
        section = _slot_section(media, codec, local, policy, setup, ssrc, rtx_ssrc, stream_id)
        sections.append(section)
        tracks.append(PlaybackTrack(media.kind, media.mid, codec, ssrc, rtx_ssrc, dict(section.extmap)))
    if not tracks:
        raise ValueError("the offer receives no audio or video we can send")
    accepted = [section.mid for section in sections if not section.rejected]
    if len(accepted) > 1 and any(mid not in offer.bundle for mid in accepted):
        raise ValueError(f"mid {next(m for m in accepted if m not in offer.bundle)!r} is not in a=group:BUNDLE")
    bundle = [mid for mid in offer.bundle if mid in accepted]
    description = SessionDescription(_stable_session_id(local), offer.session_version,
                                     ice_lite=True, bundle=bundle, media=sections)
    return description, tracks, remote
