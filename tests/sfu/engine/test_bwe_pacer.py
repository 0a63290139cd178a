"""sfu.engine.bwe.pacer: a probe cluster's padding, spread at its target rate over its
duration (bounded per tick, abandoned when stalled), and the padding packet's bytes."""

from __future__ import annotations

import pytest

from sfu.engine.bwe import ProbeCluster
from sfu.engine.bwe.pacer import (
    EXPECTED_PACKET_SIZE,
    GIVE_UP_US,
    MAX_PACKETS_PER_TICK,
    PACE_INTERVAL_US,
    ProbePacer,
    padding_packet,
)
from sfu.wire import rtp

SIZE = 285


def cluster(target_bps: int = 2_000_000, min_packets: int = 6, duration_us: int = 40_000) -> ProbeCluster:
    return ProbeCluster(7, target_bps, min_packets, target_bps * duration_us // 8_000_000, "start", 0)


def run(pacer: ProbePacer, start_us: int, interval_us: int, until_us: int) -> list[tuple[int, int]]:
    """(time, packets sent then) for every tick from start_us."""
    sent = []
    for now in range(start_us, until_us, interval_us):
        count = pacer.due(now)
        for _ in range(count):
            pacer.on_sent(SIZE)
        sent.append((now, count))
    return sent


def test_the_cluster_leaves_at_its_target_rate_over_its_duration():
    probe = cluster(2_000_000)  # 10,000 bytes over 40 ms
    pacer = ProbePacer(probe, 1_000_000)
    ticks = run(pacer, 1_000_000, PACE_INTERVAL_US, 1_100_000)
    assert ticks[0] == (1_000_000, 1)  # the first packet at once
    total = sum(count for _, count in ticks)
    assert total == -(-probe.min_bytes // SIZE) and total >= probe.min_packets
    assert pacer.bytes_sent >= probe.min_bytes and pacer.bytes_sent - SIZE < probe.min_bytes
    # Never ahead of the rate by more than one packet; done within one tick of 40 ms.
    sent_bytes = 0
    for now, count in ticks:
        sent_bytes += count * SIZE
        assert sent_bytes <= probe.target_bps * (now - 1_000_000) / 8e6 + SIZE
    last = max(now for now, count in ticks if count)
    assert 35_000 <= last - 1_000_000 <= 45_000
    assert pacer.done(last) and pacer.due(last + PACE_INTERVAL_US) == 0


def test_a_small_cluster_still_sends_its_minimum_packet_count():
    probe = ProbeCluster(1, 100_000, 6, 500, "start", 0)  # 500 bytes: two packets' worth
    pacer = ProbePacer(probe, 0)
    run(pacer, 0, PACE_INTERVAL_US, 200_000)
    assert pacer.packets_sent == 6


def test_a_late_tick_catches_up_but_never_bursts_more_than_the_cap():
    probe = cluster(20_000_000, duration_us=40_000)  # 100 kB: ~351 packets
    pacer = ProbePacer(probe, 0)
    assert pacer.due(0) == 1
    pacer.on_sent(SIZE)
    assert pacer.due(30_000) == MAX_PACKETS_PER_TICK  # the loop stalled 30 ms
    for now in range(30_000, GIVE_UP_US, PACE_INTERVAL_US):
        assert pacer.due(now) <= MAX_PACKETS_PER_TICK


def test_a_stalled_cluster_is_given_up():
    pacer = ProbePacer(cluster(), 0)
    assert not pacer.done(GIVE_UP_US - 1)
    assert pacer.done(GIVE_UP_US) and pacer.due(GIVE_UP_US) == 0


def test_due_assumes_a_full_padding_packet_until_one_is_sent():
    assert EXPECTED_PACKET_SIZE == 12 + 8 + 255 + 10
    pacer = ProbePacer(cluster(2_000_000), 0)
    pacer.due(0)
    pacer.on_sent(1000)  # a bigger packet (AES-GCM, say): fewer of them are needed
    assert pacer.last_size == 1000 and pacer.due(40_000) == 9


@pytest.mark.parametrize("tcc_id", [1, 14, 15, 200])
def test_a_padding_packet_is_padding_only_with_the_transport_wide_number(tcc_id):
    packet = padding_packet(97, 0x1234, 0xDEADBEEF, 0xCAFEBABE, tcc_id, 0xABCD, 255)
    header = rtp.parse_header(packet)
    assert (header.payload_type, header.sequence_number, header.timestamp, header.ssrc) == (
        97, 0x1234, 0xDEADBEEF, 0xCAFEBABE,
    )  # fmt: skip
    assert header.padding and not header.marker and packet[-1] == 255
    assert rtp.payload_offset(packet) == len(packet) - 255  # no payload, then the padding
    where = rtp.find_extension(packet, tcc_id)
    assert where is not None and packet[where[0] : where[0] + where[1]] == b"\xab\xcd"
    assert len(packet) == 12 + 8 + 255


@pytest.mark.parametrize("padding,tcc_id", [(0, 3), (256, 3), (10, 0), (10, 256)])
def test_a_padding_packet_out_of_range_is_refused(padding, tcc_id):
    with pytest.raises(ValueError):
        padding_packet(97, 1, 1, 1, tcc_id, 1, padding)
