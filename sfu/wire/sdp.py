"""SDP offer/answer for the SFU (RFC 8829 JSEP, with RFC 8843 BUNDLE and RFC 8853 simulcast).

Sans-I/O and stdlib only. The server is ICE-lite (RFC 8839 §5.3) and gives each
participant two PeerConnections:
* PUBLISH: the client offers its send tracks, ``answer_publish`` answers recvonly.
* SUBSCRIBE: ``offer_subscribe`` offers the forwarded tracks sendonly, the client answers
  and ``read_subscribe_answer`` checks and reads that answer.

The description model, ``parse`` and ``serialize`` live in ``sfu.wire.sdp_syntax`` and are
re-exported here, so callers only import this module. Bad input raises ``ValueError``.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field, replace

from sfu.wire.sdp_syntax import (
    DIRECTIONS,
    Codec,
    Fingerprint,
    MediaDescription,
    SessionDescription,
    is_rtp_protocol,
    parse,
    serialize,
)

__all__ = [
    "Fingerprint", "Codec", "MediaDescription", "SessionDescription", "parse", "serialize",
    "DIRECTIONS", "LocalTransport", "RemoteTransport", "PublishedTrack", "CodecPolicy",
    "default_codec_policy", "answer_publish", "SubscribeTrack", "offer_subscribe",
    "SubscribeAnswer", "read_subscribe_answer", "remote_transport", "host_candidate", "tcp_host_candidate",
    "URI_AUDIO_LEVEL", "URI_ABS_SEND_TIME", "URI_TRANSPORT_CC", "URI_MID", "URI_RID",
    "URI_REPAIRED_RID",
]

# RTP header extension URIs (RFC 8285 §5), spelled as browsers send them.
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"  # RFC 6464
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"  # RFC 8843 §15.2
URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"  # RFC 8852 §4.3
URI_REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"  # RFC 8852 §4.4
# The SFU needs these upstream to demux simulcast/rtx streams that carry no a=ssrc.
_UPSTREAM_URIS = (URI_MID, URI_RID, URI_REPAIRED_RID)
# Extensions that only make sense for one media kind; everything else goes on both.
_EXTENSION_KIND = {URI_AUDIO_LEVEL: "audio"}

# Simulcast streams received per track (sfu.engine.packet_info.MAX_LAYERS).
MAX_SIMULCAST_LAYERS = 3

_RECEIVING = ("recvonly", "sendrecv")
_SENDING = ("sendonly", "sendrecv")
_RTP_PROTOCOL = "UDP/TLS/RTP/SAVPF"  # RFC 8829 §5.1.2
_HOST_TYPE_PREFERENCE = 126  # RFC 8445 §5.1.2.2
# RFC 6544 §4.2: TCP candidates should rank below UDP ones of the same type, so a client
# that can reach both picks UDP; the type preference is the lever (libwebrtc uses 90 too).
_HOST_TCP_TYPE_PREFERENCE = 90
_PASSIVE_DIRECTION_PREFERENCE = 4  # RFC 6544 §4.2, a host not behind a NAT: active 6, passive 4, S-O 2


# --------------------------------------------------------------------------- transports


@dataclass(slots=True)
class LocalTransport:
    """What the server announces: ICE-lite credentials, DTLS fingerprints, host candidates."""

    ice_ufrag: str
    ice_pwd: str
    fingerprints: list[Fingerprint]
    candidates: list[tuple[str, int]]  # (ip, udp port), one per announced IP
    # (ip, tcp port): passive ICE-TCP candidates (RFC 6544), offered after the UDP ones.
    tcp_candidates: list[tuple[str, int]] = field(default_factory=list)


@dataclass(slots=True)
class RemoteTransport:
    ice_ufrag: str
    ice_pwd: str
    fingerprints: list[Fingerprint]
    dtls_role: str  # OUR DTLS role: "server" (client is active) or "client" (client passive)


def host_candidate(index: int, ip: str, port: int) -> str:
    """The a=candidate value for one of our host candidates (RFC 8839 §5.1).

    RFC 8445 §5.1.1.3: different base addresses get different foundations; the local
    preference falls with the index so the first announced IP is preferred."""
    address = _candidate_address(ip, port)
    priority = (_HOST_TYPE_PREFERENCE << 24) | ((65535 - index) << 8) | 255  # §5.1.2.1
    return f"{index + 1} 1 udp {priority} {address} {port} typ host"


def tcp_host_candidate(index: int, foundation: int, ip: str, port: int) -> str:
    """The a=candidate value for one of our passive ICE-TCP host candidates (RFC 6544 §4.5).

    Priority (RFC 6544 §4.2): type preference below UDP's host, local preference
    = 2^13 * direction-pref (passive: 4) + other-pref (falling with the index, as UDP's);
    `foundation` differs from every UDP candidate's (another transport protocol, RFC 8445
    §5.1.1.3)."""
    address = _candidate_address(ip, port)
    local_preference = (_PASSIVE_DIRECTION_PREFERENCE << 13) | (8191 - index)
    priority = (_HOST_TCP_TYPE_PREFERENCE << 24) | (local_preference << 8) | 255
    return f"{foundation} 1 tcp {priority} {address} {port} typ host tcptype passive"


def _candidate_address(ip: str, port: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise ValueError(f"local candidate address is not an IP: {ip!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"local candidate port out of range: {port}")
    return address


def _transport_section(desc: SessionDescription) -> MediaDescription | None:
    """The m= section whose transport the BUNDLE group uses: the first mid of the group
    that is not rejected (RFC 8843 §7.2.1 offerer-tagged / §7.3.1 answerer-tagged)."""
    by_mid = {media.mid: media for media in desc.media if not media.rejected}
    for mid in desc.bundle:
        if mid in by_mid:
            return by_mid[mid]
    return next(iter(by_mid.values()), None)


def _check_transport(media: MediaDescription) -> None:
    if not media.ice_ufrag or not media.ice_pwd:
        raise ValueError(f"mid {media.mid!r}: a=ice-ufrag / a=ice-pwd missing")  # RFC 8839 §5.4
    if not media.fingerprints:
        raise ValueError(f"mid {media.mid!r}: a=fingerprint missing")  # RFC 8122 §5


def remote_transport(desc: SessionDescription) -> RemoteTransport:
    """The client's transport parameters and the DTLS role they leave us."""
    media = _transport_section(desc)
    if media is None:
        raise ValueError("no m= section carries transport attributes")
    _check_transport(media)
    # RFC 8842 §5.1-5.3 / RFC 4145 §4: a missing a=setup means "active".
    setup = media.setup or "active"
    if setup in ("active", "actpass"):
        role = "server"  # the client connects (actpass: we answer passive)
    elif setup == "passive":
        role = "client"
    else:
        raise ValueError(f"mid {media.mid!r}: unusable a=setup:{setup}")
    return RemoteTransport(media.ice_ufrag or "", media.ice_pwd or "",
                           list(media.fingerprints), role)


def _apply_local_transport(media: MediaDescription, local: LocalTransport, setup: str) -> None:
    candidates = [host_candidate(i, ip, port) for i, (ip, port) in enumerate(local.candidates)]
    first_tcp = len(candidates) + 1
    candidates += [
        tcp_host_candidate(i, first_tcp + i, ip, port) for i, (ip, port) in enumerate(local.tcp_candidates)
    ]
    # RFC 8839 §4.2.1: the m= port and c= address carry the default candidate (UDP's
    # first; the TCP one when only TCP is offered).
    default = local.candidates or local.tcp_candidates
    media.port = default[0][1] if default else 9
    media.ice_ufrag, media.ice_pwd = local.ice_ufrag, local.ice_pwd
    media.fingerprints = list(local.fingerprints)
    media.setup = setup
    media.candidates = candidates
    # A lite agent only has host candidates and knows them all (RFC 8445 §2.5), so it
    # says there are no more to trickle (a=end-of-candidates, RFC 8840 §8.2).
    media.end_of_candidates = bool(candidates)
    media.rtcp_mux = True


# --------------------------------------------------------------------------- policy


@dataclass(slots=True)
class CodecPolicy:
    audio: list[Codec]  # server preference order
    video: list[Codec]
    extensions: dict[str, int]  # supported uris with the ids WE use in subscribe offers
    accept_simulcast: bool = False


def default_codec_policy() -> CodecPolicy:
    video_fb = ("goog-remb", "transport-cc", "ccm fir", "nack", "nack pli")
    return CodecPolicy(
        audio=[Codec(111, "opus", 48000, 2, "minptime=10;useinbandfec=1", ("transport-cc",))],
        video=[
            Codec(96, "VP8", 90000, None, "", video_fb, 97),
            Codec(102, "H264", 90000, None,
                  "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
                  video_fb, 103),
        ],
        # No sdes:mid here: subscribers demux our streams by a=ssrc.
        extensions={URI_AUDIO_LEVEL: 1, URI_ABS_SEND_TIME: 2, URI_TRANSPORT_CC: 3},
    )


def _fmtp_value(fmtp: str, key: str) -> str | None:
    for parameter in fmtp.split(";"):
        name, _, value = parameter.strip().partition("=")
        if name.strip().lower() == key:
            return value.strip()
    return None


def _h264_profile(fmtp: str) -> str:
    # RFC 6184 §8.1: profile-level-id defaults to 42000A (Baseline); keep profile_idc +
    # profile-iop (4 hex digits), the level does not matter for forwarding.
    value = _fmtp_value(fmtp, "profile-level-id") or "42000a"
    return value[:4].lower()


def _codec_rank(theirs: Codec, mine: Codec) -> int | None:
    """How well a client codec matches one of ours: None = not usable, lower = better."""
    if theirs.name.lower() != mine.name.lower() or theirs.clock_rate != mine.clock_rate:
        return None
    if mine.channels is not None and (theirs.channels or 1) != mine.channels:
        return None
    if mine.name.lower() != "h264":
        return 0
    # RFC 6184 §8.1: packetization-mode 0 (single NAL) is not what we forward.
    if _fmtp_value(theirs.fmtp, "packetization-mode") != "1":
        return None
    ours, offered = _h264_profile(mine.fmtp), _h264_profile(theirs.fmtp)
    if offered[:2] != ours[:2]:  # different profile_idc: subscribers may not decode it
        return None
    return 0 if offered == ours else 1


def _negotiated_codec(theirs: Codec, mine: Codec) -> Codec:
    """The client's codec (its payload types and fmtp) with only the feedback we support."""
    return Codec(theirs.payload_type, theirs.name, theirs.clock_rate, theirs.channels,
                 theirs.fmtp, tuple(fb for fb in theirs.rtcp_fb if fb in mine.rtcp_fb),
                 theirs.rtx_payload_type if mine.rtx_payload_type is not None else None)


def _choose_codec(media: MediaDescription, policy: CodecPolicy) -> Codec | None:
    if media.kind == "audio":
        # Audio: the client's first codec that we support.
        for theirs in media.codecs:
            for mine in policy.audio:
                if _codec_rank(theirs, mine) is not None:
                    return _negotiated_codec(theirs, mine)
        return None
    # Video: our preference order decides the codec, the client's order breaks ties.
    for mine in policy.video:
        ranked = [(rank, index, theirs) for index, theirs in enumerate(media.codecs)
                  if (rank := _codec_rank(theirs, mine)) is not None]
        if ranked:
            return _negotiated_codec(min(ranked, key=lambda r: (r[0], r[1]))[2], mine)
    return None


# --------------------------------------------------------------------------- publish


@dataclass(slots=True)
class PublishedTrack:
    mid: str
    kind: str
    codec: Codec  # the chosen codec with the CLIENT's payload types
    ssrc: int | None  # from a=ssrc / a=ssrc-group:FID (None when only rids)
    rtx_ssrc: int | None
    rids: list[str]  # the offer's a=rid lines
    extmap: dict[str, int]  # accepted extensions, client's ids
    cname: str | None
    msid: tuple[str, str] | None
    active: bool  # False: inactive/recvonly/rejected/unsupported now (track removed)
    # A mid can become active again: the client may reuse an inactive transceiver.
    # The rids we answered a=simulcast:recv with, in the offer's a=simulcast order (at
    # most MAX_SIMULCAST_LAYERS); [] when simulcast is not accepted.
    simulcast_rids: list[str] = field(default_factory=list)
    cname: str | None
    msid: tuple[str, str] | None
    active: bool  # False: inactive/recvonly/rejected/unsupported now (track removed)
    # A mid can become active again: the client may reuse an inactive transceiver.


def _check_full_ice(desc: SessionDescription) -> None:
    if desc.ice_lite:
        # RFC 8445 §6.1.1: two lite agents never run checks; the client must be full.
        raise ValueError("a=ice-lite on the client side: both ends would be ICE-lite")


def _check_publish_offer(offer: SessionDescription) -> None:
    _check_full_ice(offer)
    mids = [media.mid for media in offer.media]
    if any(not mid for mid in mids):
        raise ValueError("an m= section has no a=mid")  # RFC 8829 §5.2.1
    if len(set(mids)) != len(mids):
        raise ValueError("a=mid values repeat")  # RFC 5888 §4
    if len(set(offer.bundle)) != len(offer.bundle):
        raise ValueError("a=group:BUNDLE repeats a mid")
    by_mid = {media.mid: media for media in offer.media}
    for mid in offer.bundle:
        if mid not in by_mid:
            raise ValueError(f"a=group:BUNDLE names unknown mid {mid!r}")  # RFC 5888 §6
        if by_mid[mid].rejected:
            raise ValueError(f"a=group:BUNDLE holds rejected mid {mid!r}")  # RFC 8843 §7.2
    if any(other.startswith("group:BUNDLE") for other in offer.other):
        raise ValueError("more than one a=group:BUNDLE")
    for media in offer.media:
        if media.rejected:
            continue
        _check_transport(media)
        if is_rtp_protocol(media.protocol) and not media.rtcp_mux:
            raise ValueError(f"mid {media.mid!r}: a=rtcp-mux missing")  # RFC 8829 §5.1.3


def _usable_for_publish(media: MediaDescription) -> bool:
    return (not media.rejected and media.kind in ("audio", "video")
            and media.protocol == _RTP_PROTOCOL)


def _rejected_answer(media: MediaDescription, local: LocalTransport, setup: str) -> MediaDescription:
    """RFC 8829 §5.3.1 / RFC 3264 §6: port 0 and the offered formats.

    JSEP rejects a section whose transceiver is stopped (the offer has port 0) or whose
    formats are all unsupported; the SFU also takes no data channels on this connection.
    The ICE and DTLS attributes stay: they are ignored on a rejected section, but aiortc
    refuses an answer in which any section lacks them."""
    codecs = [replace(codec, fmtp="", rtcp_fb=()) for codec in media.codecs]
    return MediaDescription(media.kind, media.mid, 0, media.protocol, "inactive",
                            codecs=codecs, rejected=True, formats=list(media.formats),
                            ice_ufrag=local.ice_ufrag, ice_pwd=local.ice_pwd,
                            fingerprints=list(local.fingerprints), setup=setup)


def _reverse_simulcast(value: str) -> str | None:
    """RFC 8853 §5.3: the answerer receives what the offerer sends."""
    tokens = value.split()
    for direction, streams in zip(tokens[::2], tokens[1::2]):
        if direction == "send":
            return f"recv {streams}"
    return None


def _simulcast_streams(value: str, offered: list[str]) -> list[str]:
    """The streams we receive, one rid each (the first alternative that has an a=rid
    line), in the a=simulcast order, at most MAX_SIMULCAST_LAYERS."""
    streams = value.split()[1] if len(value.split()) > 1 else ""
    chosen: list[str] = []
    for stream in streams.split(";"):
        rid = next((r.lstrip("~") for r in stream.split(",") if r.lstrip("~") in offered), None)
        if rid is not None and rid not in chosen:
            chosen.append(rid)
    return chosen[:MAX_SIMULCAST_LAYERS]


def _publish_answer_section(media: MediaDescription, codec: Codec, local: LocalTransport,
                            policy: CodecPolicy, setup: str) -> MediaDescription:
    # RFC 3264 §6.1: we receive what the client sends; a section it no longer sends on
    # (removeTrack -> inactive, or recvonly) is answered inactive and stays bundled.
    # RFC 8829 §5.3.1 does not list "inactive" among the reasons to reject, and Chromium
    # refuses a re-answer that rejects the BUNDLE-tagged section ("Failed to setup RTCP
    # mux"), which is what removing the first track would otherwise do.
    direction = "recvonly" if media.direction in _SENDING else "inactive"
    extmap = {uri: ext_id for uri, ext_id in media.extmap.items()
              if uri in policy.extensions or uri in _UPSTREAM_URIS}
    answer = MediaDescription(media.kind, media.mid, 9, media.protocol, direction,
                              codecs=[codec], extmap=extmap, rtcp_rsize=media.rtcp_rsize)
    _apply_local_transport(answer, local, setup)
    reversed_simulcast = _reverse_simulcast(media.simulcast) if media.simulcast else None
    if policy.accept_simulcast and reversed_simulcast and direction == "recvonly":
        # Without these lines the client falls back to its first encoding (RFC 8853 §5.3).
        # Only rid simulcast (the streams are told apart by the RTP stream ID header
        # extension): without the extension, or with fewer than two streams, one layer.
        rids = _simulcast_streams(reversed_simulcast, media.rids)
        if URI_RID in extmap and len(rids) > 1:
            answer.simulcast = "recv " + ";".join(rids)
            answer.rids = rids
    return answer


def _published_track(media: MediaDescription, codec: Codec | None,
                     answer: MediaDescription) -> PublishedTrack:
    ssrc = media.ssrcs[0] if media.ssrcs else None
    rtx_ssrc = None
    for semantics, ssrcs in media.ssrc_groups:
        if semantics == "FID" and len(ssrcs) == 2:  # RFC 4588 §8.7 / RFC 5576 §4.2
            ssrc, rtx_ssrc = ssrcs
            break
    chosen = codec if codec is not None else replace(media.codecs[0])
    return PublishedTrack(media.mid, media.kind, chosen, ssrc, rtx_ssrc, list(media.rids),
                          dict(answer.extmap), media.cname, media.msid,
                          active=answer.direction == "recvonly",
                          simulcast_rids=list(answer.rids) if answer.simulcast else [])


def answer_publish(offer: SessionDescription, local: LocalTransport, policy: CodecPolicy, *,
                   session_id: int | None = None, session_version: int | None = None,
                   ) -> tuple[SessionDescription, list[PublishedTrack], RemoteTransport]:
    """Answer a client's publish offer: receive every track it sends.

    Sections we cannot take (application, no usable codec, not UDP/TLS/RTP/SAVPF, already
    rejected) get port 0; audio/video the client does not send on get a=inactive. Every
    audio/video section yields a PublishedTrack, ``active`` only where we now receive.

    ``session_id`` defaults to a value derived from our ICE ufrag (stable for the life of
    the PeerConnection); ``session_version`` defaults to the offer's, which the client
    raises on every new offer, so ours rises with it (RFC 3264 §8)."""
    _check_publish_offer(offer)
    remote = remote_transport(offer)
    # RFC 8842 §5.3: answer passive to actpass/active, active to passive.
    setup = "passive" if remote.dtls_role == "server" else "active"
    sections, tracks = [], []
    for media in offer.media:
        rtp_media = media.kind in ("audio", "video") and is_rtp_protocol(media.protocol)
        codec = _choose_codec(media, policy) if rtp_media else None
        if codec is not None and _usable_for_publish(media):
            answer = _publish_answer_section(media, codec, local, policy, setup)
        else:
            answer = _rejected_answer(media, local, setup)
        sections.append(answer)
        if rtp_media and media.codecs:
            tracks.append(_published_track(media, codec, answer))
    accepted = [answer.mid for answer in sections if not answer.rejected]
    unbundled = [mid for mid in accepted if mid not in offer.bundle]
    if unbundled and len(accepted) > 1:
        # One ICE/DTLS transport per PeerConnection: everything must be bundled.
        raise ValueError(f"mid {unbundled[0]!r} is not in a=group:BUNDLE")
    # RFC 8843 §7.3.1: the answer's group keeps the offer's order, minus what we
    # rejected; its first mid is the answerer-tagged m= section. No group offered, none
    # answered (RFC 5888 §9.2).
    bundle = [mid for mid in offer.bundle if mid in accepted]
    description = SessionDescription(
        _stable_session_id(local) if session_id is None else session_id,
        offer.session_version if session_version is None else session_version,
        ice_lite=True, bundle=bundle, media=sections)
    return description, tracks, remote


def _stable_session_id(local: LocalTransport) -> int:
    digest = hashlib.sha256(local.ice_ufrag.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 2  # RFC 8866 §5.2: < 2**63


# --------------------------------------------------------------------------- subscribe


@dataclass(slots=True)
class SubscribeTrack:
    mid: str
    kind: str
    codec: Codec  # OUR payload types (from policy), incl. rtx_payload_type (None for audio)
    ssrc: int
    rtx_ssrc: int | None
    cname: str
    stream_id: str
    track_id: str
    active: bool  # False -> a=inactive, no ssrc lines (a closed consumer)
    # With active False: port 0 and out of the BUNDLE group (RFC 8829 §5.2.2, RFC 8843
    # §7.2): the client stops its transceiver, and once it has answered, a later offer
    # may recycle the m= section for a new track under a new mid.
    rejected: bool = False


def _subscribe_section(track: SubscribeTrack, local: LocalTransport,
                       policy: CodecPolicy) -> MediaDescription:
    extmap = {uri: ext_id for uri, ext_id in policy.extensions.items()
              if _EXTENSION_KIND.get(uri, track.kind) == track.kind}
    media = MediaDescription(track.kind, track.mid, 9, _RTP_PROTOCOL,
                             "sendonly" if track.active else "inactive",
                             codecs=[replace(track.codec)], extmap=extmap, rtcp_rsize=True)
    _apply_local_transport(media, local, "actpass")  # RFC 8842 §5.2: offers use actpass
    if track.rejected and not track.active:
        media.rejected = True
        media.port = 0
    if track.active:
        # RFC 8830 §2 / RFC 5576 §4.1: the client learns stream/track ids and our SSRCs.
        media.msid = (track.stream_id, track.track_id)
        media.cname = track.cname
        media.ssrcs = [track.ssrc]
        if track.rtx_ssrc is not None and track.codec.rtx_payload_type is not None:
            media.ssrcs.append(track.rtx_ssrc)
            media.ssrc_groups = [("FID", [track.ssrc, track.rtx_ssrc])]  # RFC 4588 §8.7
    return media


def offer_subscribe(local: LocalTransport, tracks: list[SubscribeTrack], policy: CodecPolicy,
                    session_id: int, session_version: int) -> SessionDescription:
    """Offer the forwarded tracks sendonly, in the given order, all in one BUNDLE group
    but for the rejected ones (RFC 8843 §7.2: a rejected m= section is in no group).

    Pass ``session_version`` one higher on every renegotiation (RFC 3264 §8); keep
    ``session_id`` for the life of the PeerConnection."""
    mids = [track.mid for track in tracks]
    if any(not mid or mid != mid.strip() or " " in mid for mid in mids):
        raise ValueError("subscribe track mid must be a non-empty token")
    if len(set(mids)) != len(mids):
        raise ValueError("subscribe track mids repeat")
    for track in tracks:
        if track.kind not in ("audio", "video"):
            raise ValueError(f"mid {track.mid!r}: kind must be audio or video")
    media = [_subscribe_section(track, local, policy) for track in tracks]
    if media and all(section.rejected for section in media):
        raise ValueError("every subscribe m= section is rejected: the transport would go")
    bundle = [section.mid for section in media if not section.rejected]
    return SessionDescription(session_id, session_version, ice_lite=True, bundle=bundle,
                              media=media)


@dataclass(slots=True)
class SubscribeAnswer:
    remote: RemoteTransport
    accepted: dict[str, bool]  # mid -> accepted (port != 0, recvonly/sendrecv)
    extmap: dict[str, int]  # uri -> id the client accepted (equal to ours)
    rtx: dict[str, bool]  # mid -> client kept our rtx payload type
    rtcp_fb: dict[str, tuple[str, ...]] = field(default_factory=dict)  # mid -> kept feedback


def read_subscribe_answer(answer: SessionDescription,
                          offer: SessionDescription) -> SubscribeAnswer:
    """Check a subscriber's answer against our offer and read what it accepted."""
    if len(answer.media) != len(offer.media):
        raise ValueError("answer has a different number of m= sections")  # RFC 3264 §6
    _check_full_ice(answer)
    section = _transport_section(answer)
    if section is not None and section.setup == "actpass":
        raise ValueError("answer uses a=setup:actpass")  # RFC 8842 §5.3
    result = SubscribeAnswer(remote_transport(answer), {}, {}, {}, {})
    for theirs, ours in zip(answer.media, offer.media):
        if theirs.mid != ours.mid or theirs.kind != ours.kind:
            raise ValueError(f"answer m= section {theirs.mid!r} does not match {ours.mid!r}")
        accepted = (not theirs.rejected and theirs.direction in _RECEIVING
                    and ours.direction in _SENDING)
        result.accepted[ours.mid] = accepted
        result.rtx[ours.mid] = False
        if accepted:
            _read_accepted_section(theirs, ours, result)
    accepted_mids = [mid for mid, ok in result.accepted.items() if ok]
    if len(accepted_mids) > 1 and any(mid not in answer.bundle for mid in accepted_mids):
        raise ValueError("answer does not bundle every accepted m= section")  # RFC 8843 §7.3
    return result


def _read_accepted_section(theirs: MediaDescription, ours: MediaDescription,
                           result: SubscribeAnswer) -> None:
    if not ours.codecs:
        raise ValueError(f"mid {ours.mid!r}: our offer has no codec")
    offered = {codec.payload_type: codec for codec in ours.codecs}
    for codec in theirs.codecs:
        if codec.payload_type not in offered:
            raise ValueError(f"mid {ours.mid!r}: answer adds payload type {codec.payload_type}")
    primary = ours.codecs[0]
    kept = next((c for c in theirs.codecs if c.payload_type == primary.payload_type), None)
    if kept is None:
        raise ValueError(f"mid {ours.mid!r}: answer drops payload type {primary.payload_type}")
    result.rtx[ours.mid] = (primary.rtx_payload_type is not None
                            and kept.rtx_payload_type == primary.rtx_payload_type)
    result.rtcp_fb[ours.mid] = tuple(fb for fb in kept.rtcp_fb if fb in primary.rtcp_fb)
    for uri, ext_id in theirs.extmap.items():
        if uri not in ours.extmap:
            continue  # not offered: we will never send it
        if ext_id != ours.extmap[uri]:
            # RFC 8285 §6: the answer keeps the offered id; our packets carry ours.
            raise ValueError(f"mid {ours.mid!r}: a=extmap id {ext_id} for {uri} "
                             f"differs from offered {ours.extmap[uri]}")
        result.extmap[uri] = ext_id
