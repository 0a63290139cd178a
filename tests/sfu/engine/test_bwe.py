"""sfu.engine.bwe.BandwidthEstimator on synthetic networks (tests/support/bwe_network.py):
the issue's three required traces, convergence, REMB, wrap-around, and bad feedback."""

from __future__ import annotations

import random

import pytest

from sfu.engine.bwe import BandwidthEstimator, PacketResult
from sfu.wire import rtcp
from tests.support.bwe_network import Link, Simulation

pytestmark = pytest.mark.unit

MS = 1000
S = 1_000_000
STEP_US = 10_000_000


def network(capacity_bps, wanted_bps=3_000_000, queue_bytes=60_000, delay_us=25_000, loss=0.0, seed=1, **options):
    link = Link(capacity_bps, queue_bytes, delay_us, loss=loss, seed=seed)
    return link, Simulation(BandwidthEstimator(), link, wanted_bps=wanted_bps, seed=seed, **options)


# --- the traces ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("frame_rate", [None, 30])
def test_a_step_down_from_2_mbits_to_300_kbits_is_followed_within_2_s(seed, frame_rate):
    link, sim = network(2_000_000, seed=seed, frame_rate=frame_rate)
    sim.run_until(STEP_US)
    assert sim.estimate_at(STEP_US) > 1_500_000
    link.set_capacity(300_000, sim.now_us)
    sim.run_until(STEP_US + 6 * S)
    below = sim.first_time(STEP_US, lambda estimate: estimate < 400_000)
    assert below is not None and below - STEP_US < 2 * S
    # and it stays there, without starving (the queue it built drains first)
    settled = sim.estimates_between(STEP_US + 4 * S, STEP_US + 6 * S)
    assert 150_000 <= min(settled) and max(settled) < 400_000


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("frame_rate", [None, 30])
def test_a_step_up_from_300_kbits_to_2_mbits_is_found_within_10_s(seed, frame_rate):
    link, sim = network(300_000, seed=seed, frame_rate=frame_rate)
    sim.run_until(STEP_US)
    assert sim.estimate_at(STEP_US) < 400_000
    link.set_capacity(2_000_000, sim.now_us)
    sim.run_until(STEP_US + 10 * S)
    above = sim.first_time(STEP_US, lambda estimate: estimate > 1_500_000)
    assert above is not None and above - STEP_US < 10 * S
    assert 1_400_000 < sim.estimator.estimate_bps < 2_400_000


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_five_percent_random_loss_at_ample_capacity_does_not_collapse_the_estimate(seed):
    link, sim = network(5_000_000, wanted_bps=2_000_000, queue_bytes=100_000, loss=0.05, seed=seed)
    sim.run_until(30 * S)
    assert 0.04 < link.lost / (sim.sent_bytes / sim.packet_size) < 0.06
    assert min(sim.estimates_between(10 * S, 30 * S)) > 1_000_000
    assert sim.estimator.estimate_bps >= 2_000_000  # what the sender wants, and then some


# --- convergence --------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "delay_us"), [(1, 5_000), (2, 25_000), (3, 100_000)])
def test_a_steady_1_mbits_link_converges_near_its_capacity(seed, delay_us):
    _, sim = network(1_000_000, delay_us=delay_us, queue_bytes=50_000, seed=seed)
    sim.run_until(30 * S)
    settled = sim.estimates_between(10 * S, 30 * S)
    assert 700_000 <= min(settled) and max(settled) <= 1_100_000


def test_an_application_limited_sender_does_not_inflate_the_estimate_or_keep_probing():
    _, sim = network(5_000_000, wanted_bps=400_000)
    sim.run_until(20 * S)
    # One probe to get above what it wants (from the 300 kbit/s start), then none.
    assert [(cluster.reason, cluster.target_bps) for cluster in sim.clusters] == [("start", 480_000)]
    # AIMD never grows past 1.5 x what the receiver got (+ 10 kbit/s)
    assert 400_000 <= sim.estimator.estimate_bps <= 1.5 * 400_000 + 10_000


def test_probes_lift_the_estimate_at_start():
    _, sim = network(5_000_000)
    sim.run_until(1 * S)
    assert [cluster.reason for cluster in sim.clusters[:2]] == ["start", "continue"]
    assert sim.estimator.estimate_bps > 2_000_000  # from 300 kbit/s in a second
    assert sim.estimator.stats()["probe_successes"] >= 2


# --- REMB -----------------------------------------------------------------------------------


def test_remb_caps_the_estimate():
    _, sim = network(5_000_000)
    sim.run_until(3 * S)
    assert sim.estimator.estimate_bps > 1_000_000
    sim.estimator.on_remb(600_000, sim.now_us)
    assert sim.estimator.estimate_bps == 600_000
    probes_before = len(sim.clusters)
    sim.run_until(6 * S)
    assert max(sim.estimates_between(3 * S + 1, 6 * S)) <= 600_000
    assert len(sim.clusters) == probes_before  # nothing to find above the receiver's cap
    sim.estimator.on_remb(10_000_000, sim.now_us)
    assert sim.estimator.estimate_bps > 600_000


def test_a_client_that_sends_only_remb_gets_its_number():
    estimator = BandwidthEstimator(start_bps=300_000)
    assert estimator.estimate_bps == 300_000
    estimator.on_remb(1_200_000, 0)
    assert estimator.estimate_bps == 1_200_000
    estimator.on_remb(5_000, 1 * S)
    assert estimator.estimate_bps == estimator.min_bps
    estimator.on_remb(-1, 2 * S)  # nonsense: ignored
    assert estimator.estimate_bps == estimator.min_bps


# --- wrap-around --------------------------------------------------------------------------


def test_sequence_and_reference_time_wrap_mid_call():
    reference_wrap_us = (1 << 24) * rtcp.TWCC_REFERENCE_US
    _, sim = network(
        1_000_000,
        queue_bytes=50_000,
        first_seq=65_000,  # 16-bit wrap after ~5 s at 1 Mbit/s
        receiver_clock_us=reference_wrap_us - 8 * S,  # the receiver's 24-bit reference wraps at 8 s
    )
    sim.run_until(20 * S)
    assert sim.estimator.send_log.newest_seq > 65_536
    settled = sim.estimates_between(10 * S, 20 * S)
    assert 700_000 <= min(settled) and max(settled) <= 1_100_000


# --- bad feedback ---------------------------------------------------------------------------


def test_duplicate_and_reordered_feedback_change_nothing():
    estimator = BandwidthEstimator()
    for seq in range(40):
        estimator.on_packet_sent(seq, 1200, seq * 10 * MS)

    def fb(base, count):
        return rtcp.TransportFeedback(1, 2, base, count, 100, 0, [6_400_000 + (base + i) * 10 * MS for i in range(count)])

    estimator.on_transport_feedback(fb(0, 20), 250 * MS)
    estimator.on_transport_feedback(fb(20, 20), 450 * MS)
    before = estimator.stats()
    estimator.on_transport_feedback(fb(0, 20), 460 * MS)  # again
    estimator.on_transport_feedback(fb(10, 30), 470 * MS)  # overlapping both
    after = estimator.stats()
    assert {k: v for k, v in after.items() if k != "feedbacks"} == {k: v for k, v in before.items() if k != "feedbacks"}


def test_feedback_that_is_duplicated_and_reordered_on_the_way_still_converges():
    _, sim = network(1_000_000, queue_bytes=50_000, feedback_faults=0.2)
    sim.run_until(30 * S)
    settled = sim.estimates_between(10 * S, 30 * S)
    assert 700_000 <= min(settled) and max(settled) <= 1_100_000


def test_empty_and_malformed_feedback_is_harmless():
    estimator = BandwidthEstimator()
    estimator.on_transport_feedback(rtcp.TransportFeedback(1, 2, 0, 0, 0, 0, []), 0)  # nothing sent yet
    for seq in range(100):
        estimator.on_packet_sent(seq, 1000, seq * 5 * MS)
    estimator.on_packet_results([], 600 * MS)
    rng = random.Random(11)
    for i in range(300):
        count = rng.randint(0, 60)
        arrivals = [
            None if rng.random() < 0.3 else rng.choice([rng.randint(-(1 << 31), 1 << 31), rng.randint(0, 10 * S)])
            for _ in range(count)
        ]
        feedback = rtcp.TransportFeedback(1, 2, rng.randint(0, 0xFFFF), count, rng.randint(0, 0xFFFFFF), 0, arrivals)
        estimator.on_transport_feedback(feedback, 600 * MS + i * 10 * MS)
        assert estimator.min_bps <= estimator.estimate_bps <= estimator.max_bps
    for _ in range(300):  # random bytes through the real parser
        data = bytes([0x8F, 205]) + bytes(rng.getrandbits(8) for _ in range(rng.randint(2, 60)))
        try:
            members = rtcp.parse_compound(data)
        except ValueError:
            continue
        for member in members:
            if isinstance(member, rtcp.TransportFeedback):
                estimator.on_transport_feedback(member, 5 * S)
    estimator.on_packet_results([PacketResult(10**9, 0, 1000, None)], 6 * S)  # a stray result
    assert estimator.min_bps <= estimator.estimate_bps <= estimator.max_bps


def test_no_feedback_keeps_the_start_estimate():
    estimator = BandwidthEstimator(start_bps=800_000)
    for seq in range(1000):
        estimator.on_packet_sent(seq, 1200, seq * 10 * MS)
    assert estimator.estimate_bps == 800_000
    assert estimator.usage == "normal"


# --- construction -------------------------------------------------------------------------


def test_bounds_and_start_are_constructor_arguments():
    estimator = BandwidthEstimator(start_bps=10, min_bps=50_000, max_bps=1_000_000)
    assert estimator.estimate_bps == 50_000
    assert BandwidthEstimator(start_bps=10**9, max_bps=1_000_000).estimate_bps == 1_000_000
    with pytest.raises(ValueError):
        BandwidthEstimator(min_bps=0)
    with pytest.raises(ValueError):
        BandwidthEstimator(min_bps=2_000_000, max_bps=1_000_000)


def test_the_estimate_never_leaves_its_bounds_on_a_network():
    link = Link(5_000_000, 60_000, 25_000)
    sim = Simulation(BandwidthEstimator(min_bps=100_000, max_bps=1_500_000), link, wanted_bps=10_000_000)
    sim.run_until(5 * S)
    assert max(estimate for _, estimate in sim.timeline) == 1_500_000
    link.set_capacity(50_000, sim.now_us)
    sim.run_until(12 * S)
    assert sim.estimator.estimate_bps == 100_000
    assert all(cluster.target_bps <= 1_500_000 for cluster in sim.clusters)
