"""SDP as a hostile client writes it, and answers to the server's subscribe offers
without a browser (for tests that renegotiate many times).

- `compact_publish_offer(count)`: a publish offer with `count` minimal sending m-lines
  (session-level ICE and DTLS attributes, one BUNDLE group). 60 of them are ~9.5 KB:
  the known attack that made 60 producers from a `tracks` list of 2.
- `answer_subscribe(offer)`: what a browser answers to a subscribe offer: every sendonly
  m-line received, the rejected ones rejected, in one BUNDLE group.
"""

from __future__ import annotations

from sfu.wire import sdp

ICE_UFRAG = "hostile1"
ICE_PWD = "hostilehostilehostile123"
FINGERPRINT = ":".join(["5A"] * 32)


def compact_publish_offer(count: int, kind: str = "audio", first_mid: int = 0, version: int = 1) -> str:
    mids = [str(first_mid + i) for i in range(count)]
    lines = [
        "v=0",
        f"o=- 4242 {version} IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE " + " ".join(mids),
        f"a=ice-ufrag:{ICE_UFRAG}",
        f"a=ice-pwd:{ICE_PWD}",
        f"a=fingerprint:sha-256 {FINGERPRINT}",
        "a=setup:actpass",
    ]
    for index, mid in enumerate(mids):
        if kind == "audio":
            lines += ["m=audio 9 UDP/TLS/RTP/SAVPF 111", f"a=mid:{mid}", "a=sendonly", "a=rtcp-mux",
                      "a=rtpmap:111 opus/48000/2", f"a=ssrc:{1000 + first_mid + index} cname:x"]  # fmt: skip
        else:
            lines += ["m=video 9 UDP/TLS/RTP/SAVPF 96", f"a=mid:{mid}", "a=sendonly", "a=rtcp-mux",
                      "a=rtpmap:96 VP8/90000", f"a=ssrc:{1000 + first_mid + index} cname:x"]  # fmt: skip
    return "\r\n".join(lines) + "\r\n"


def answer_subscribe(offer_text: str) -> str:
    offer = sdp.parse(offer_text)
    media = []
    for offered in offer.media:
        answer = sdp.MediaDescription(
            offered.kind,
            offered.mid,
            0 if offered.rejected else 9,
            offered.protocol,
            "recvonly" if offered.direction == "sendonly" else "inactive",
            codecs=list(offered.codecs),
            extmap=dict(offered.extmap),
            ice_ufrag=ICE_UFRAG,
            ice_pwd=ICE_PWD,
            fingerprints=[sdp.Fingerprint("sha-256", FINGERPRINT)],
            setup="active",
            rtcp_mux=True,
            rejected=offered.rejected,
        )
        media.append(answer)
    bundle = [m.mid for m in media if not m.rejected]
    return sdp.serialize(sdp.SessionDescription(offer.session_id, offer.session_version, False, bundle, media))
