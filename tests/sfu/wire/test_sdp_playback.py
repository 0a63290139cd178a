"""sfu.wire.sdp_playback: answering a player's (WHEP) recvonly offer with one sendonly
slot per kind, the client's payload types, ICE-lite, passive to actpass.

tests/data/chromium_whep_offer.sdp is Chromium 156's offer for
`addTransceiver('audio'|'video', {direction: 'recvonly'})` with max-bundle."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from sfu.wire import sdp
from sfu.wire.sdp_playback import answer_playback

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[2] / "data"
LOCAL = sdp.LocalTransport("srvufrag", "serverpasswordserverpass",
                           [sdp.Fingerprint("sha-256", "AA:" * 31 + "AA")], [("127.0.0.1", 40000)])  # fmt: skip


def answer(text: str, policy: sdp.CodecPolicy | None = None):
    ssrcs = itertools.count(1000)
    return answer_playback(sdp.parse(text), LOCAL, policy or sdp.default_codec_policy(), lambda: next(ssrcs), "stream")


def test_chromium_offer_gets_a_sendonly_slot_per_kind_with_its_payload_types():
    offer = (DATA / "chromium_whep_offer.sdp").read_text()
    description, tracks, remote = answer(offer)
    assert description.ice_lite and description.bundle == ["0", "1"]
    assert [(t.kind, t.mid) for t in tracks] == [("audio", "0"), ("video", "1")]
    audio, video = tracks
    assert (audio.codec.name, audio.codec.payload_type, audio.rtx_ssrc) == ("opus", 111, None)
    offered_vp8 = next(c for c in sdp.parse(offer).media[1].codecs if c.name == "VP8")
    assert (video.codec.payload_type, video.codec.rtx_payload_type) == (offered_vp8.payload_type,
                                                                        offered_vp8.rtx_payload_type)  # fmt: skip
    assert video.extmap.get(sdp.URI_TRANSPORT_CC) and sdp.URI_MID not in video.extmap
    assert remote.dtls_role == "server"  # Chromium offers actpass: we are passive
    reparsed = sdp.parse(sdp.serialize(description))
    for media, track in zip(reparsed.media, tracks):
        assert media.direction == "sendonly" and media.setup == "passive"
        assert media.ssrcs[0] == track.ssrc and media.candidates
    assert reparsed.media[1].ssrc_groups == [("FID", [video.ssrc, video.rtx_ssrc])]


def test_only_the_first_section_of_a_kind_is_a_slot_and_sending_sections_are_rejected():
    offer = (DATA / "chromium_whep_offer.sdp").read_text()
    parsed = sdp.parse(offer)
    extra = sdp.parse(offer).media[1]
    extra.mid = "2"
    parsed.media.append(extra)
    parsed.bundle.append("2")
    parsed.media[0].direction = "sendonly"  # a section that only sends is nothing we can send on
    description, tracks, _ = answer(sdp.serialize(parsed))
    assert [t.mid for t in tracks] == ["1"]
    assert [m.rejected for m in description.media] == [True, False, True]
    assert description.bundle == ["1"]


@pytest.mark.parametrize(
    "mutate, problem",
    [
        (lambda text: text.replace("a=fingerprint", "a=x-fingerprint"), "fingerprint"),
        (lambda text: text.replace("a=rtcp-mux\n", ""), "rtcp-mux"),
        (lambda text: text.replace("a=recvonly", "a=inactive"), "no audio or video"),
        (lambda text: text.replace("a=ice-ufrag", "a=x-ufrag"), "ice-ufrag"),
    ],
)
def test_malformed_or_useless_offers_are_refused_with_the_reason(mutate, problem):
    with pytest.raises(ValueError, match=problem):
        answer(mutate((DATA / "chromium_whep_offer.sdp").read_text()))
