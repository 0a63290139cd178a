"""sfu.engine.feedback: RTCP a transport received, routed to its producers and consumers.
Members the SFU does not act on are not parsed (a transport-cc member can announce 65,535
statuses in 40 bytes); the NACKs of one compound reach each consumer once, together."""

from __future__ import annotations

import struct

import pytest

from sfu.engine import feedback
from sfu.engine.stats import Counters
from sfu.wire import rtcp


def transport_cc_bomb() -> bytes:
    """A transport-cc member announcing 65,535 packets, none received (9 run-length chunks)."""
    body = struct.pack("!II", 1, 2) + struct.pack("!HHI", 0, 0xFFFF, 0) + struct.pack("!H", 0x1FFF) * 9
    body += bytes(-len(body) % 4)
    return struct.pack("!BBH", 0x80 | rtcp.RTPFB_TRANSPORT_CC, rtcp.RTCP_RTPFB, len(body) // 4) + body


def test_members_the_sfu_ignores_are_not_parsed(monkeypatch):
    bomb = transport_cc_bomb()
    assert len(rtcp.parse_compound(bomb)[0].arrivals) == 0xFFFF  # what a full parse would build

    def refuse(*args):
        raise AssertionError("parsed a member the SFU does not use")

    monkeypatch.setattr(rtcp, "_parse_transport_feedback", refuse)
    monkeypatch.setattr(rtcp, "_report_blocks", refuse)
    counters = Counters()
    compound = rtcp.build_rr(1, [rtcp.ReportBlock(5, 0, 0, 0, 0, 0, 0)]) + bomb * 30
    feedback.handle_rtcp(compound, {}, {}, counters)
    assert counters.rtcp_received == 1 and counters.dropped["malformed_rtcp"] == 0


class Recording:
    def __init__(self) -> None:
        self.calls: list[list[tuple[int, int]]] = []

    def on_nack(self, pairs):
        self.calls.append(list(pairs))


def test_the_nacks_of_one_compound_reach_each_consumer_once():
    a, b = Recording(), Recording()
    compound = (
        rtcp.build_nack(1, 10, [5, 6])
        + rtcp.build_nack(1, 20, [100])
        + rtcp.build_nack(1, 10, [5, 40])
        + rtcp.build_nack(1, 99, [1])  # nobody's: ignored
    )
    feedback.handle_rtcp(compound, {}, {10: a, 20: b}, Counters())
    assert a.calls == [[(5, 1), (5, 0), (40, 0)]]
    assert b.calls == [[(100, 0)]]


@pytest.mark.parametrize("garbage", [b"\x81\xcd\x00\x05" + bytes(8), b"\x80"])
def test_malformed_rtcp_is_counted(garbage):
    counters = Counters()
    feedback.handle_rtcp(garbage, {}, {}, counters)
    assert counters.dropped["malformed_rtcp"] == 1
