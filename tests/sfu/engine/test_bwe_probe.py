"""sfu.engine.bwe.probe: when to probe and how high, and what a probe measured."""

from __future__ import annotations

import pytest

from sfu.engine.bwe import probe
from sfu.engine.bwe.probe import ProbeCluster, ProbeController, ProbeMeasurement

pytestmark = pytest.mark.unit

MS = 1000
S = 1_000_000


def finish(controller: ProbeController, cluster: ProbeCluster, result, estimate, now_us):
    controller.on_done(cluster, result, estimate, now_us)


# --- when and how high ---------------------------------------------------------------------


def test_no_probe_while_the_estimate_covers_what_the_allocation_wants():
    controller = ProbeController(max_bps=20_000_000)
    assert controller.request(0, 500_000, 600_000, None) is None
    assert controller.request(0, 620_000, 600_000, None) is None  # within 5 %


def test_the_first_probe_is_at_three_times_the_estimate():
    controller = ProbeController(max_bps=20_000_000)
    cluster = controller.request(0, 5_000_000, 300_000, None)
    assert (cluster.reason, cluster.target_bps) == (probe.START, 900_000)
    assert cluster.min_packets == probe.PROBE_MIN_PACKETS
    assert cluster.min_bytes == 900_000 * probe.PROBE_DURATION_US // 8_000_000
    assert controller.request(10 * MS, 5_000_000, 300_000, None) is None  # one in flight at a time


def test_a_probe_never_goes_beyond_what_the_allocation_could_use_nor_the_maximum():
    controller = ProbeController(max_bps=20_000_000)
    assert controller.request(0, 400_000, 300_000, None).target_bps == 480_000  # 1.2 × wanted
    controller = ProbeController(max_bps=700_000)
    assert controller.request(0, 5_000_000, 300_000, None).target_bps == 700_000


def test_success_continues_at_twice_the_new_estimate_at_once():
    controller = ProbeController(max_bps=20_000_000)
    first = controller.request(0, 5_000_000, 300_000, None)
    finish(controller, first, 880_000, 300_000, 100 * MS)
    again = controller.request(100 * MS, 5_000_000, 880_000, None)
    assert (again.reason, again.target_bps) == (probe.CONTINUE, 1_760_000)
    assert controller.successes == 1


def test_a_probe_that_measured_the_ceiling_waits_for_the_periodic_one():
    controller = ProbeController(max_bps=20_000_000)
    first = controller.request(0, 5_000_000, 300_000, None)
    finish(controller, first, 320_000, 300_000, 100 * MS)  # the path said no
    assert controller.request(2 * S, 5_000_000, 320_000, None) is None
    periodic = controller.request(100 * MS + probe.PERIODIC_INTERVAL_US, 5_000_000, 320_000, None)
    assert (periodic.reason, periodic.target_bps) == (probe.PERIODIC, 640_000)


def test_an_unmeasured_probe_is_retried_after_a_second_a_few_times():
    controller = ProbeController(max_bps=20_000_000)
    now = 0
    cluster = controller.request(now, 5_000_000, 300_000, None)
    for _ in range(probe.MAX_RETRIES):
        finish(controller, cluster, None, 300_000, now)
        assert controller.request(now + 500 * MS, 5_000_000, 300_000, None) is None
        now += probe.MIN_GAP_US
        cluster = controller.request(now, 5_000_000, 300_000, None)
        assert cluster.reason == probe.RETRY
    finish(controller, cluster, None, 300_000, now)
    assert controller.request(now + probe.MIN_GAP_US, 5_000_000, 300_000, None) is None  # enough
    assert controller.request(now + probe.PERIODIC_INTERVAL_US, 5_000_000, 300_000, None).reason == probe.PERIODIC


def test_the_allocation_wanting_more_probes_after_a_second():
    controller = ProbeController(max_bps=20_000_000)
    first = controller.request(0, 1_000_000, 300_000, None)
    finish(controller, first, 310_000, 300_000, 100 * MS)
    assert controller.request(1 * S, 1_100_000, 310_000, None) is None  # not 25 % more
    assert controller.request(500 * MS, 3_000_000, 310_000, None) is None  # too soon
    wanted = controller.request(1100 * MS, 3_000_000, 310_000, None)
    assert (wanted.reason, wanted.target_bps) == (probe.WANTED, 620_000)


def test_once_satisfied_any_later_need_is_news():
    controller = ProbeController(max_bps=20_000_000)
    first = controller.request(0, 3_000_000, 300_000, None)
    finish(controller, first, 320_000, 300_000, 100 * MS)
    assert controller.request(2 * S, 300_000, 320_000, None) is None  # satisfied now
    assert controller.request(3 * S, 1_000_000, 320_000, None).reason == probe.WANTED


def test_no_probe_within_a_second_of_a_backoff():
    controller = ProbeController(max_bps=20_000_000)
    assert controller.request(5 * S, 5_000_000, 300_000, last_decrease_us=4500 * MS) is None
    assert controller.request(5600 * MS, 5_000_000, 300_000, last_decrease_us=4500 * MS) is not None


def test_no_probe_when_already_at_the_maximum():
    controller = ProbeController(max_bps=1_000_000)
    assert controller.request(0, 5_000_000, 1_000_000, None) is None


# --- what a probe measured ----------------------------------------------------------------


def run_cluster(target_bps, received_at, size=1200, lost=()):
    """Send a 6-packet cluster at target_bps; received_at(i, send_us) gives its arrival."""
    measurement = ProbeMeasurement()
    cluster = ProbeCluster(1, target_bps, 6, 6 * size, probe.START, 0)
    measurement.start(cluster)
    gap = int(size * 8e6 / target_bps)
    for i in range(6):
        measurement.on_sent(1, size)
    for i in range(6):
        send_us = i * gap
        measurement.on_result(1, send_us, size, None if i in lost else received_at(i, send_us))
    ((done, result),) = measurement.finished(10 * MS)
    assert done is cluster
    return result


def test_an_unsaturated_path_measures_the_send_rate():
    result = run_cluster(1_000_000, lambda i, send: 50 * MS + send)
    assert result == pytest.approx(1_000_000, rel=0.01)


def test_a_saturated_path_measures_095_of_the_receive_rate():
    # The bottleneck spaces 1200-byte packets 19.2 ms apart: 500 kbit/s
    result = run_cluster(1_000_000, lambda i, send: 50 * MS + i * 19_200)
    assert result == pytest.approx(0.95 * 500_000, rel=0.01)


def test_too_few_packets_back_is_no_measurement():
    assert run_cluster(1_000_000, lambda i, send: 50 * MS + send, lost=(1, 2)) is None
    assert run_cluster(1_000_000, lambda i, send: 50 * MS + send, lost=(3,)) is not None


def test_a_receive_rate_far_above_the_send_rate_is_implausible():
    assert run_cluster(1_000_000, lambda i, send: 50 * MS + send // 3) is None


def test_a_cluster_waits_for_its_packets_or_times_out():
    measurement = ProbeMeasurement()
    cluster = ProbeCluster(4, 1_000_000, 6, 7200, probe.START, 0)
    measurement.start(cluster)
    measurement.on_sent(4, 1200)
    assert measurement.finished(100 * MS) == []  # the sender has not finished it
    assert measurement.finished(probe.PROBE_TIMEOUT_US) == [(cluster, None)]
    measurement.on_sent(4, 1200)  # forgotten: harmless
    measurement.on_result(4, 0, 1200, 5)
    assert measurement.finished(2 * probe.PROBE_TIMEOUT_US) == []
