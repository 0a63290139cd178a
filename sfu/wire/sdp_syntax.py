"""SDP syntax for the SFU: the session description model, its parser and serializer.

Sans-I/O and stdlib only. RFC 8866 grammar, read the way WebRTC endpoints write it
(RFC 8829 JSEP): the model keeps what an ICE-lite, BUNDLE-only SFU needs, and attributes
it does not interpret stay verbatim in ``other`` so a round trip loses nothing it uses.
Offer/answer logic lives in ``sfu.wire.sdp``, which re-exports everything here.

Every parse error is a ``ValueError`` whose message names the offending line.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

__all__ = [
    "Fingerprint", "Codec", "MediaDescription", "SessionDescription", "parse", "serialize",
    "DIRECTIONS", "is_rtp_protocol",
]

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")  # RFC 8866 §6.7

# RFC 3551 §6: static payload types may appear without a=rtpmap.
_STATIC_PAYLOADS = {
    0: ("PCMU", 8000), 3: ("GSM", 8000), 4: ("G723", 8000), 8: ("PCMA", 8000),
    9: ("G722", 8000), 13: ("CN", 8000), 18: ("G729", 8000), 26: ("JPEG", 90000),
    31: ("H261", 90000), 32: ("MPV", 90000), 34: ("H263", 90000),
}
_UINT = re.compile(r"[0-9]{1,20}")


# --------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """RFC 8122 §5: hash function name (lower case) and upper-case hex with colons."""

    algorithm: str
    value: str


@dataclass(slots=True)
class Codec:
    payload_type: int
    name: str  # as in a=rtpmap: "opus", "VP8", "H264"
    clock_rate: int
    channels: int | None = None
    fmtp: str = ""  # raw parameter string of a=fmtp
    rtcp_fb: tuple[str, ...] = ()
    rtx_payload_type: int | None = None  # RFC 4588 §8.6: a=rtpmap rtx + a=fmtp apt=


@dataclass(slots=True)
class MediaDescription:
    """One m= section. Session-level ICE, fingerprint, setup, direction and extmap values
    are copied down on parse, so each section is complete on its own."""

    kind: str
    mid: str
    port: int
    protocol: str
    direction: str
    codecs: list[Codec] = field(default_factory=list)
    extmap: dict[str, int] = field(default_factory=dict)  # uri -> id
    ssrcs: list[int] = field(default_factory=list)
    ssrc_groups: list[tuple[str, list[int]]] = field(default_factory=list)
    cname: str | None = None
    msid: tuple[str, str] | None = None  # (stream id, track id); track id "" when absent
    rids: list[str] = field(default_factory=list)
    simulcast: str | None = None  # raw value of a=simulcast, e.g. "send q;h;f"
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    fingerprints: list[Fingerprint] = field(default_factory=list)
    setup: str | None = None
    candidates: list[str] = field(default_factory=list)  # values after "a=candidate:"
    rtcp_mux: bool = False
    rtcp_rsize: bool = False
    bundle_only: bool = False
    rejected: bool = False  # port 0 without a=bundle-only (RFC 8843 §6); wins over port
    other: list[str] = field(default_factory=list)  # attribute lines without "a="
    end_of_candidates: bool = False  # RFC 8840 §8.2
    formats: list[str] = field(default_factory=list)  # <fmt> tokens of non-RTP m= lines


@dataclass(slots=True)
class SessionDescription:
    session_id: int
    session_version: int
    ice_lite: bool
    bundle: list[str]
    media: list[MediaDescription]
    other: list[str] = field(default_factory=list)  # session attributes kept verbatim


def is_rtp_protocol(protocol: str) -> bool:
    """True for RTP profiles (RTP/AVP, UDP/TLS/RTP/SAVPF, ...), false for SCTP and others."""
    return "RTP/" in protocol


# --------------------------------------------------------------------------- parse


class _MediaBuilder:
    """Collects the attribute lines of one m= section before they are put together."""

    __slots__ = ("media", "payload_types", "rtpmap", "fmtp", "rtcp_fb", "ssrc_msid",
                 "has_direction", "ssrc_set")

    def __init__(self, media: MediaDescription, payload_types: list[int]) -> None:
        self.media = media
        self.payload_types = payload_types
        self.rtpmap: dict[int, tuple[str, int, int | None]] = {}
        self.fmtp: dict[int, str] = {}
        self.rtcp_fb: dict[int | None, list[str]] = {}  # None: the "*" wildcard
        self.ssrc_msid: tuple[str, str] | None = None
        self.has_direction = False
        self.ssrc_set: set[int] = set()  # media.ssrcs as a set: a=ssrc lines stay linear


class _SessionDefaults:
    """Session-level attributes that also apply to every m= section (RFC 8866 §5.13)."""

    __slots__ = ("ice_ufrag", "ice_pwd", "fingerprints", "setup", "direction", "extmap")

    def __init__(self) -> None:
        self.ice_ufrag: str | None = None
        self.ice_pwd: str | None = None
        self.fingerprints: list[Fingerprint] = []
        self.setup: str | None = None
        self.direction: str | None = None
        self.extmap: dict[str, int] = {}


def _uint(token: str, what: str, maximum: int) -> int:
    if not _UINT.fullmatch(token):
        raise ValueError(f"{what} is not a number: {token[:40]!r}")
    value = int(token)
    if value > maximum:
        raise ValueError(f"{what} out of range: {value}")
    return value


def _split_value(value: str, what: str, minimum: int) -> list[str]:
    tokens = value.split()
    if len(tokens) < minimum:
        raise ValueError(f"{what} needs at least {minimum} fields")
    return tokens


def parse(text: str | bytes) -> SessionDescription:
    """Parse an SDP blob (RFC 8866 §5); ValueError names the line that is wrong."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("SDP is not UTF-8 text") from None
    if not isinstance(text, str):
        raise ValueError("SDP must be text")
    session = SessionDescription(0, 0, False, [], [])
    defaults = _SessionDefaults()
    builders: list[_MediaBuilder] = []
    seen_origin = False
    first = True
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line.strip():
            continue
        try:
            kind, value = _line_parts(line, first)
            first = False
            if kind == "o":
                session.session_id, session.session_version = _parse_origin(value)
                seen_origin = True
            elif kind == "m":
                builders.append(_parse_m_line(value))
            elif kind == "a" and builders:
                _parse_media_attribute(builders[-1], *_attribute(value))
            elif kind == "a":
                _parse_session_attribute(session, defaults, *_attribute(value))
        except ValueError as exc:
            raise ValueError(f"SDP line {number} {line[:80]!r}: {exc}") from None
    if first:
        raise ValueError("SDP is empty")
    if not seen_origin:
        raise ValueError("SDP has no o= line")
    session.media = [_finish_media(builder, defaults) for builder in builders]
    return session


def _line_parts(line: str, first: bool) -> tuple[str, str]:
    # RFC 8866 §5: <type>=<value>, one letter type, no whitespace around "=".
    if len(line) < 2 or line[1] != "=" or not line[0].isalpha() or not line[0].isascii():
        raise ValueError("expected <type>=<value>")
    if "\r" in line or "\x00" in line:
        raise ValueError("control character inside the line")
    kind, value = line[0], line[2:]
    if first and (kind != "v" or value.strip() != "0"):
        raise ValueError("SDP must start with v=0")  # RFC 8866 §5.1
    return kind, value


def _parse_origin(value: str) -> tuple[int, int]:
    # RFC 8866 §5.2: o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>
    tokens = _split_value(value, "o=", 6)
    return (_uint(tokens[1], "o= sess-id", 2**64 - 1),
            _uint(tokens[2], "o= sess-version", 2**64 - 1))


def _parse_m_line(value: str) -> _MediaBuilder:
    # RFC 8866 §5.14: m=<media> <port> <proto> <fmt> ...
    tokens = _split_value(value, "m=", 4)
    kind, protocol, fmts = tokens[0], tokens[2], tokens[3:]
    port = _uint(tokens[1], "m= port", 65535)
    media = MediaDescription(kind, "", port, protocol, "sendrecv")
    if not is_rtp_protocol(protocol):
        media.formats = fmts
        return _MediaBuilder(media, [])
    payload_types = [_uint(fmt, "m= payload type", 127) for fmt in fmts]
    if len(set(payload_types)) != len(payload_types):
        raise ValueError("m= repeats a payload type")
    return _MediaBuilder(media, payload_types)


def _attribute(value: str) -> tuple[str, str | None]:
    # RFC 8866 §5.13: a=<attribute-name>[:<attribute-value>]
    name, colon, rest = value.partition(":")
    if not name or " " in name:
        raise ValueError("attribute name missing")
    return name, rest if colon else None


def _need(value: str | None, name: str) -> str:
    if value is None or not value.strip():
        raise ValueError(f"a={name} needs a value")
    return value.strip()


def _parse_fingerprint(value: str | None) -> Fingerprint:
    algorithm, hex_value = _split_value(_need(value, "fingerprint"), "a=fingerprint", 2)[:2]
    return Fingerprint(algorithm.lower(), hex_value.upper())  # RFC 8122 §5


def _parse_extmap(value: str | None) -> tuple[int, str]:
    # RFC 8285 §8: a=extmap:<id>[/<direction>] <uri> [<extension attributes>]
    tokens = _split_value(_need(value, "extmap"), "a=extmap", 2)
    ext_id = _uint(tokens[0].partition("/")[0], "a=extmap id", 255)
    if ext_id == 0:
        raise ValueError("a=extmap id 0 is reserved")
    return ext_id, tokens[1]


def _add_extmap(extmap: dict[str, int], ext_id: int, uri: str) -> None:
    if ext_id in extmap.values() and extmap.get(uri) != ext_id:
        raise ValueError(f"a=extmap id {ext_id} is used twice")
    extmap.setdefault(uri, ext_id)


def _parse_session_attribute(session: SessionDescription, defaults: _SessionDefaults,
                             name: str, value: str | None) -> None:
    if name == "group" and value is not None and value.split()[:1] == ["BUNDLE"] \
            and not session.bundle:
        session.bundle = value.split()[1:]  # RFC 8843 §7.1
    elif name == "ice-lite":
        session.ice_lite = True  # RFC 8839 §5.3
    elif name == "ice-ufrag":
        defaults.ice_ufrag = _need(value, name)
    elif name == "ice-pwd":
        defaults.ice_pwd = _need(value, name)
    elif name == "fingerprint":
        defaults.fingerprints.append(_parse_fingerprint(value))
    elif name == "setup":
        defaults.setup = _need(value, name).lower()
    elif name in DIRECTIONS:
        defaults.direction = name
    elif name == "extmap":
        _add_extmap(defaults.extmap, *_parse_extmap(value))
    else:
        session.other.append(name if value is None else f"{name}:{value}")


def _parse_media_attribute(builder: _MediaBuilder, name: str, value: str | None) -> None:
    media = builder.media
    rtp = is_rtp_protocol(media.protocol)
    if name == "mid":
        media.mid = _need(value, name)  # RFC 8843 §15.1 / RFC 5888 §4
    elif rtp and name in ("rtpmap", "fmtp", "rtcp-fb"):
        _parse_codec_attribute(builder, name, _need(value, name))
    elif name == "extmap":
        _add_extmap(media.extmap, *_parse_extmap(value))
    elif name == "ssrc":
        _parse_ssrc(builder, _need(value, name))
    elif name == "ssrc-group":
        # RFC 5576 §4.2: a=ssrc-group:<semantics> <ssrc-id> ...
        tokens = _split_value(_need(value, name), "a=ssrc-group", 1)
        ssrcs = [_uint(t, "a=ssrc-group ssrc", 2**32 - 1) for t in tokens[1:]]
        media.ssrc_groups.append((tokens[0], ssrcs))
    elif name == "msid":
        if media.msid is None:
            media.msid = _parse_msid(value)
    elif name == "rid":
        media.rids.append(_split_value(_need(value, name), "a=rid", 2)[0])  # RFC 8851 §4
    elif name == "simulcast":
        media.simulcast = _need(value, name)  # RFC 8853 §5.1
    elif name in DIRECTIONS:
        media.direction = name
        builder.has_direction = True
    elif not _parse_transport_attribute(media, name, value):
        media.other.append(name if value is None else f"{name}:{value}")


def _parse_transport_attribute(media: MediaDescription, name: str, value: str | None) -> bool:
    if name == "ice-ufrag":
        media.ice_ufrag = _need(value, name)  # RFC 8839 §5.4
    elif name == "ice-pwd":
        media.ice_pwd = _need(value, name)
    elif name == "fingerprint":
        media.fingerprints.append(_parse_fingerprint(value))
    elif name == "setup":
        media.setup = _need(value, name).lower()  # RFC 8842 §5.1
    elif name == "candidate":
        media.candidates.append(_need(value, name))  # RFC 8839 §5.1
    elif name == "end-of-candidates":
        media.end_of_candidates = True
    elif name == "rtcp-mux":
        media.rtcp_mux = True  # RFC 5761 §5.1.1
    elif name == "rtcp-rsize":
        media.rtcp_rsize = True  # RFC 5506 §5
    elif name == "bundle-only":
        media.bundle_only = True  # RFC 8843 §6
    else:
        return False
    return True


def _parse_msid(value: str | None) -> tuple[str, str]:
    # RFC 8830 §2: a=msid:<stream id> [<appdata = track id>]
    tokens = _split_value(_need(value, "msid"), "a=msid", 1)
    return tokens[0], tokens[1] if len(tokens) > 1 else ""


def _parse_ssrc(builder: _MediaBuilder, value: str) -> None:
    # RFC 5576 §4.1: a=ssrc:<ssrc-id> <attribute>[:<value>]
    ssrc_token, _, attribute = value.partition(" ")
    ssrc = _uint(ssrc_token, "a=ssrc id", 2**32 - 1)
    media = builder.media
    if ssrc not in builder.ssrc_set:
        builder.ssrc_set.add(ssrc)
        media.ssrcs.append(ssrc)
    attr_name, _, attr_value = attribute.strip().partition(":")
    if attr_name == "cname" and media.cname is None and attr_value.strip():
        media.cname = attr_value.strip()
    elif attr_name == "msid" and builder.ssrc_msid is None and attr_value.strip():
        builder.ssrc_msid = _parse_msid(attr_value)


def _parse_codec_attribute(builder: _MediaBuilder, name: str, value: str) -> None:
    pt_token, _, rest = value.partition(" ")
    rest = rest.strip()
    if name == "rtcp-fb" and pt_token == "*":
        payload_type = None  # RFC 4585 §4.2: applies to every payload type
    else:
        payload_type = _uint(pt_token, f"a={name} payload type", 127)
    if name == "rtpmap":
        builder.rtpmap[payload_type] = _parse_rtpmap(rest)
    elif name == "fmtp":
        builder.fmtp[payload_type] = rest  # RFC 8866 §6.15
    elif rest:
        builder.rtcp_fb.setdefault(payload_type, []).append(" ".join(rest.split()))


def _parse_rtpmap(value: str) -> tuple[str, int, int | None]:
    # RFC 8866 §6.6: <encoding name>/<clock rate>[/<encoding parameters>]
    parts = value.split("/")
    if len(parts) not in (2, 3) or not parts[0] or " " in value:
        raise ValueError("a=rtpmap needs <name>/<clock rate>[/<channels>]")
    clock_rate = _uint(parts[1], "a=rtpmap clock rate", 2**32 - 1)
    channels = _uint(parts[2], "a=rtpmap channels", 255) if len(parts) == 3 else None
    return parts[0], clock_rate, channels


def _finish_media(builder: _MediaBuilder, defaults: _SessionDefaults) -> MediaDescription:
    media = builder.media
    wildcard_fb = builder.rtcp_fb.get(None, [])
    codecs = []
    for payload_type in builder.payload_types:
        name, clock_rate, channels = builder.rtpmap.get(
            payload_type, (*_STATIC_PAYLOADS.get(payload_type, ("", 0)), None))
        feedback = builder.rtcp_fb.get(payload_type, []) + wildcard_fb
        codecs.append(Codec(payload_type, name, clock_rate, channels,
                            builder.fmtp.get(payload_type, ""),
                            tuple(dict.fromkeys(feedback))))
    media.codecs = _fold_rtx(codecs)
    if media.msid is None:
        media.msid = builder.ssrc_msid
    # RFC 8866 §5.13: a session-level attribute is the default for every m= section.
    media.ice_ufrag = media.ice_ufrag or defaults.ice_ufrag
    media.ice_pwd = media.ice_pwd or defaults.ice_pwd
    media.fingerprints = media.fingerprints or list(defaults.fingerprints)
    media.setup = media.setup or defaults.setup
    if not builder.has_direction and defaults.direction:
        media.direction = defaults.direction
    for uri, ext_id in defaults.extmap.items():
        if uri not in media.extmap and ext_id not in media.extmap.values():
            media.extmap[uri] = ext_id
    media.rejected = media.port == 0 and not media.bundle_only  # RFC 8843 §6
    return media


def _apt(fmtp: str) -> int | None:
    for parameter in fmtp.split(";"):
        key, _, value = parameter.strip().partition("=")
        if key.strip().lower() == "apt" and _UINT.fullmatch(value.strip()):
            return int(value.strip())
    return None


def _fold_rtx(codecs: list[Codec]) -> list[Codec]:
    """RFC 4588 §8.6: an rtx payload type names its media payload type with apt=."""
    by_pt = {codec.payload_type: codec for codec in codecs}
    folded: set[int] = set()
    for codec in codecs:
        target = by_pt.get(_apt(codec.fmtp)) if codec.name.lower() == "rtx" else None
        if target is None or target.name.lower() == "rtx" or target.rtx_payload_type is not None:
            continue
        target.rtx_payload_type = codec.payload_type
        folded.add(codec.payload_type)
    return [codec for codec in codecs if codec.payload_type not in folded]


# --------------------------------------------------------------------------- serialize


def serialize(desc: SessionDescription) -> str:
    """Write SDP with CRLF line ends (RFC 8866 §5); parse(serialize(x)) == x."""
    lines = [
        "v=0",
        f"o=- {desc.session_id} {desc.session_version} IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
    ]
    if desc.bundle:
        lines.append("a=group:BUNDLE " + " ".join(desc.bundle))
    if desc.ice_lite:
        lines.append("a=ice-lite")
    lines += ["a=" + attribute for attribute in desc.other]
    for media in desc.media:
        lines += _media_lines(media)
    for line in lines:
        if "\r" in line or "\n" in line:
            raise ValueError(f"SDP field contains a line break: {line[:80]!r}")
    return "\r\n".join(lines) + "\r\n"


def _connection_line(media: MediaDescription) -> str:
    # RFC 8839 §4.2.1: c= carries the default candidate's address (0.0.0.0 when none).
    if media.candidates:
        tokens = media.candidates[0].split()
        try:
            address = ipaddress.ip_address(tokens[4]) if len(tokens) > 4 else None
        except ValueError:
            address = None
        if address is not None:
            return f"c=IN IP{address.version} {address}"
    return "c=IN IP4 0.0.0.0"


def _media_lines(media: MediaDescription) -> list[str]:
    rtp = is_rtp_protocol(media.protocol)
    formats = [str(pt) for c in media.codecs
               for pt in (c.payload_type, c.rtx_payload_type) if pt is not None]
    formats = formats if rtp else media.formats
    if not formats:
        raise ValueError(f"m= section {media.mid!r} has no formats")
    port = 0 if media.rejected else media.port
    lines = [f"m={media.kind} {port} {media.protocol} {' '.join(formats)}",
             _connection_line(media)]
    if media.ice_ufrag is not None:
        lines.append(f"a=ice-ufrag:{media.ice_ufrag}")
    if media.ice_pwd is not None:
        lines.append(f"a=ice-pwd:{media.ice_pwd}")
    lines += [f"a=fingerprint:{f.algorithm} {f.value}" for f in media.fingerprints]
    if media.setup is not None:
        lines.append(f"a=setup:{media.setup}")
    if media.mid:
        lines.append(f"a=mid:{media.mid}")
    lines += [f"a=extmap:{ext_id} {uri}" for uri, ext_id in media.extmap.items()]
    if rtp or media.direction != "sendrecv":
        lines.append(f"a={media.direction}")
    if media.msid is not None:
        lines.append("a=msid:" + _msid_text(media.msid))
    lines += [f"a={flag}" for flag, on in (("rtcp-mux", media.rtcp_mux),
                                           ("rtcp-rsize", media.rtcp_rsize),
                                           ("bundle-only", media.bundle_only)) if on]
    for codec in media.codecs:
        lines += _codec_lines(codec)
    lines += _simulcast_lines(media)
    lines += _ssrc_lines(media)
    lines += [f"a=candidate:{candidate}" for candidate in media.candidates]
    if media.end_of_candidates:
        lines.append("a=end-of-candidates")
    lines += ["a=" + attribute for attribute in media.other]
    return lines


def _msid_text(msid: tuple[str, str]) -> str:
    return f"{msid[0]} {msid[1]}" if msid[1] else msid[0]


def _codec_lines(codec: Codec) -> list[str]:
    pt = codec.payload_type
    lines = []
    if codec.name:
        channels = f"/{codec.channels}" if codec.channels is not None else ""
        lines.append(f"a=rtpmap:{pt} {codec.name}/{codec.clock_rate}{channels}")
    lines += [f"a=rtcp-fb:{pt} {feedback}" for feedback in codec.rtcp_fb]
    if codec.fmtp:
        lines.append(f"a=fmtp:{pt} {codec.fmtp}")
    if codec.rtx_payload_type is not None:
        rtx = codec.rtx_payload_type
        lines += [f"a=rtpmap:{rtx} rtx/{codec.clock_rate}", f"a=fmtp:{rtx} apt={pt}"]
    return lines


def _simulcast_lines(media: MediaDescription) -> list[str]:
    # RFC 8851 §4: a=rid:<id> send|recv; the direction follows a=simulcast when present.
    if media.simulcast:
        direction = media.simulcast.split()[0]
    else:
        direction = "recv" if media.direction == "recvonly" else "send"
    lines = [f"a=rid:{rid} {direction}" for rid in media.rids]
    if media.simulcast is not None:
        lines.append(f"a=simulcast:{media.simulcast}")
    return lines


def _ssrc_lines(media: MediaDescription) -> list[str]:
    lines = [f"a=ssrc-group:{semantics} {' '.join(map(str, ssrcs))}".rstrip()
             for semantics, ssrcs in media.ssrc_groups]
    for ssrc in media.ssrcs:
        if media.cname is not None:
            lines.append(f"a=ssrc:{ssrc} cname:{media.cname}")
        if media.msid is not None:
            lines.append(f"a=ssrc:{ssrc} msid:{_msid_text(media.msid)}")
        if media.cname is None and media.msid is None:
            lines.append(f"a=ssrc:{ssrc}")
    return lines
