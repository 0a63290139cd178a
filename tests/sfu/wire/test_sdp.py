"""sfu.wire.sdp: parse/serialize on real captures, publish answers, subscribe offers/answers.

Captures in tests/data/ come from Debian chromium and aiortc (tests/data/capture_wire_sdp.py
regenerates them). The browser-facing proof that our SDP is accepted lives in
test_sdp_browser.py (Chromium) and test_sdp_aiortc.py (aiortc).
"""

from __future__ import annotations

import dataclasses
import re
import string
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfu.wire import sdp
from sfu.wire.sdp import (
    URI_ABS_SEND_TIME,
    URI_AUDIO_LEVEL,
    URI_MID,
    URI_REPAIRED_RID,
    URI_RID,
    URI_TRANSPORT_CC,
    Codec,
    Fingerprint,
    LocalTransport,
    MediaDescription,
    SessionDescription,
    SubscribeTrack,
    serialize,
    tcp_host_candidate,
)
from tests.support.paths import DATA_DIR

DATA = DATA_DIR
CAPTURES = sorted(path.name for path in DATA.glob("*.sdp"))
LOCAL = LocalTransport("sfuL", "conclaveIceLitePassword0",
                       [Fingerprint("sha-256", "AB:CD:EF:01")], [("127.0.0.1", 40000)])


def load(name: str) -> str:
    # Captures are CRLF as the browsers wrote them; normalise in case a checkout changed it.
    return (DATA / name).read_bytes().decode().replace("\r\n", "\n").replace("\n", "\r\n")


def offer(name: str) -> SessionDescription:
    return sdp.parse(load(name))


def answer(desc: SessionDescription, policy: sdp.CodecPolicy | None = None, local=LOCAL):
    return sdp.answer_publish(desc, local, policy or sdp.default_codec_policy())


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


def by_mid(desc: SessionDescription) -> dict[str, MediaDescription]:
    return {media.mid: media for media in desc.media}


# --------------------------------------------------------------------------- captures


def test_captures_are_present():
    for name in ("chromium_publish_offer.sdp", "chromium_publish_offer_3video.sdp",
                 "chromium_publish_offer_simulcast.sdp", "aiortc_publish_offer.sdp",
                 "chromium_publish_reoffer.sdp", "chromium_subscribe_answer.sdp",
                 "aiortc_subscribe_answer.sdp", "subscribe_offer.sdp"):
        assert name in CAPTURES


def test_parse_chromium_publish_offer():
    desc = offer("chromium_publish_offer.sdp")
    assert desc.session_version == 2 and not desc.ice_lite
    assert desc.bundle == ["0", "1"]
    assert "extmap-allow-mixed" in desc.other
    audio, video = desc.media
    assert (audio.kind, audio.mid, audio.direction) == ("audio", "0", "sendonly")
    assert (video.kind, video.mid, video.direction) == ("video", "1", "sendonly")
    for media in desc.media:
        assert media.protocol == "UDP/TLS/RTP/SAVPF" and media.port == 9
        assert media.rtcp_mux and media.rtcp_rsize and not media.rejected
        assert media.setup == "actpass" and media.ice_ufrag and media.ice_pwd
        assert media.fingerprints[0].algorithm == "sha-256"
        assert "rtcp:9 IN IP4 0.0.0.0" in media.other
    assert audio.ice_ufrag == video.ice_ufrag
    opus = audio.codecs[0]
    assert (opus.payload_type, opus.name, opus.clock_rate, opus.channels) == (111, "opus", 48000, 2)
    assert opus.fmtp == "minptime=10;useinbandfec=1" and opus.rtcp_fb == ("transport-cc",)
    vp8 = video.codecs[0]
    assert (vp8.payload_type, vp8.name, vp8.rtx_payload_type) == (96, "VP8", 97)
    assert vp8.rtcp_fb == ("goog-remb", "transport-cc", "ccm fir", "nack", "nack pli")
    assert all(codec.name != "rtx" for codec in video.codecs)  # every rtx folded
    h264 = [c for c in video.codecs if c.name == "H264"]
    assert any("packetization-mode=0" in c.fmtp for c in h264)
    assert audio.extmap[URI_AUDIO_LEVEL] == 1 and audio.extmap[URI_MID] == 4
    assert video.extmap[URI_RID] == 10 and URI_AUDIO_LEVEL not in video.extmap
    assert len(audio.ssrcs) == 1 and len(video.ssrcs) == 2
    assert video.ssrc_groups == [("FID", video.ssrcs)]
    assert audio.cname == video.cname and audio.cname
    assert audio.msid[0] == video.msid[0] and audio.msid[1] != video.msid[1]
    assert not audio.candidates


def test_parse_gathered_offer_keeps_candidates():
    desc = offer("chromium_publish_offer_gathered.sdp")
    audio = desc.media[0]
    assert audio.candidates and all("typ host" in c for c in audio.candidates)
    assert audio.port != 9
    assert any(f" 127.0.0.1 {audio.port} " in c for c in audio.candidates)


def test_parse_simulcast_offer():
    video = offer("chromium_publish_offer_simulcast.sdp").media[1]
    assert video.rids == ["q", "h", "f"]
    assert video.simulcast == "send q;h;f"
    assert video.ssrcs == [] and video.cname is None and video.msid is not None


def test_parse_three_video_offer_with_data_channel():
    desc = offer("chromium_publish_offer_3video.sdp")
    assert [m.kind for m in desc.media] == ["audio", "video", "video", "video", "application"]
    app = desc.media[4]
    assert app.protocol == "UDP/DTLS/SCTP" and app.formats == ["webrtc-datachannel"]
    assert app.codecs == [] and "sctp-port:5000" in app.other
    streams = {m.msid[0] for m in desc.media[:4]}
    assert len(streams) == 3  # camera+mic, second canvas, screen canvas


def test_parse_aiortc_offer():
    desc = offer("aiortc_publish_offer.sdp")
    audio, video = desc.media
    assert audio.codecs[0].name == "opus" and audio.codecs[0].payload_type == 96
    assert (video.codecs[0].name, video.codecs[0].rtx_payload_type) == ("VP8", 98)
    assert not audio.rtcp_rsize and audio.end_of_candidates
    assert [f.algorithm for f in audio.fingerprints] == ["sha-256", "sha-384", "sha-512"]
    assert audio.msid is not None and audio.cname


@pytest.mark.parametrize("name", CAPTURES)
def test_round_trip(name):
    desc = sdp.parse(load(name))
    text = sdp.serialize(desc)
    assert sdp.parse(text) == desc
    assert sdp.serialize(sdp.parse(text)) == text
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")


def test_parse_accepts_lf_and_bytes():
    text = load("chromium_publish_offer.sdp")
    assert sdp.parse(text.replace("\r\n", "\n")) == sdp.parse(text)
    assert sdp.parse(text.encode()) == sdp.parse(text)


def test_serialize_connection_line_follows_first_candidate():
    text = sdp.serialize(offer("aiortc_publish_offer.sdp"))
    assert "c=IN IP4 192.0.2.2\r\n" in text or "c=IN IP6" in text
    media = MediaDescription("audio", "0", 9, "UDP/TLS/RTP/SAVPF", "recvonly",
                             codecs=[Codec(111, "opus", 48000, 2)],
                             candidates=["1 1 udp 1 ::1 5000 typ host"])
    desc = SessionDescription(1, 1, True, ["0"], [media])
    assert "c=IN IP6 ::1\r\n" in sdp.serialize(desc)


# --------------------------------------------------------------------------- parse details

MINIMAL = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"


def test_session_level_attributes_are_copied_down():
    text = (MINIMAL + "a=ice-ufrag:sess\r\na=ice-pwd:sessionpassword\r\n"
            "a=fingerprint:SHA-256 ab:cd\r\na=setup:active\r\na=sendonly\r\n"
            "a=extmap:5 urn:x\r\n"
            "m=audio 9 RTP/SAVPF 0\r\na=mid:a\r\n"
            "m=video 9 RTP/SAVPF 96\r\na=mid:v\r\na=ice-ufrag:own\r\na=recvonly\r\n"
            "a=rtpmap:96 VP8/90000\r\n")
    a, v = sdp.parse(text).media
    assert (a.ice_ufrag, a.ice_pwd, a.setup, a.direction) == ("sess", "sessionpassword",
                                                              "active", "sendonly")
    assert a.fingerprints == [Fingerprint("sha-256", "AB:CD")]
    assert (v.ice_ufrag, v.ice_pwd, v.direction) == ("own", "sessionpassword", "recvonly")
    assert a.extmap == {"urn:x": 5}
    assert a.codecs == [Codec(0, "PCMU", 8000)]  # RFC 3551 static payload type


def test_codec_details():
    text = (MINIMAL + "m=video 0 UDP/TLS/RTP/SAVPF 96 97 98 99\r\na=mid:v\r\na=bundle-only\r\n"
            "a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"
            "a=rtpmap:98 rtx/90000\r\na=fmtp:98 apt=120\r\n"
            "a=rtcp-fb:* nack\r\na=rtcp-fb:96 ccm  fir\r\n"
            "a=ssrc:5 msid:stream track\r\na=ssrc:6\r\n")
    media = sdp.parse(text).media[0]
    assert not media.rejected  # port 0 with bundle-only is not a rejection (RFC 8843 §6)
    vp8, orphan_rtx, unknown = media.codecs
    assert vp8 == Codec(96, "VP8", 90000, None, "", ("ccm fir", "nack"), 97)
    assert orphan_rtx.name == "rtx" and orphan_rtx.fmtp == "apt=120"
    assert unknown == Codec(99, "", 0, None, "", ("nack",))
    assert media.ssrcs == [5, 6] and media.msid == ("stream", "track") and media.cname is None


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("o=- 1 1 IN IP4 0.0.0.0\r\n", "v=0"),
    ("v=1\r\n", "v=0"),
    ("v=0\r\ns=-\r\n", "o="),
    ("v=0\r\no=- x 1 IN IP4 0.0.0.0\r\n", "sess-id"),
    ("v=0\r\no=- 1\r\n", "o="),
    (MINIMAL + "m=audio 9/2 RTP/AVP 0\r\n", "port"),
    (MINIMAL + "m=audio 70000 RTP/AVP 0\r\n", "port"),
    (MINIMAL + "m=video 99999999999 UDP/TLS/RTP/SAVPF 96\r\n", "m= port out of range"),
    (MINIMAL + "m=video 9" + "9" * 30 + " UDP/TLS/RTP/SAVPF 96\r\n", "m= port is not a number"),
    (MINIMAL + "m=video -9 UDP/TLS/RTP/SAVPF 96\r\n", "m= port is not a number"),
    (MINIMAL + "m=audio 9 RTP/AVP 200\r\n", "payload type"),
    (MINIMAL + "m=audio 9 RTP/AVP 0 0\r\n", "repeats"),
    (MINIMAL + "m=audio 9 RTP/AVP\r\n", "m="),
    (MINIMAL + "m=audio 9 RTP/AVP 96\r\na=rtpmap:96 opus\r\n", "rtpmap"),
    (MINIMAL + "m=audio 9 RTP/AVP 96\r\na=rtpmap:96 opus/x\r\n", "clock rate"),
    (MINIMAL + "m=audio 9 RTP/AVP 96\r\na=extmap:0 urn:x\r\n", "extmap"),
    (MINIMAL + "m=audio 9 RTP/AVP 96\r\na=extmap:256 urn:x\r\n", "extmap"),
    (MINIMAL + "m=audio 9 RTP/AVP 96\r\na=extmap:1 urn:x\r\na=extmap:1 urn:y\r\n", "twice"),
    (MINIMAL + "m=audio 9 RTP/AVP 96\r\na=ssrc:abc cname:x\r\n", "ssrc"),
    (MINIMAL + "m=audio 9 RTP/AVP 96\r\na=ssrc:4294967296 cname:x\r\n", "ssrc"),
    (MINIMAL + "m=audio 9 RTP/AVP 96\r\na=mid:\r\n", "mid"),
    (MINIMAL + "m=audio 9 RTP/AVP 96\r\na=fingerprint:sha-256\r\n", "fingerprint"),
    (MINIMAL + "m=audio 9 RTP/AVP 96\r\na=rid:q\r\n", "rid"),
    (MINIMAL + "garbage\r\n", "<type>=<value>"),
    (MINIMAL + "a=\r\n", "attribute"),
    (MINIMAL + "a=x\ry\r\n", "control"),
    (MINIMAL + "m=audio 9 RTP/AVP \u0661\r\n", "payload type"),  # Arabic-Indic digit
    (b"v=0\r\n\xff\xfe", "UTF-8"),
    (42, "text"),
])
def test_parse_errors_name_the_line(text, fragment):
    with pytest.raises(ValueError) as caught:
        sdp.parse(text)
    message = str(caught.value)
    assert fragment in message
    if isinstance(text, str) and text.strip() and "has no" not in message:
        assert message.startswith("SDP line ")  # names the line number and its text


# --------------------------------------------------------------------------- answer_publish


def test_answer_chromium_offer():
    desc = offer("chromium_publish_offer.sdp")
    result, tracks, remote = answer(desc)
    assert result.ice_lite and result.bundle == ["0", "1"]
    assert result.session_version == desc.session_version
    audio, video = result.media
    for media, offered in zip(result.media, desc.media):
        assert media.mid == offered.mid and media.direction == "recvonly"
        assert media.port == 40000 and media.setup == "passive"
        assert media.ice_ufrag == "sfuL" and media.ice_pwd == "conclaveIceLitePassword0"
        assert media.fingerprints == LOCAL.fingerprints
        assert media.candidates == ["1 1 udp 2130706431 127.0.0.1 40000 typ host"]
        assert media.end_of_candidates and media.rtcp_mux and media.rtcp_rsize
        assert not media.ssrcs and media.msid is None and not media.rids
    assert audio.codecs == [Codec(111, "opus", 48000, 2, "minptime=10;useinbandfec=1",
                                  ("transport-cc",))]
    assert video.codecs == [Codec(96, "VP8", 90000, None, "",
                                  ("goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"),
                                  97)]
    assert audio.extmap == {URI_AUDIO_LEVEL: 1, URI_ABS_SEND_TIME: 2, URI_TRANSPORT_CC: 3,
                            URI_MID: 4}
    assert video.extmap == {URI_ABS_SEND_TIME: 2, URI_TRANSPORT_CC: 3, URI_MID: 4,
                            URI_RID: 10, URI_REPAIRED_RID: 11}
    text = sdp.serialize(result)
    assert "a=ice-lite\r\n" in text and "c=IN IP4 127.0.0.1\r\n" in text
    assert "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n" in text
    assert "m=video 40000 UDP/TLS/RTP/SAVPF 96 97\r\n" in text
    assert sdp.parse(text) == result

    offered_audio, offered_video = desc.media
    assert [t.mid for t in tracks] == ["0", "1"] and all(t.active for t in tracks)
    assert tracks[0].codec == audio.codecs[0] and tracks[1].codec == video.codecs[0]
    assert tracks[0].ssrc == offered_audio.ssrcs[0] and tracks[0].rtx_ssrc is None
    assert (tracks[1].ssrc, tracks[1].rtx_ssrc) == tuple(offered_video.ssrc_groups[0][1])
    assert tracks[1].extmap == video.extmap and tracks[1].cname == offered_video.cname
    assert tracks[1].msid == offered_video.msid and tracks[1].rids == []
    assert remote == sdp.RemoteTransport(offered_audio.ice_ufrag, offered_audio.ice_pwd,
                                         offered_audio.fingerprints, "server")


def test_answer_session_id_is_stable_and_overridable():
    desc = offer("chromium_publish_offer.sdp")
    first, _, _ = answer(desc)
    again, _, _ = answer(desc)
    assert first.session_id == again.session_id and 0 <= first.session_id < 2**63
    custom, _, _ = sdp.answer_publish(desc, LOCAL, sdp.default_codec_policy(),
                                      session_id=5, session_version=9)
    assert (custom.session_id, custom.session_version) == (5, 9)


def test_answer_announces_every_local_ip():
    local = dataclasses.replace(LOCAL, candidates=[("127.0.0.1", 4000), ("::1", 4001)])
    result, _, _ = answer(offer("chromium_publish_offer.sdp"), local=local)
    assert result.media[0].candidates == [
        "1 1 udp 2130706431 127.0.0.1 4000 typ host",
        "2 1 udp 2130706175 ::1 4001 typ host",
    ]
    with pytest.raises(ValueError, match="candidate"):
        answer(offer("chromium_publish_offer.sdp"),
               local=dataclasses.replace(LOCAL, candidates=[("not-an-ip", 1)]))


def test_passive_tcp_candidates_follow_the_udp_ones_with_a_lower_priority():
    local = dataclasses.replace(LOCAL, candidates=[("127.0.0.1", 4000), ("::1", 4001)],
                                tcp_candidates=[("127.0.0.1", 4000), ("::1", 4001)])
    result, _, _ = answer(offer("chromium_publish_offer.sdp"), local=local)
    udp_a, udp_b, tcp_a, tcp_b = result.media[0].candidates
    # RFC 6544 §4.2: (90 << 24) + ((4 << 13 | 8191 - index) << 8) + (256 - 1).
    assert tcp_a == f"3 1 tcp {(90 << 24) + ((4 << 13 | 8191) << 8) + 255} 127.0.0.1 4000 typ host tcptype passive"
    assert tcp_b == f"4 1 tcp {(90 << 24) + ((4 << 13 | 8190) << 8) + 255} ::1 4001 typ host tcptype passive"
    priorities = [int(c.split()[3]) for c in (udp_a, udp_b, tcp_a, tcp_b)]
    assert priorities == sorted(priorities, reverse=True)  # every UDP candidate first
    assert len({c.split()[0] for c in (udp_a, udp_b, tcp_a, tcp_b)}) == 4  # foundations differ


def test_only_tcp_candidates_make_the_tcp_port_the_default():
    local = dataclasses.replace(LOCAL, candidates=[], tcp_candidates=[("127.0.0.1", 4100)])
    result, _, _ = answer(offer("chromium_publish_offer.sdp"), local=local)
    media = result.media[0]
    assert media.port == 4100
    assert media.candidates == [f"1 1 tcp {(90 << 24) + ((4 << 13 | 8191) << 8) + 255} 127.0.0.1 4100 typ host tcptype passive"]
    assert "c=IN IP4 127.0.0.1" in serialize(result)


def test_a_tcp_candidate_needs_an_ip_and_a_port():
    with pytest.raises(ValueError, match="address"):
        tcp_host_candidate(0, 1, "example.com", 4000)
    with pytest.raises(ValueError, match="port"):
        tcp_host_candidate(0, 1, "127.0.0.1", 0)


@pytest.mark.parametrize("setup, ours, role", [
    ("actpass", "passive", "server"), ("active", "passive", "server"),
    ("passive", "active", "client"),
])
def test_answer_dtls_role(setup, ours, role):
    text = load("chromium_publish_offer.sdp").replace("a=setup:actpass", f"a=setup:{setup}")
    result, _, remote = answer(sdp.parse(text))
    assert remote.dtls_role == role
    assert {media.setup for media in result.media} == {ours}


def test_answer_rejects_holdconn():
    text = load("chromium_publish_offer.sdp").replace("a=setup:actpass", "a=setup:holdconn")
    with pytest.raises(ValueError, match="setup"):
        answer(sdp.parse(text))


def test_answer_aiortc_offer():
    result, tracks, remote = answer(offer("aiortc_publish_offer.sdp"))
    audio, video = result.media
    assert audio.codecs == [Codec(96, "opus", 48000, 2)]
    assert video.codecs == [Codec(97, "VP8", 90000, None, "",
                                  ("nack", "nack pli", "goog-remb"), 98)]
    assert not audio.rtcp_rsize  # only echoed when offered
    assert tracks[1].rtx_ssrc is not None and len(remote.fingerprints) == 3


def strip_vp8(text: str) -> str:
    lines = [line for line in text.split("\r\n")
             if not line.startswith(("a=rtpmap:96 ", "a=rtcp-fb:96 ", "a=fmtp:97 ",
                                     "a=rtpmap:97 "))]
    return "\r\n".join(lines).replace("UDP/TLS/RTP/SAVPF 96 97 102", "UDP/TLS/RTP/SAVPF 102")


def test_answer_picks_h264_packetization_mode_1_matching_profile():
    result, tracks, _ = answer(sdp.parse(strip_vp8(load("chromium_publish_offer.sdp"))))
    codec = result.media[1].codecs[0]
    assert codec.name == "H264" and "packetization-mode=1" in codec.fmtp
    assert "profile-level-id=42e01f" in codec.fmtp
    assert codec.rtx_payload_type is not None and tracks[1].codec == codec


def test_answer_video_follows_server_order_audio_follows_client_order():
    policy = sdp.default_codec_policy()
    policy.video.reverse()  # H264 first
    policy.audio.insert(0, Codec(0, "PCMU", 8000))
    result, _, _ = answer(offer("chromium_publish_offer.sdp"), policy)
    assert result.media[0].codecs[0].name == "opus"  # the client lists opus first
    assert result.media[1].codecs[0].name == "H264"


def test_answer_rejects_video_without_usable_codec():
    text = load("chromium_publish_offer.sdp")
    text = text.replace("VP8/90000", "VP7/90000").replace("packetization-mode=1",
                                                          "packetization-mode=0")
    result, tracks, _ = answer(sdp.parse(text))
    video = result.media[1]
    assert video.rejected and video.port == 0 and result.bundle == ["0"]
    assert [c.payload_type for c in video.codecs] == [c.payload_type
                                                      for c in sdp.parse(text).media[1].codecs]
    assert tracks[1].active is False
    assert "m=video 0 UDP/TLS/RTP/SAVPF 96 97 102 " in sdp.serialize(result)


def test_answer_simulcast_is_declined_by_default():
    result, tracks, _ = answer(offer("chromium_publish_offer_simulcast.sdp"))
    video = result.media[1]
    assert video.simulcast is None and video.rids == []
    assert "a=simulcast" not in sdp.serialize(result) and "a=rid" not in sdp.serialize(result)
    assert tracks[1].rids == ["q", "h", "f"] and tracks[1].ssrc is None
    assert tracks[1].extmap[URI_RID] == 10 and tracks[1].extmap[URI_MID] == 4


def test_answer_simulcast_accepted_by_policy():
    policy = dataclasses.replace(sdp.default_codec_policy(), accept_simulcast=True)
    result, _, _ = answer(offer("chromium_publish_offer_simulcast.sdp"), policy)
    video = result.media[1]
    assert video.simulcast == "recv q;h;f" and video.rids == ["q", "h", "f"]
    text = sdp.serialize(result)
    assert "a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\n" in text


def test_answer_three_videos_and_rejected_data_channel():
    result, tracks, _ = answer(offer("chromium_publish_offer_3video.sdp"))
    assert result.bundle == ["0", "1", "2", "3"]
    app = result.media[4]
    assert app.rejected and app.formats == ["webrtc-datachannel"]
    assert "m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n" in sdp.serialize(result)
    assert [t.kind for t in tracks] == ["audio", "video", "video", "video"]
    assert all(t.active for t in tracks)
    assert len({t.ssrc for t in tracks}) == 4


def test_answer_reoffer_with_removed_track():
    result, tracks, remote = answer(offer("chromium_publish_reoffer.sdp"))
    audio, video = result.media
    # Inactive, not rejected: mid 0 is the BUNDLE-tagged section (see the browser test).
    assert audio.direction == "inactive" and not audio.rejected and audio.port == 40000
    assert audio.codecs[0].name == "opus" and video.direction == "recvonly"
    assert result.bundle == ["0", "1"]
    assert [(t.mid, t.active) for t in tracks] == [("0", False), ("1", True)]
    assert tracks[0].ssrc is not None and tracks[0].extmap[URI_MID] == 4
    assert result.session_version == 3 and remote.dtls_role == "server"


def test_answer_stopped_transceiver_is_rejected():
    text, count = re.subn(r"m=audio \d+ ", "m=audio 0 ", load("chromium_publish_reoffer.sdp"))
    assert count == 1
    text = edit(text, "a=group:BUNDLE 0 1", "a=group:BUNDLE 1")
    result, tracks, _ = answer(sdp.parse(text))
    assert result.media[0].rejected and result.bundle == ["1"]
    assert [(t.mid, t.active) for t in tracks] == [("0", False), ("1", True)]


@pytest.mark.parametrize("direction", ["recvonly", "inactive"])
def test_answer_section_the_client_does_not_send_is_inactive(direction):
    text = load("chromium_publish_offer.sdp").replace("a=sendonly", f"a={direction}", 1)
    result, tracks, _ = answer(sdp.parse(text))
    assert result.media[0].direction == "inactive" and not result.media[0].rejected
    assert not tracks[0].active and tracks[1].active


def test_answer_without_bundle_group_for_a_single_section():
    desc = offer("aiortc_publish_offer.sdp")
    desc.media, desc.bundle = desc.media[:1], []
    result, tracks, _ = answer(desc)
    assert result.bundle == [] and not result.media[0].rejected and tracks[0].active
    assert "a=group" not in sdp.serialize(result)


def test_answer_with_nothing_accepted_is_still_valid():
    desc = offer("chromium_publish_offer_3video.sdp")
    desc.media = desc.media[4:]
    desc.bundle = ["4"]
    result, tracks, remote = answer(desc)
    assert result.bundle == [] and tracks == [] and result.media[0].rejected
    assert sdp.parse(sdp.serialize(result)) == result and remote.ice_ufrag


@pytest.mark.parametrize("old, new, fragment", [
    ("a=ice-ufrag:", "a=x-ufrag:", "ice-ufrag"),
    ("a=ice-pwd:", "a=x-pwd:", "ice-pwd"),
    ("a=fingerprint:", "a=x-fingerprint:", "fingerprint"),
    ("a=rtcp-mux\r\n", "", "rtcp-mux"),
    ("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 7", "unknown mid"),
    ("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 0 1", "repeats"),
    ("a=group:BUNDLE 0 1", "a=group:BUNDLE 0", "not in a=group:BUNDLE"),
    ("a=group:BUNDLE 0 1", "a=group:LS 0 1", "not in a=group:BUNDLE"),
    ("a=group:BUNDLE 0 1", "a=group:BUNDLE 0\r\na=group:BUNDLE 1", "more than one"),
    ("a=mid:1", "a=mid:0", "repeat"),
    ("a=mid:1\r\n", "", "no a=mid"),
    ("a=extmap-allow-mixed", "a=ice-lite", "ICE-lite"),
])
def test_answer_rejects_bad_offers(old, new, fragment):
    text = load("chromium_publish_offer.sdp")
    with pytest.raises(ValueError, match=fragment):
        answer(sdp.parse(text.replace(old, new)))


def test_answer_rejects_bundling_a_rejected_section():
    text = edit(load("chromium_publish_offer.sdp"), "m=video 9 ", "m=video 0 ")
    with pytest.raises(ValueError, match="rejected mid"):
        answer(sdp.parse(text))


# --------------------------------------------------------------------------- subscribe

POLICY = sdp.default_codec_policy()
OPUS, VP8, H264 = POLICY.audio[0], POLICY.video[0], POLICY.video[1]
TRACKS = [
    SubscribeTrack("a0", "audio", OPUS, 1001, None, "alice", "alice-cam", "alice-mic", True),
    SubscribeTrack("v0", "video", VP8, 2001, 2002, "alice", "alice-cam", "alice-cam-v", True),
    SubscribeTrack("v1", "video", VP8, 3001, 3002, "bob", "bob-screen", "bob-screen-v", False),
]


def test_offer_subscribe():
    desc = sdp.offer_subscribe(LOCAL, TRACKS, POLICY, 7000, 3)
    assert (desc.session_id, desc.session_version, desc.ice_lite) == (7000, 3, True)
    assert desc.bundle == ["a0", "v0", "v1"]
    audio, video, closed = desc.media
    for media in desc.media:
        assert media.setup == "actpass" and media.rtcp_mux and media.rtcp_rsize
        assert media.candidates == ["1 1 udp 2130706431 127.0.0.1 40000 typ host"]
        assert media.protocol == "UDP/TLS/RTP/SAVPF" and media.port == 40000
    assert audio.direction == video.direction == "sendonly"
    assert audio.extmap == {URI_AUDIO_LEVEL: 1, URI_ABS_SEND_TIME: 2, URI_TRANSPORT_CC: 3}
    assert video.extmap == {URI_ABS_SEND_TIME: 2, URI_TRANSPORT_CC: 3}
    assert audio.codecs == [OPUS] and video.codecs == [VP8]
    assert audio.ssrcs == [1001] and audio.ssrc_groups == []
    assert video.ssrcs == [2001, 2002] and video.ssrc_groups == [("FID", [2001, 2002])]
    assert video.msid == ("alice-cam", "alice-cam-v") and video.cname == "alice"
    assert closed.direction == "inactive" and closed.ssrcs == [] and closed.msid is None
    text = sdp.serialize(desc)
    assert "a=ssrc-group:FID 2001 2002\r\n" in text
    assert "a=ssrc:2002 msid:alice-cam alice-cam-v\r\n" in text
    assert "m=video 40000 UDP/TLS/RTP/SAVPF 96 97\r\n" in text
    assert sdp.parse(text) == desc


def test_captured_subscribe_offer_matches_ours():
    captured = offer("subscribe_offer.sdp")
    port = captured.media[0].port
    local = dataclasses.replace(LOCAL, candidates=[("127.0.0.1", port)])
    ours = sdp.offer_subscribe(local, TRACKS, POLICY, 7000, 3)
    ours.media[0].fingerprints = captured.media[0].fingerprints
    for media in ours.media:
        media.fingerprints = captured.media[0].fingerprints
        media.ice_pwd = captured.media[0].ice_pwd
    assert ours == captured


def test_offer_subscribe_rejects_a_closed_track_out_of_the_bundle():
    rejected = dataclasses.replace(TRACKS[2], active=False, rejected=True)
    desc = sdp.offer_subscribe(LOCAL, [TRACKS[0], TRACKS[1], rejected], POLICY, 7000, 4)
    assert desc.bundle == ["a0", "v0"]
    closed = desc.media[2]
    assert closed.rejected and closed.port == 0 and closed.direction == "inactive" and closed.ssrcs == []
    text = sdp.serialize(desc)
    assert "m=video 0 UDP/TLS/RTP/SAVPF 96 97\r\n" in text and sdp.parse(text) == desc
    with pytest.raises(ValueError, match="every subscribe m= section is rejected"):
        sdp.offer_subscribe(LOCAL, [rejected], POLICY, 7000, 5)


@pytest.mark.parametrize("tracks, fragment", [
    ([TRACKS[0], TRACKS[0]], "repeat"),
    ([dataclasses.replace(TRACKS[0], mid="a b")], "token"),
    ([dataclasses.replace(TRACKS[0], kind="application")], "kind"),
])
def test_offer_subscribe_rejects_bad_tracks(tracks, fragment):
    with pytest.raises(ValueError, match=fragment):
        sdp.offer_subscribe(LOCAL, tracks, POLICY, 1, 1)


SUB_OFFER = "subscribe_offer.sdp"


def read(answer_text: str, offer_name: str = SUB_OFFER) -> sdp.SubscribeAnswer:
    return sdp.read_subscribe_answer(sdp.parse(answer_text), offer(offer_name))


def test_read_chromium_subscribe_answer():
    result = read(load("chromium_subscribe_answer.sdp"))
    assert result.accepted == {"a0": True, "v0": True, "v1": False}
    assert result.extmap == {URI_AUDIO_LEVEL: 1, URI_ABS_SEND_TIME: 2, URI_TRANSPORT_CC: 3}
    assert result.rtx == {"a0": False, "v0": True, "v1": False}
    assert result.rtcp_fb["v0"] == VP8.rtcp_fb and result.rtcp_fb["a0"] == ("transport-cc",)
    assert result.remote.dtls_role == "server" and result.remote.ice_ufrag


def test_read_aiortc_subscribe_answer():
    result = read(load("aiortc_subscribe_answer.sdp"))
    assert result.accepted == {"a0": True, "v0": True, "v1": False}
    assert result.extmap == {URI_AUDIO_LEVEL: 1, URI_ABS_SEND_TIME: 2}
    assert result.rtx["v0"] is True and result.rtcp_fb["v0"] == ("nack", "nack pli", "goog-remb")


def test_read_answer_rejected_and_rtx_dropped():
    text = load("chromium_subscribe_answer.sdp")
    text = edit(text, "m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=audio 0 UDP/TLS/RTP/SAVPF 111")
    text = text.replace("UDP/TLS/RTP/SAVPF 96 97", "UDP/TLS/RTP/SAVPF 96")
    text = text.replace("a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n", "")
    text = text.replace("a=group:BUNDLE a0 v0 v1", "a=group:BUNDLE v0 v1")
    result = read(text)
    assert result.accepted == {"a0": False, "v0": True, "v1": False}
    assert result.rtx["v0"] is False and URI_AUDIO_LEVEL not in result.extmap


def test_read_answer_passive_makes_us_dtls_client():
    result = read(load("chromium_subscribe_answer.sdp").replace("setup:active", "setup:passive"))
    assert result.remote.dtls_role == "client"


@pytest.mark.parametrize("old, new, fragment", [
    ("a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
     "a=extmap:9 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "differs"),
    ("a=setup:active", "a=setup:actpass", "actpass"),
    ("a=mid:v0", "a=mid:zz", "does not match"),
    ("m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"
     "a=ice-ufrag", "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98\r\nc=IN IP4 0.0.0.0\r\n"
     "a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag", "adds payload type"),
    ("m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=audio 9 UDP/TLS/RTP/SAVPF 0", "payload type"),
    ("a=group:BUNDLE a0 v0 v1", "a=group:BUNDLE a0", "bundle"),
    ("a=ice-ufrag:", "a=x-ufrag:", "ice-ufrag"),
    ("a=msid-semantic: WMS", "a=ice-lite", "ICE-lite"),
])
def test_read_answer_errors(old, new, fragment):
    with pytest.raises(ValueError, match=fragment):
        read(edit(load("chromium_subscribe_answer.sdp"), old, new))


def test_read_answer_needs_same_section_count():
    desc = offer("chromium_subscribe_answer.sdp")
    desc.media.pop()
    with pytest.raises(ValueError, match="number of m= sections"):
        sdp.read_subscribe_answer(desc, offer(SUB_OFFER))


# --------------------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SDP_PIECES = st.sampled_from([
    "v=0", "o=- 1 2 IN IP4 0.0.0.0", "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "a=rtpmap:", "a=fmtp:", "a=rtcp-fb:*",
    "a=ssrc:", "a=ssrc-group:FID", "a=extmap:", "a=group:BUNDLE", "a=setup:", "a=rid:",
    "a=simulcast:", "a=candidate:", "a=fingerprint:", "a=msid:", " ", ":", "/", ";", "\r",
    "\n", "\r\n", "0", "96", "4294967295", "99999999999999999999999", "-", "\x00", "\u0661",
])


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data):
    try:
        sdp.parse(data)
    except ValueError:
        pass


@FUZZ
@given(st.lists(st.one_of(SDP_PIECES, st.text(max_size=8)), max_size=60))
def test_fuzz_random_text(pieces):
    check_parse_total("".join(pieces))


def check_parse_total(text: str) -> SessionDescription | None:
    """Only ValueError escapes, and whatever parses round-trips exactly."""
    try:
        desc = sdp.parse(text)
    except ValueError:
        return None
    again = sdp.parse(sdp.serialize(desc))
    assert again == desc
    return desc


def mutate(text: str, operations) -> str:
    lines = text.split("\r\n")
    for kind, where, piece in operations:
        index = where % (len(lines) or 1)
        if kind == 0 and lines:
            del lines[index]
        elif kind == 1:
            lines.insert(index, piece)
        elif kind == 2 and lines:
            lines[index] = lines[index] + piece
        elif kind == 3 and lines:
            tokens = lines[index].split(" ")
            tokens[where % len(tokens)] = piece
            lines[index] = " ".join(tokens)
        elif kind == 4 and lines:
            lines.insert(index, lines[(where * 7) % len(lines)])
    return "\r\n".join(lines)


OPERATIONS = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 10_000),
                                st.one_of(SDP_PIECES, st.text(max_size=6))),
                      min_size=1, max_size=6)
PUBLISH_OFFERS = [name for name in CAPTURES if "publish" in name]


@FUZZ
@given(st.sampled_from(PUBLISH_OFFERS), OPERATIONS, st.booleans())
def test_fuzz_publish_offers(name, operations, simulcast):
    desc = check_parse_total(mutate(load(name), operations))
    if desc is None:
        return
    policy = dataclasses.replace(sdp.default_codec_policy(), accept_simulcast=simulcast)
    try:
        result, tracks, _ = sdp.answer_publish(desc, LOCAL, policy)
    except ValueError:
        return
    assert sdp.parse(sdp.serialize(result)) == result
    assert [t.mid for t in tracks] == [m.mid for m in desc.media
                                       if m.kind in ("audio", "video") and m.codecs]


@FUZZ
@given(st.sampled_from(["chromium_subscribe_answer.sdp", "aiortc_subscribe_answer.sdp"]),
       OPERATIONS)
def test_fuzz_subscribe_answers(name, operations):
    desc = check_parse_total(mutate(load(name), operations))
    if desc is None:
        return
    try:
        sdp.read_subscribe_answer(desc, offer(SUB_OFFER))
    except ValueError:
        pass


# Model round trip: any well-formed description survives serialize -> parse unchanged.
TOKEN = st.text(string.ascii_letters + string.digits + "-_+.", min_size=1, max_size=10)
WORDS = st.lists(TOKEN, min_size=1, max_size=3).map(" ".join)
FEEDBACK = st.lists(st.sampled_from(["nack", "nack pli", "ccm fir", "goog-remb",
                                     "transport-cc"]), unique=True).map(tuple)


@st.composite
def codecs(draw):
    pts = draw(st.lists(st.integers(0, 127), min_size=1, max_size=8, unique=True))
    count = draw(st.integers(1, (len(pts) + 1) // 2 if len(pts) > 1 else 1))
    spare = pts[count:]
    result = []
    for pt in pts[:count]:
        rtx = spare.pop() if spare and draw(st.booleans()) else None
        name = draw(TOKEN.filter(lambda n: n.lower() != "rtx" and "." not in n))
        result.append(Codec(pt, name, draw(st.integers(0, 2**32 - 1)),
                            draw(st.none() | st.integers(0, 255)),
                            draw(st.sampled_from(["", "apt=1", "a=1;b=2", "x"])),
                            draw(FEEDBACK), rtx))
    return result


@st.composite
def media_descriptions(draw):
    port = draw(st.sampled_from([0, 9, 5000]))
    bundle_only = draw(st.booleans())
    ssrcs = draw(st.lists(st.integers(0, 2**32 - 1), unique=True, max_size=3))
    return MediaDescription(
        kind=draw(st.sampled_from(["audio", "video"])), mid=draw(TOKEN), port=port,
        protocol="UDP/TLS/RTP/SAVPF", direction=draw(st.sampled_from(sdp.DIRECTIONS)),
        codecs=draw(codecs()),
        extmap=dict(zip(draw(st.lists(TOKEN, unique=True, max_size=3)),
                        draw(st.lists(st.integers(1, 255), unique=True, min_size=3,
                                      max_size=3)))),
        ssrcs=ssrcs,
        ssrc_groups=draw(st.lists(st.tuples(TOKEN, st.lists(st.integers(0, 2**32 - 1),
                                                            max_size=2)), max_size=2)),
        cname=draw(st.none() | TOKEN) if ssrcs else None,
        msid=draw(st.none() | st.tuples(TOKEN, st.just("") | TOKEN)),
        rids=draw(st.lists(TOKEN, max_size=3)), simulcast=draw(st.none() | WORDS),
        ice_ufrag=draw(st.none() | TOKEN), ice_pwd=draw(st.none() | TOKEN),
        fingerprints=draw(st.lists(st.builds(Fingerprint, st.sampled_from(["sha-256", "sha-1"]),
                                             st.text("0123456789ABCDEF:", min_size=1)),
                                   max_size=2)),
        setup=draw(st.none() | st.sampled_from(["actpass", "active", "passive"])),
        candidates=draw(st.lists(WORDS, max_size=2)), rtcp_mux=draw(st.booleans()),
        rtcp_rsize=draw(st.booleans()), bundle_only=bundle_only,
        rejected=port == 0 and not bundle_only,
        other=draw(st.lists(st.builds("x-{}{}".format, TOKEN, st.just("") | TOKEN.map(":{}".format)),
                            max_size=2)),
        end_of_candidates=draw(st.booleans()),
    )


@FUZZ
@given(st.builds(SessionDescription, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
                 st.booleans(), st.lists(TOKEN, max_size=3),
                 st.lists(media_descriptions(), max_size=3),
                 st.lists(TOKEN.map("x-{}".format), max_size=2)))
def test_model_round_trip(desc):
    assert sdp.parse(sdp.serialize(desc)) == desc


def test_many_ssrc_lines_parse_in_linear_time():
    # Found measuring worst-case parse times for the fuzz targets' time bound (tests/fuzz):
    # each a=ssrc line searched the list of SSRCs seen so far, so 512 KiB of them took
    # seconds (1.5 s for 256 KiB on the project's machine).
    lines = [f"a=ssrc:{i} cname:x" for i in range(512 * 1024 // 20)]
    text = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" + "\r\n".join(lines)
    started = time.perf_counter()
    desc = sdp.parse(text)
    assert time.perf_counter() - started < 2.0
    assert desc.media[0].ssrcs == list(range(len(lines)))
