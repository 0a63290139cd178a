"""sfu.engine.bwe.send_log: what we sent, matched against transport-wide feedback."""

from __future__ import annotations

import pytest

from sfu.engine.bwe.send_log import SendLog
from sfu.wire import rtcp

pytestmark = pytest.mark.unit

REFERENCE_WRAP_US = (1 << 24) * rtcp.TWCC_REFERENCE_US


def feedback(base: int, arrivals: list[int | None]) -> rtcp.TransportFeedback:
    """Through the real wire format: built, then parsed, as the worker will see it."""
    (parsed,) = rtcp.parse_compound(rtcp.build_transport_feedback(1, 2, base, 0, _first(arrivals), arrivals))
    return parsed


def _first(arrivals):
    return next(a for a in arrivals if a is not None)


def test_feedback_is_matched_to_what_was_sent():
    log = SendLog()
    for i in range(4):
        log.on_sent(100 + i, 1000 + i, 10_000 * i, probe_cluster=7 if i == 2 else None)
    results = log.match(feedback(100, [5_000_000, None, 5_020_000, 5_031_000]))
    assert [(r.seq, r.send_us, r.size, r.probe_cluster) for r in results] == [
        (100, 0, 1000, None),
        (101, 10_000, 1001, None),
        (102, 20_000, 1002, 7),
        (103, 30_000, 1003, None),
    ]
    assert results[1].arrival_us is None
    arrivals = [r.arrival_us for r in results if r.arrival_us is not None]
    assert [a - arrivals[0] for a in arrivals] == [0, 20_000, 31_000]


def test_sequence_numbers_unwrap_across_65535():
    log = SendLog()
    sent = [65533, 65534, 65535, 0, 1, 2]
    unwrapped = [log.on_sent(seq, 500, 1000 * i) for i, seq in enumerate(sent)]
    assert unwrapped == [65533, 65534, 65535, 65536, 65537, 65538]
    results = log.match(feedback(65534, [1_000_000 + 1000 * i for i in range(4)]))
    assert [r.seq for r in results] == [65534, 65535, 65536, 65537]
    assert [r.send_us for r in results] == [1000, 2000, 3000, 4000]


def test_the_reference_time_wraps_without_a_jump_in_arrival_times():
    log = SendLog()
    for seq in range(4):
        log.on_sent(seq, 500, 10_000 * seq)
    # The receiver's clock crosses the 24-bit reference time wrap between two feedbacks.
    before = REFERENCE_WRAP_US - rtcp.TWCC_REFERENCE_US  # the last tick before the wrap
    first = log.match(feedback(0, [before, before + 10_000]))
    second = log.match(feedback(2, [REFERENCE_WRAP_US + 20_000, REFERENCE_WRAP_US + 30_000]))
    arrivals = [r.arrival_us for r in first + second]
    assert [b - a for a, b in zip(arrivals, arrivals[1:])] == [10_000, 74_000, 10_000]


def test_each_packet_is_reported_once_and_a_late_arrival_is_marked_recovered():
    log = SendLog()
    for seq in range(3):
        log.on_sent(seq, 500, 1000 * seq)
    first = log.match(feedback(0, [1_000_000, None, 1_002_000]))
    assert [(r.seq, r.arrival_us is None) for r in first] == [(0, False), (1, True), (2, False)]
    assert log.match(feedback(0, [1_000_000, None, 1_002_000])) == []  # the same feedback again
    late = log.match(feedback(1, [1_003_000]))  # reported lost, arrived after all
    assert [(r.seq, r.recovered) for r in late] == [(1, True)]
    assert log.match(feedback(1, [None, 1_002_000])) == []  # older news


def test_unknown_future_and_overwritten_numbers_are_ignored():
    log = SendLog(capacity=8)
    for seq in range(20):
        log.on_sent(seq, 500, 1000 * seq)
    # 0..11 were overwritten by 8..19; 20.. were never sent.
    results = log.match(feedback(10, [1_000_000 + i for i in range(15)]))
    assert [r.seq for r in results] == list(range(12, 20))
    assert SendLog().match(feedback(0, [1_000_000])) == []  # nothing sent yet


def test_empty_or_odd_feedback_is_harmless():
    log = SendLog()
    log.on_sent(5, 500, 0)
    empty = rtcp.TransportFeedback(1, 2, 5, 0, 0, 0, [])
    assert log.match(empty) == []
    far = rtcp.TransportFeedback(1, 2, 40_000, 3, 0xFFFFFF, 255, [1, None, -5])
    assert log.match(far) == []


def test_capacity_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        SendLog(capacity=1000)
    assert SendLog(capacity=1024).capacity == 1024


def test_sent_totals_are_counted():
    log = SendLog()
    log.on_sent(1, 700, 0)
    log.on_sent(2, 300, 10)
    assert (log.sent_bytes, log.newest_seq) == (1000, 2)
    assert log.send_time(2) == 10
    assert log.send_time(3) is None
