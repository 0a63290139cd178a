"""recorder.track: receiver-report statistics (RFC 3550) and telling RTCP from RTP, without
a process. The journal and the manifest are tested beside this file (test_journal.py,
test_manifest.py); the recorder as a process in test_service.py."""

from __future__ import annotations

import pytest

from recorder.track import ReceptionStats, peek_ssrc
from sfu.wire import rtcp, rtp


def test_reception_stats_follow_rfc_3550_across_a_sequence_wrap():
    stats = ReceptionStats(48000)
    seqs = [65530 + i for i in range(6)] + [0, 1, 3, 4]  # 65536..65541 wrap; 2 is lost
    for index, seq in enumerate(seqs):
        stats.on_packet(seq & 0xFFFF, 960 * index, 100.0 + 0.02 * index)
    stats.on_sender_report(rtcp.ntp_from_unix(1_700_000_000.5), 100.1)
    block = stats.report_block(ssrc=42, now=100.6)
    assert block.ssrc == 42
    assert block.highest_sequence == 65536 + 4  # one wrap (cycle count in the high 16 bits)
    assert block.cumulative_lost == 1
    assert block.fraction_lost == (1 << 8) // 11  # 1 of 11 expected, in 1/256
    assert block.jitter < 5  # packets arrive exactly on their timestamps
    assert block.lsr == rtcp.ntp_middle32(rtcp.ntp_from_unix(1_700_000_000.5))
    assert block.dlsr == pytest.approx(0.5 * 65536, abs=2)
    # The next interval counts only what happened since.
    stats.on_packet(5, 960 * 10, 100.2)
    assert stats.report_block(42, 101.0).fraction_lost == 0


def test_rtcp_is_told_from_rtp_and_ssrc_peeked():
    packet = rtp.build_packet(111, 7, 960, 0xDEADBEEF, b"\x01")
    assert not rtp.is_rtcp(packet) and peek_ssrc(packet) == 0xDEADBEEF
    assert rtp.is_rtcp(rtcp.build_pli(1, 2)) and rtp.is_rtcp(rtcp.build_rr(1))
    assert peek_ssrc(b"\x80\x00") is None and peek_ssrc(b"\x00" * 12) is None
