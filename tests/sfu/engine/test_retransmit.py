"""sfu.engine.retransmit (the NACK budget, a pure class fed a time) and Consumer.on_nack
using it: the budget per second follows what the consumer forwarded, with a floor;
repeats within the interval are refused; NACKs for old packets are refused; a flood is
refused in bulk, unexpanded; every refusal is counted by reason."""

from __future__ import annotations

import pytest

from sfu.engine import feedback
from sfu.engine.nack_cache import PacketCache
from sfu.engine.retransmit import (
    ANSWER,
    EXAMINED_PER_BUDGETED_PACKET,
    REFUSED_BUDGET,
    REFUSED_DUPLICATE,
    RetransmitBudget,
    RetransmitPolicy,
)
from sfu.wire import rtcp, rtp
from tests.support.engine import VP8_KEY, FakeClock, Sink, header, make_consumer, make_producer, packet

POLICY = RetransmitPolicy(ratio=2.0, min_packets_per_s=10, min_bytes_per_s=10_000, max_age_s=1.0, repeat_interval_s=0.1)


# --- the budget alone --------------------------------------------------------------------------


def test_the_floor_holds_before_anything_was_forwarded():
    budget = RetransmitBudget(POLICY, since=100.0)
    budget.start(100.0, 0, 0)
    verdicts = [budget.admit(seq, 100) for seq in range(15)]
    assert verdicts == [ANSWER] * 10 + [REFUSED_BUDGET] * 5


def test_the_byte_floor_holds_too():
    budget = RetransmitBudget(POLICY, since=100.0)
    budget.start(100.0, 0, 0)
    assert [budget.admit(seq, 4000) for seq in range(4)] == [ANSWER, ANSWER, REFUSED_BUDGET, REFUSED_BUDGET]


def test_the_budget_is_twice_what_was_forwarded_last_second_and_refills_each_second():
    budget = RetransmitBudget(POLICY, since=100.0)
    budget.start(100.0, 0, 0)
    # 100 packets of 1000 bytes forwarded during the first second: 200 packets, 200 kB next.
    budget.start(101.0, 100, 100_000)
    assert budget.packet_limit == 200 and budget.byte_limit == 200_000
    answered = sum(budget.admit(seq, 1000) == ANSWER for seq in range(300))
    assert answered == 200
    budget.start(101.5, 150, 150_000)  # same window: nothing more
    assert budget.admit(1000, 1000) == REFUSED_BUDGET
    budget.start(102.0, 200, 200_000)  # a new second: 100 forwarded in the last one
    assert sum(budget.admit(2000 + seq, 1000) == ANSWER for seq in range(300)) == 200


def test_this_second_counts_when_it_forwarded_more_than_the_last():
    budget = RetransmitBudget(POLICY, since=100.0)
    budget.start(100.0, 0, 0)
    budget.start(100.5, 50, 50_000)  # a stream that just started: 50 so far this second
    assert budget.packet_limit == 100


def test_a_number_answered_moments_ago_is_a_duplicate_until_the_interval_passes():
    budget = RetransmitBudget(POLICY, since=100.0)
    budget.start(101.0, 2000, 2_000_000)
    assert budget.admit(7, 100) == ANSWER
    assert budget.admit(7, 100) == REFUSED_DUPLICATE  # twice in one compound
    budget.start(101.05, 2050, 2_050_000)
    assert budget.admit(7, 100) == REFUSED_DUPLICATE  # asked again 50 ms later
    budget.start(101.099, 2100, 2_100_000)
    assert budget.admit(7, 100) == REFUSED_DUPLICATE
    budget.start(101.11, 2100, 2_100_000)
    assert budget.admit(7, 100) == ANSWER  # an interval later: the first copy was lost too
    budget.start(102.5, 3000, 3_000_000)  # a new window forgets what is older than the interval
    assert budget.answered == {}


def test_examining_is_bounded_per_second():
    budget = RetransmitBudget(POLICY, since=100.0)
    budget.start(100.0, 0, 0)
    examined = 0
    while budget.may_examine():
        examined += 1
        assert examined <= 1000
    assert examined == EXAMINED_PER_BUDGETED_PACKET * POLICY.min_packets_per_s
    budget.start(101.0, 0, 0)
    assert budget.may_examine()


def test_a_policy_refuses_nonsense():
    with pytest.raises(ValueError):
        RetransmitPolicy(max_age_s=0)


# --- a consumer answering NACKs -----------------------------------------------------------------


def flowing(count, clock, policy=POLICY):
    """A producer with a consumer that forwarded `count` video packets (one 10 ms apart in RTP time)."""
    producer, counters = make_producer(clock=clock)
    producer.retransmit_policy = policy
    producer.cache = PacketCache(1024)
    sink = Sink()
    consumer = make_consumer(producer, counters, sink)
    for seq in range(count):
        producer.on_rtp(packet(seq, ts=seq * 900, payload=VP8_KEY if seq == 0 else b"\x10\x01" + b"d" * 1000), 1111)
    return producer, consumer, counters, sink


def out_seqs(sink, count):
    return [header(p).sequence_number for p in sink.rtp[:count]]


def test_the_attack_compound_buys_at_most_the_budget():
    """All 1,024 cached packets, named five times in one 1.3 KB compound."""
    clock = FakeClock()
    _, consumer, counters, sink = flowing(1024, clock)
    seqs = out_seqs(sink, 1024)
    compound = b"".join(rtcp.build_nack(1, consumer.ssrc, seqs) for _ in range(5))
    assert len(compound) < 1400
    forwarded = len(sink.rtp)
    clock.now += 1.0
    feedback.handle_rtcp(compound, {}, {consumer.ssrc: consumer}, counters)
    sent_again = len(sink.rtp) - forwarded
    # Only the last second of RTP time (101 packets 10 ms apart), once; the older ones
    # are refused each time they are named, the recent ones the four times after the first.
    assert sent_again == counters.nack_answered == 101
    assert counters.nack_refused_too_old == 5 * (1024 - 101)
    assert counters.nack_refused_duplicate == 4 * 101
    assert counters.nack_requested == 5 * 1024 and counters.nack_refused_budget == 0


def test_a_flood_is_refused_within_the_budget_and_unexpanded_past_the_look():
    clock = FakeClock()
    policy = RetransmitPolicy(ratio=2.0, min_packets_per_s=10, min_bytes_per_s=10_000, max_age_s=30.0, repeat_interval_s=0.1)
    _, consumer, counters, sink = flowing(1024, clock, policy)
    seqs = out_seqs(sink, 1024)
    compound = b"".join(rtcp.build_nack(1, consumer.ssrc, seqs) for _ in range(5))
    clock.now += 1.0
    before = len(sink.rtp)
    for _ in range(50):  # 50 compounds within one second
        clock.now += 0.02
        feedback.handle_rtcp(compound, {}, {consumer.ssrc: consumer}, counters)
    limit = consumer.retransmits.packet_limit
    assert limit == int(2 * 1024 / 1.02)  # twice the rate forwarded before this second
    # The first compound is answered, each number once; the second is all repeats; from
    # the third on, the second's look at NACKs is used up: refused unexamined.
    assert len(sink.rtp) - before == counters.nack_answered == 1024 <= limit
    assert counters.nack_requested == 50 * 5 * 1024
    assert counters.nack_answered + counters.nack_refused_duplicate + counters.nack_refused_budget == 50 * 5 * 1024
    # Looked at one by one: at most EXAMINED_PER_BUDGETED_PACKET x the budget; the rest in bulk.
    assert consumer.retransmits.examined <= EXAMINED_PER_BUDGETED_PACKET * limit


def test_a_normal_loss_is_answered_as_before():
    clock = FakeClock()
    _, consumer, counters, sink = flowing(200, clock)
    lost = out_seqs(sink, 200)[150]
    clock.now += 0.5
    feedback.handle_rtcp(rtcp.build_nack(1, consumer.ssrc, [lost]), {}, {consumer.ssrc: consumer}, counters)
    restored = rtp.unwrap_rtx(sink.rtp[-1], 96, 5555)
    assert restored == sink.rtp[150] and counters.nack_answered == 1
    # The client asks again at once (its copy is on the way): not sent twice.
    feedback.handle_rtcp(rtcp.build_nack(1, consumer.ssrc, [lost]), {}, {consumer.ssrc: consumer}, counters)
    assert counters.nack_answered == 1 and counters.nack_refused_duplicate == 1
    clock.now += 0.3  # lost again: asked once more later, answered
    feedback.handle_rtcp(rtcp.build_nack(1, consumer.ssrc, [lost]), {}, {consumer.ssrc: consumer}, counters)
    assert counters.nack_answered == 2


def test_a_nack_for_an_audio_stream_without_losses_dates_packets_by_its_own_clock():
    clock = FakeClock()
    producer, counters = make_producer(kind="audio", clock=clock)
    producer.cache = PacketCache(1024)
    sink = Sink()
    consumer = make_consumer(producer, counters, sink)
    for seq in range(100):  # 2 s of 20 ms frames
        producer.on_rtp(packet(seq, ts=seq * 960, pt=109, payload=b"a" * 80), 1111)
    seqs = out_seqs(sink, 100)
    feedback.handle_rtcp(rtcp.build_nack(1, consumer.ssrc, [seqs[10], seqs[90]]), {}, {consumer.ssrc: consumer}, counters)
    assert counters.nack_refused_too_old == 1 and counters.nack_answered == 1
