"""sfu.engine.bwe.rate: acknowledged bitrate, AIMD rate control, the loss-based cap."""

from __future__ import annotations

import pytest

from sfu.engine.bwe import rate
from sfu.engine.bwe.delay import NORMAL, OVERUSING, UNDERUSING
from sfu.engine.bwe.rate import AckedBitrate, AimdRateControl, LinkCapacity, LossBasedControl

pytestmark = pytest.mark.unit

MS = 1000
S = 1_000_000


# --- acknowledged bitrate ------------------------------------------------------------------


def test_acked_bitrate_is_bytes_over_receive_time():
    acked = AckedBitrate()
    assert acked.update() is None
    for i in range(50):  # 1000 bytes every 10 ms: 800 kbit/s
        acked.add(5 * S + i * 10 * MS, 1000)
    assert acked.update() == pytest.approx(800_000)
    assert acked.bps == pytest.approx(800_000)


def test_acked_bitrate_follows_the_newest_window():
    acked = AckedBitrate()
    for i in range(100):
        acked.add(i * 4 * MS, 1000)  # 2 Mbit/s for 400 ms
    for i in range(1, 41):
        acked.add(400 * MS + i * 32 * MS, 1200)  # then 300 kbit/s
        acked.update()  # a feedback every packet: the window slides the same
    assert acked.bps == pytest.approx(300_000, rel=0.01)


def test_acked_bitrate_widens_its_window_at_low_rates():
    acked = AckedBitrate()
    for i in range(12):
        acked.add(i * 250 * MS, 1000)  # 4 packets/s: 32 kbit/s
    assert acked.update() == pytest.approx(32_000, rel=0.01)


def test_a_late_report_far_in_the_past_is_ignored():
    acked = AckedBitrate()
    for i in range(20):
        acked.add(10 * S + i * 10 * MS, 1000)
    before = acked.update()
    acked.add(5 * S, 1_000_000)
    assert acked.update() == before


# --- AIMD ------------------------------------------------------------------------------------


def aimd(start=1_000_000) -> AimdRateControl:
    return AimdRateControl(start, 30_000, 20_000_000)


def test_overuse_backs_off_to_085_of_the_acknowledged_rate_then_holds():
    control = aimd(2_000_000)
    assert control.update(OVERUSING, 1_000_000, 1 * S, 100 * MS) == pytest.approx(850_000)
    assert control.state == rate.HOLD
    assert control.update(UNDERUSING, 1_000_000, 2 * S, 100 * MS) == pytest.approx(850_000)
    assert control.capacity.estimate_kbps == pytest.approx(1000)


def test_overuse_never_raises_the_estimate():
    control = aimd(500_000)
    assert control.update(OVERUSING, 1_000_000, 1 * S, 100 * MS) == 500_000


def test_far_from_a_known_ceiling_the_increase_is_multiplicative():
    control = aimd(1_000_000)
    # hold → increase: at least 1 kbit/s per update
    assert control.update(NORMAL, 1_000_000, 0, 100 * MS) == 1_001_000
    assert control.update(NORMAL, 1_000_000, 1 * S, 100 * MS) == pytest.approx(1_001_000 * 1.08)
    # at most a second's worth however long the gap
    assert control.update(NORMAL, 1_000_000, 5 * S, 100 * MS) == pytest.approx(1_001_000 * 1.08**2)


def test_near_the_last_congestion_the_increase_is_additive():
    control = aimd(1_000_000)
    control.update(OVERUSING, 1_000_000, 0, 100 * MS)  # 850 kbit/s, ceiling ~1 Mbit/s
    control.update(NORMAL, 900_000, 1 * S, 100 * MS)
    after = control.update(NORMAL, 900_000, 2 * S, 100 * MS)
    # 850 kbit/s at 30 fps: 3542-byte frames in 3 packets of ~1181 bytes; response time
    # 2 * (100 + 100) ms: ~23.6 kbit/s per second
    assert after - 850_000 == pytest.approx(850_000 / 30 / 3 / 0.4, rel=0.01)


def test_increase_is_capped_by_what_the_receiver_got():
    control = aimd(1_000_000)
    control.update(NORMAL, 200_000, 0, 100 * MS)
    assert control.update(NORMAL, 200_000, 1 * S, 100 * MS) == 1_000_000  # above 1.5 × 200k + 10k
    control = aimd(300_000)
    control.update(NORMAL, 200_000, 0, 100 * MS)
    assert control.update(NORMAL, 200_000, 1 * S, 100 * MS) == pytest.approx(310_000)


def test_decreases_are_paced_by_the_rtt_unless_throughput_collapsed():
    control = aimd(2_000_000)
    control.update(OVERUSING, 1_000_000, 0, 100 * MS)
    assert not control.may_reduce_further(50 * MS, 100 * MS, 900_000)
    assert control.may_reduce_further(100 * MS, 100 * MS, 900_000)
    assert control.may_reduce_further(50 * MS, 100 * MS, 400_000)  # under half of 850k


def test_overuse_before_any_throughput_halves():
    control = aimd(1_000_000)
    assert control.update(OVERUSING, None, 0, 100 * MS) == 500_000


def test_a_standing_queue_stops_growth_and_caps_the_rate_until_it_drains():
    control = aimd(1_000_000)
    control.update(OVERUSING, 1_000_000, 0, 100 * MS)  # 850 kbit/s, capacity ~1 Mbit/s
    control.update(NORMAL, 1_000_000, 1 * S, 100 * MS, queue_us=550 * MS)
    assert control.queue_standing
    assert control.update(NORMAL, 1_000_000, 2 * S, 100 * MS, queue_us=550 * MS) == pytest.approx(850_000)
    # 500 ms beyond the 50 ms tolerance: half a second to drain, half the capacity
    assert control.target_bps == pytest.approx(500_000)
    control.update(NORMAL, 1_000_000, 3 * S, 100 * MS, queue_us=20 * MS)
    assert not control.queue_standing
    assert control.target_bps == control.bps


def test_the_estimate_stays_within_bounds():
    control = AimdRateControl(100_000, 80_000, 120_000)
    control.update(OVERUSING, 50_000, 0, 100 * MS)
    assert control.bps == 80_000
    control.set_estimate(1_000_000, 1 * S)
    assert control.bps == 120_000


def test_link_capacity_bounds_widen_with_deviation():
    capacity = LinkCapacity()
    assert capacity.upper_bps() == float("inf")
    capacity.on_overuse(1_000_000)
    low, high = capacity.lower_bps(), capacity.upper_bps()
    assert low < 1_000_000 < high
    capacity.on_overuse(2_000_000)
    assert capacity.upper_bps() - capacity.lower_bps() > high - low


# --- loss-based ---------------------------------------------------------------------------


def loss_interval(control: LossBasedControl, lost: int, now_us: int, expected: int = 100) -> bool:
    control.add(expected, lost, now_us - rate.LOSS_INTERVAL_US)
    return control.update(now_us, 100 * MS, ceiling_bps=50_000_000)


def test_low_loss_lets_the_cap_grow_8_percent_per_second():
    control = LossBasedControl(1_000_000)
    loss_interval(control, 1, 1 * S)  # 1 %
    assert control.bps == pytest.approx(1_000_000 * 1.08 + 1000)


def test_moderate_loss_holds():
    control = LossBasedControl(1_000_000)
    assert not loss_interval(control, 5, 1 * S)
    assert control.bps == 1_000_000
    assert control.fraction == pytest.approx(0.05)


def test_heavy_loss_decreases_by_half_the_loss():
    control = LossBasedControl(1_000_000)
    loss_interval(control, 20, 1 * S)
    assert control.bps == pytest.approx(900_000)
    loss_interval(control, 20, 1 * S + 200 * MS)  # within 300 ms + RTT: not again
    assert control.bps == pytest.approx(900_000)


def test_loss_waits_for_a_full_interval_and_enough_packets():
    control = LossBasedControl(1_000_000)
    control.add(100, 50, 0)
    assert not control.update(500 * MS, 100 * MS, 50_000_000)
    control = LossBasedControl(1_000_000)
    control.add(10, 5, 0)
    assert not control.update(2 * S, 100 * MS, 50_000_000)
    assert control.bps == 1_000_000


def test_loss_cap_never_exceeds_the_delay_based_estimate_and_probes_lift_it():
    control = LossBasedControl(1_000_000)
    control.add(100, 0, 0)
    control.update(1 * S, 100 * MS, ceiling_bps=700_000)
    assert control.bps == 700_000
    control.raise_to(2_000_000)
    assert control.bps == 2_000_000


def test_recovered_packets_take_their_loss_back():
    control = LossBasedControl(1_000_000)
    control.add(100, 15, 0)
    control.add(0, -10, 500 * MS)
    control.update(1 * S, 100 * MS, 50_000_000)
    assert control.fraction == pytest.approx(0.05)
