"""sfu.engine.feedback: a subscriber's transport-cc feedback and REMB reach its bandwidth
estimator through `BandwidthIntake`, counted; hostile feedback (huge status counts,
garbage, floods) is counted and dropped before it costs more than the bounds allow; a
transport without an intake (a publisher's) keeps ignoring both."""

from __future__ import annotations

import random
import struct

import pytest

from sfu.engine import feedback
from sfu.engine.bwe import BandwidthEstimator
from sfu.engine.feedback import FEEDBACK_STATUSES_PER_S, MAX_FEEDBACK_STATUSES, BandwidthIntake, handle_rtcp
from sfu.engine.stats import Counters
from sfu.wire import rtcp


class Clock:
    def __init__(self, now_us: int = 10_000_000) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us


def intake(clock: Clock | None = None) -> tuple[BandwidthIntake, BandwidthEstimator, Counters, list[int]]:
    estimator = BandwidthEstimator()
    counters = Counters()
    changes: list[int] = []
    made = BandwidthIntake(estimator, counters, clock or Clock(), lambda: changes.append(estimator.estimate_bps))
    return made, estimator, counters, changes


def sent(estimator: BandwidthEstimator, count: int, first_seq: int = 100, start_us: int = 9_000_000) -> None:
    for index in range(count):
        estimator.on_packet_sent(first_seq + index, 1200, start_us + index * 5000)


def twcc(base: int, arrivals: list[int | None], reference_us: int = 5_000_000) -> bytes:
    return rtcp.build_transport_feedback(0xAAAA, 0xBBBB, base, 0, reference_us, arrivals)


def huge_twcc(status_count: int) -> bytes:
    """A 24-byte member announcing `status_count` packets, all "not received", in run
    length chunks of 8191 (what an attacker sends: every status costs us, not them)."""
    chunks = b"".join(struct.pack("!H", min(8191, status_count - done)) for done in range(0, status_count, 8191))
    body = struct.pack("!IIHHI", 0xAAAA, 0xBBBB, 1, status_count, 0) + chunks
    body += bytes(-len(body) % 4)
    return struct.pack("!BBH", 0x80 | 15, rtcp.RTCP_RTPFB, len(body) // 4) + body


def test_transport_feedback_reaches_the_estimator_with_the_receiver_report_beside_it():
    made, estimator, counters, changes = intake()
    sent(estimator, 20)
    compound = rtcp.build_rr(0xAAAA, []) + twcc(100, [5_000_000 + i * 5000 for i in range(20)])
    handle_rtcp(compound, {}, {}, counters, made)
    assert estimator.feedbacks == 1 and estimator.stats()["acked_bps"] > 0
    assert counters.transport_feedback_received == 1 and sum(counters.dropped.values()) == 0
    assert len(changes) == 1  # told after each member that reached the estimator


def test_remb_caps_the_estimate_and_is_told():
    made, estimator, counters, changes = intake()
    handle_rtcp(rtcp.build_remb(0xAAAA, 150_000, [0xBBBB]), {}, {}, counters, made)
    assert estimator.remb_bps == 150_000 and estimator.estimate_bps == 150_000
    assert counters.remb_received == 1 and changes == [150_000]


def test_other_application_feedback_is_not_remb():
    made, estimator, counters, changes = intake()
    afb = struct.pack("!BBHII", 0x80 | 15, rtcp.RTCP_PSFB, 3, 0xAAAA, 0) + b"GOOG"
    handle_rtcp(afb, {}, {}, counters, made)
    assert estimator.remb_bps is None and counters.remb_received == 0 and changes == []


def test_without_an_intake_both_are_ignored_as_before():
    counters = Counters()
    handle_rtcp(twcc(1, [1000]) + rtcp.build_remb(1, 100_000, []) + huge_twcc(65535), {}, {}, counters)
    assert counters.transport_feedback_received == counters.remb_received == 0
    assert sum(counters.dropped.values()) == 0


def test_a_feedback_announcing_more_statuses_than_the_bound_is_dropped_unparsed(monkeypatch):
    made, estimator, counters, _ = intake()
    parsed = []
    real = rtcp.parse_compound
    monkeypatch.setattr(feedback.rtcp, "parse_compound", lambda data, only=None: parsed.append(data) or real(data, only))
    handle_rtcp(huge_twcc(65535), {}, {}, counters, made)
    assert len(parsed) == 1  # the compound only, never the member
    assert counters.dropped["feedback_over_budget"] == 1 and estimator.feedbacks == 0
    handle_rtcp(huge_twcc(MAX_FEEDBACK_STATUSES), {}, {}, counters, made)
    assert estimator.feedbacks == 1  # at the bound: parsed (it matches nothing sent)


def test_a_flood_gets_a_bounded_number_of_statuses_per_second_then_the_budget_refills():
    clock = Clock()
    made, estimator, counters, _ = intake(clock)
    member = huge_twcc(4000)
    for _ in range(100):
        handle_rtcp(member, {}, {}, counters, made)
    admitted = FEEDBACK_STATUSES_PER_S // 4000
    assert estimator.feedbacks == admitted and counters.dropped["feedback_over_budget"] == 100 - admitted
    assert counters.transport_feedback_received == 100
    clock.now_us += 200_000  # a fifth of a second: a fifth of the budget back
    for _ in range(10):
        handle_rtcp(member, {}, {}, counters, made)
    assert estimator.feedbacks == admitted + 1


def test_honest_feedback_at_a_high_rate_is_never_refused():
    clock = Clock()
    made, estimator, counters, _ = intake(clock)
    seq = 0
    for _ in range(100):  # 10 s of feedback every 100 ms, 1500 packets each: 15,000 pkt/s
        sent(estimator, 1500, seq, clock.now_us - 100_000)
        handle_rtcp(twcc(seq & 0xFFFF, [1_000_000 + i * 60 for i in range(1500)]), {}, {}, counters, made)
        seq += 1500
        clock.now_us += 100_000
    assert counters.dropped["feedback_over_budget"] == 0 and estimator.feedbacks == 100


@pytest.mark.parametrize(
    "member",
    [
        struct.pack("!BBH", 0x80 | 15, rtcp.RTCP_RTPFB, 2) + bytes(8),  # no twcc header
        struct.pack("!BBHIIHHI", 0x80 | 15, rtcp.RTCP_RTPFB, 4, 1, 2, 0, 10, 0),  # chunks missing
        struct.pack("!BBHIIHHIH", 0x80 | 15, rtcp.RTCP_RTPFB, 5, 1, 2, 0, 0, 0, 0) + bytes(2),  # 0 statuses
        struct.pack("!BBHII", 0x80 | 15, rtcp.RTCP_PSFB, 4, 1, 0) + b"REMB" + bytes([5, 0, 0, 0]),  # 5 SSRCs, none there
    ],
)
def test_malformed_feedback_is_counted_and_dropped(member):
    made, estimator, counters, changes = intake()
    member += bytes(-len(member) % 4)
    member = member[:2] + struct.pack("!H", len(member) // 4 - 1) + member[4:]
    handle_rtcp(member, {}, {}, counters, made)
    assert counters.dropped["malformed_feedback"] == 1 and estimator.feedbacks == 0 and changes == []


def test_random_garbage_in_feedback_members_never_raises():
    rng = random.Random(11)
    made, estimator, counters, _ = intake()
    sent(estimator, 50)
    for _ in range(2000):
        body = bytes(rng.getrandbits(8) for _ in range(4 * rng.randint(2, 12)))
        packet_type = rng.choice((rtcp.RTCP_RTPFB, rtcp.RTCP_PSFB))
        handle_rtcp(struct.pack("!BBH", 0x80 | 15, packet_type, len(body) // 4) + body, {}, {}, counters, made)
    assert counters.transport_feedback_received + counters.remb_received + counters.dropped["malformed_feedback"] > 0
