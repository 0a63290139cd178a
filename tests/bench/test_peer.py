"""bench.peer, the load generator's peer without a server: the SDP it sends is what the
server's own SDP code accepts, sequence bookkeeping, abs-send-time. The load generator's
other pieces have their files beside this one (test_media, test_report, test_server,
test_scenarios; plainrtp/test_mmsg)."""

from __future__ import annotations

import time

from bench.peer import (
    ABS_SEND_TIME_UNITS,
    _InStream,
    abs_send_time,
    publish_offer,
    subscribe_answer,
)
from sfu.wire import sdp

FINGERPRINT = ("sha-256", ":".join(["AB"] * 32))


def server_local() -> sdp.LocalTransport:
    return sdp.LocalTransport("srvufrag", "s" * 24, [sdp.Fingerprint(*FINGERPRINT)], [("127.0.0.1", 40000)])


def test_the_publish_offer_is_answered_by_the_servers_sdp_code():
    offer, tracks = publish_offer("cliufrag", "c" * 24, FINGERPRINT, {"audio": 11, "video": 22}, "cname", "stream")
    assert tracks == [{"mid": "0", "source": "microphone"}, {"mid": "1", "source": "camera"}]
    answer, published, remote = sdp.answer_publish(sdp.parse(offer), server_local(), sdp.default_codec_policy())
    assert [(t.kind, t.ssrc, t.codec.name, t.active) for t in published] == [("audio", 11, "opus", True), ("video", 22, "VP8", True)]
    # The ids we write abs-send-time and transport-cc with are the ones the server accepts.
    assert published[1].extmap == {sdp.URI_ABS_SEND_TIME: 2, sdp.URI_TRANSPORT_CC: 3}
    assert remote.dtls_role == "server"  # we offered actpass: the server answers passive


def test_the_subscribe_answer_is_accepted_by_the_servers_sdp_code():
    policy = sdp.default_codec_policy()
    tracks = [
        sdp.SubscribeTrack("0", "audio", policy.audio[0], 101, None, "c", "s", "t0", True),
        sdp.SubscribeTrack("1", "video", policy.video[0], 102, 103, "c", "s", "t1", True),
        sdp.SubscribeTrack("2", "video", policy.video[0], 104, 105, "c", "s", "t2", False),
    ]
    offer = sdp.offer_subscribe(server_local(), tracks, policy, 1, 1)
    text = subscribe_answer(sdp.parse(sdp.serialize(offer)), "cliufrag", "c" * 24, FINGERPRINT)
    result = sdp.read_subscribe_answer(sdp.parse(text), offer)
    assert result.accepted == {"0": True, "1": True, "2": False}
    assert result.rtx == {"0": False, "1": False, "2": False}  # NACKs come back as the packet itself
    assert result.extmap == {sdp.URI_ABS_SEND_TIME: 2, sdp.URI_TRANSPORT_CC: 3}
    assert result.remote.dtls_role == "server"  # we answer active: we are the DTLS client


def test_sequence_bookkeeping_counts_gaps_recoveries_and_duplicates():
    stream = _InStream(1, "video", 65530, 0.0)
    skipped = [stream.update(seq) for seq in (65531, 65533, 65532, 65532, 1, 0, 2)]
    assert skipped == [0, 1, -1, -1, 3, -1, 0]  # 65534 and 65535 never come; 0 comes late
    assert (stream.expected, stream.received) == (9, 7)
    assert (stream.gaps, stream.recovered, stream.duplicates) == (2, 2, 1)


def test_abs_send_time_wraps_and_measures_in_18_bit_fractions():
    now = time.time()
    sent = abs_send_time(now)
    later = (abs_send_time(now + 0.001) - sent) & 0xFFFFFF
    assert abs(later * 1e6 / ABS_SEND_TIME_UNITS - 1000) < 8
    assert abs_send_time(64.0) == abs_send_time(0.0)  # 24 bits of 6.18 seconds: a 64 s wheel
