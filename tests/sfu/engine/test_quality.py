"""sfu.engine.quality: a transport's report window from RTCP report blocks, on a fake
clock: loss and jitter from the peer's blocks and from our own reception, the round trip
from LSR/DLSR against when our SR left; and the routing of a subscriber's RR to it
(sfu.engine.feedback.handle_rtcp)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sfu.engine import feedback
from sfu.engine.quality import MAX_SENT_REPORTS, LinkQuality
from sfu.engine.stats import Counters
from sfu.wire import rtcp

pytestmark = pytest.mark.unit

VIDEO_CLOCK = 90_000


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def block(ssrc: int = 7, fraction: int = 0, jitter: int = 0, lsr: int = 0, dlsr: int = 0) -> rtcp.ReportBlock:
    return rtcp.ReportBlock(ssrc, fraction, 0, 1000, jitter, lsr, dlsr)


def test_an_empty_window_says_nothing():
    assert LinkQuality(Clock()).take() is None


def test_loss_is_the_mean_of_the_blocks_and_the_worst_is_kept():
    quality = LinkQuality(Clock())
    quality.peer_report(block(fraction=64), VIDEO_CLOCK)  # 25 %
    quality.peer_report(block(fraction=0), 48_000)
    window = quality.take()
    assert window == {"loss_ratio": 0.125, "loss_max": 0.25, "jitter_s": 0.0, "rtt_s": -1.0, "blocks": 2}
    assert quality.take() is None  # a new window


def test_jitter_in_seconds_by_each_stream_s_clock_the_worst_one():
    quality = LinkQuality(Clock())
    quality.peer_report(block(jitter=900), VIDEO_CLOCK)  # 10 ms
    quality.peer_report(block(jitter=960), 48_000)  # 20 ms
    quality.peer_report(block(jitter=0xFFFFFFFF), 8000)  # days: a jump, not jitter
    assert quality.take()["jitter_s"] == pytest.approx(0.02)


def test_round_trip_from_lsr_and_dlsr_against_when_our_sr_left():
    clock = Clock(100.0)
    quality = LinkQuality(clock)
    ntp = rtcp.ntp_from_unix(1_700_000_000.25)  # the publisher's wall clock: not ours
    quality.sender_report_sent(rtcp.ntp_middle32(ntp))
    clock.now = 100.5
    # The subscriber held it 0.3 s (DLSR in 1/65536 s): the path took 0.2 s both ways.
    quality.peer_report(block(lsr=rtcp.ntp_middle32(ntp), dlsr=int(0.3 * 65536)), VIDEO_CLOCK)
    assert quality.take()["rtt_s"] == pytest.approx(0.2, abs=1e-4)


def test_an_lsr_we_never_sent_or_an_impossible_round_trip_is_no_measurement():
    clock = Clock(100.0)
    quality = LinkQuality(clock)
    quality.sender_report_sent(0x12345678)
    clock.now = 101.0
    quality.peer_report(block(lsr=0x0BADF00D, dlsr=0), VIDEO_CLOCK)  # not ours
    quality.peer_report(block(lsr=0x12345678, dlsr=5 * 65536), VIDEO_CLOCK)  # held longer than it existed
    quality.peer_report(block(lsr=0, dlsr=0), VIDEO_CLOCK)  # no SR reached it yet
    window = quality.take()
    assert window["rtt_s"] == -1.0 and window["blocks"] == 3


def test_the_sent_reports_remembered_are_bounded_oldest_forgotten_first():
    clock = Clock(0.0)
    quality = LinkQuality(clock)
    for n in range(MAX_SENT_REPORTS + 5):
        quality.sender_report_sent(1000 + n)
    clock.now = 1.0
    quality.peer_report(block(lsr=1000), VIDEO_CLOCK)  # evicted
    assert quality.take()["rtt_s"] == -1.0
    quality.peer_report(block(lsr=1000 + MAX_SENT_REPORTS + 4), VIDEO_CLOCK)
    assert quality.take()["rtt_s"] == pytest.approx(1.0)


def test_our_reception_counts_like_the_peer_s_reports():
    quality = LinkQuality(Clock())
    quality.own_reception(block(fraction=128, jitter=4800), 48_000)
    assert quality.take() == {"loss_ratio": 0.5, "loss_max": 0.5, "jitter_s": 0.1, "rtt_s": -1.0, "blocks": 1}


def consumer(ssrc: int, rtx_ssrc: int, clock_rate: int) -> SimpleNamespace:
    params = SimpleNamespace(clock_rate=clock_rate)
    return SimpleNamespace(ssrc=ssrc, rtx_ssrc=rtx_ssrc, producer=SimpleNamespace(params=params))


def test_a_subscriber_s_rr_about_our_streams_reaches_the_link_quality():
    clock = Clock(50.0)
    quality = LinkQuality(clock)
    video = consumer(0xAAAA, 0xBBBB, VIDEO_CLOCK)
    compound = rtcp.build_rr(1, [
        block(0xAAAA, fraction=51, jitter=1800),
        block(0xBBBB, fraction=255),  # its RTX: never judged alone
        block(0xCCCC, fraction=255),  # nobody's
    ]) + rtcp.build_sdes(1, "x")  # fmt: skip
    feedback.handle_rtcp(compound, {}, {0xAAAA: video, 0xBBBB: video}, Counters(), quality=quality)
    window = quality.take()
    assert window["blocks"] == 1
    assert window["loss_ratio"] == pytest.approx(51 / 256, abs=1e-4)
    assert window["jitter_s"] == pytest.approx(0.02)


def test_report_blocks_of_a_subscriber_s_sr_count_too():
    quality = LinkQuality(Clock())
    compound = rtcp.build_sr(1, rtcp.ntp_from_unix(1.0), 0, 0, 0, [block(0xAAAA, fraction=26)])
    feedback.handle_rtcp(compound, {}, {0xAAAA: consumer(0xAAAA, 0, VIDEO_CLOCK)}, Counters(), quality=quality)
    assert quality.take()["blocks"] == 1


def test_our_receiver_reports_feed_our_reception():
    quality = LinkQuality(Clock())
    made = rtcp.ReportBlock(0x99, 64, 3, 100, 900, 0, 0)
    producer = SimpleNamespace(report_blocks=lambda: [made], params=SimpleNamespace(clock_rate=VIDEO_CLOCK))
    packets = feedback.receiver_reports(1, "cname", [producer], quality)
    assert len(packets) == 1
    assert quality.take() == {"loss_ratio": 0.25, "loss_max": 0.25, "jitter_s": 0.01, "rtt_s": -1.0, "blocks": 1}
