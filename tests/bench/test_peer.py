"""The load generator's pieces without a server: SDP it sends, sequence bookkeeping,
RTP it builds, metrics parsing, histogram percentiles, VP8 payload chunks."""

from __future__ import annotations

import struct
import time
from array import array

import pytest

from bench import scenarios
from bench.media import VP8_CHUNK, MediaParams, chunks
from bench.peer import (
    ABS_SEND_TIME_UNITS,
    LATENCY_BUCKETS,
    _InStream,
    abs_send_time,
    publish_offer,
    subscribe_answer,
)
from bench.report import percentile, percentile_from_histogram
from bench.server import parse_metrics
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


def test_percentiles():
    hist = array("Q", bytes(8 * LATENCY_BUCKETS))
    hist[10] = 50
    hist[100] = 49
    hist[1000] = 1
    assert percentile_from_histogram(hist, 0.5) == pytest.approx(11 * 1e6 / ABS_SEND_TIME_UNITS)
    assert percentile_from_histogram(hist, 0.99) == pytest.approx(101 * 1e6 / ABS_SEND_TIME_UNITS)
    assert percentile_from_histogram(array("Q", bytes(8 * 4)), 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0 and percentile([], 0.5) is None


def test_vp8_frames_are_cut_into_packets_that_fit():
    for size in (1, VP8_CHUNK, VP8_CHUNK + 1, 7 * VP8_CHUNK - 3):
        frame = bytes(range(256)) * (size // 256 + 1)
        frame = frame[:size]
        parts = chunks(frame)
        assert b"".join(parts) == frame
        assert all(0 < len(p) <= VP8_CHUNK for p in parts)
        assert max(map(len, parts)) - min(map(len, parts)) <= len(parts)  # even sizes


def test_metrics_page_is_read_per_worker():
    text = "\n".join(
        [
            "# HELP conclave_worker_packets_sent_total Packets the worker sent",
            'conclave_worker_packets_sent_total{worker="0"} 1234.0',
            'conclave_worker_packets_sent_total{worker="1"} 5.0',
            'conclave_worker_packets_dropped_total{reason="srtp_error",worker="1"} 7.0',
            'conclave_worker_consumers{worker="0"} 32.0',
            'conclave_meetings 3.0',
        ]
    )
    workers = parse_metrics(text)
    assert workers[0].counters == {"packets_sent": 1234.0, "consumers": 32.0}
    assert workers[1].dropped == {"srtp_error": 7.0}


def test_plans_are_bounded_and_shaped():
    assert [len(b.specs) for b in scenarios.fanout(3).batches] == [1, 3]
    assert scenarios.rooms(2, 3).meetings == 2 and scenarios.rooms(2, 3).participants == 6
    assert scenarios.join_storm(5).batches[1].spread_s == 1.0
    with pytest.raises(ValueError):
        scenarios.meeting(scenarios.MAX_PARTICIPANTS + 1)
    assert MediaParams().key() != MediaParams(fps=15).key()
    assert struct.calcsize("!BBHIIHHII") == 24  # RTP header + one-byte extension block


def test_the_sendmmsg_sender_delivers_prebuilt_packets_in_order():
    """bench/plainrtp/mmsg.py: packets built ahead go out in batches, each exactly once, in order."""
    import socket

    from bench.plainrtp.mmsg import PrebuiltStream
    from bench.plainrtp.packets import PacketSource, sequence_number

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(2.0)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        source = PacketSource(0x1234, size=200)
        first_seq = source.seq
        stream = PrebuiltStream(source, sink.getsockname(), budget_bytes=200 * 1000)
        assert stream.prepare(50) == 50
        assert stream.send(out, 30) == 30
        assert stream.prepare(20) == 20  # 20 left over: enough, nothing built
        assert stream.prepare(100) == 100  # the 20 left over come first, then 80 new ones
        assert stream.send(out, 1500) == 100  # more than ready: sends what there is
        assert stream.remaining == 0 and stream.errors == 0
        seqs = []
        for _ in range(130):
            data = sink.recv(2048)
            assert len(data) == 200
            seqs.append(sequence_number(data))
        assert seqs == [(first_seq + i) & 0xFFFF for i in range(130)]
        assert stream.prepare(10**9) == 1000  # bounded by the byte budget
        stream.release()
    finally:
        out.close()
        sink.close()
