"""recorder.media.jitter: the jitter buffer holds, reorders, waits for holes (NACKing them)
and gives up on them, on a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.media.jitter import MAX_FORWARD_JUMP, JitterBuffer
from sfu.wire import rtp
from tests.support.recorder_media import FakeClock, packet, seqs


def test_jitter_holds_the_first_packets_then_passes_in_order_packets_through():
    clock = FakeClock(0.0)
    jitter = JitterBuffer(clock=clock, max_delay_seconds=0.1)
    assert jitter.push(packet(11)) == []  # the very first may not be the first sent
    assert jitter.push(packet(10)) == []
    assert jitter.next_deadline() == pytest.approx(0.1)
    clock.now = 0.1
    assert seqs(jitter.poll()) == [10, 11]
    assert seqs(jitter.push(packet(12))) == [12]
    assert jitter.stats.lost == 0


def test_jitter_reorders_across_the_sequence_wrap():
    clock = FakeClock(0.0)
    jitter = JitterBuffer(clock=clock, max_delay_seconds=0.1)
    out = []
    for seq in (65533, 65535, 65534, 1, 0, 2):
        out += jitter.push(packet(seq))
    clock.now = 0.2
    out += jitter.poll()
    assert seqs(out) == [65533, 65534, 65535, 0, 1, 2]
    assert jitter.stats.released == 6


def test_jitter_waits_for_a_hole_then_gives_up_and_counts_it():
    clock = FakeClock(0.0)
    jitter = JitterBuffer(clock=clock, max_delay_seconds=0.1)
    jitter.flush()
    jitter.push(packet(100))
    clock.now = 0.1
    assert seqs(jitter.poll()) == [100]
    clock.now = 0.25
    assert jitter.push(packet(102)) == []
    assert jitter.missing() == [101]
    clock.now = 0.3
    assert jitter.poll() == []
    clock.now = 0.5
    assert seqs(jitter.poll()) == [102]
    assert jitter.stats.lost == 1
    assert jitter.push(packet(101)) == []  # too late now
    assert jitter.stats.late == 1
    assert jitter.push(packet(102)) == []
    assert jitter.stats.duplicates == 1


def test_jitter_bounds_the_packets_waiting_behind_a_hole():
    clock = FakeClock(0.0)
    jitter = JitterBuffer(clock=clock, max_delay_seconds=10, max_delay_packets=3)
    jitter.push(packet(0))
    clock.now = 10
    jitter.poll()
    out = []
    for seq in (2, 3, 4):
        out += jitter.push(packet(seq))
    assert out == []
    assert seqs(jitter.push(packet(5))) == [2, 3, 4, 5]
    assert jitter.stats.lost == 1


def test_jitter_nacks_each_hole_at_an_interval_and_a_limited_number_of_times():
    clock = FakeClock(0.0)
    jitter = JitterBuffer(clock=clock, max_delay_seconds=1.0, nack_interval_seconds=0.05, max_nacks_per_packet=2)
    jitter.push(packet(65534))
    clock.now = 1.0
    jitter.poll()
    jitter.push(packet(2))  # 65535, 0, 1 missing
    assert jitter.nacks() == [65535, 0, 1]
    assert jitter.nacks() == []  # asked a moment ago
    clock.now = 1.06
    assert jitter.push(packet(0)) == []
    assert jitter.nacks() == [65535, 1]
    clock.now = 1.2
    assert jitter.nacks() == []  # asked twice already
    assert jitter.stats.recovered == 1
    assert seqs(jitter.push(packet(65535))) == [65535, 0]
    assert jitter.missing() == [1]


def test_jitter_restarts_after_a_jump_far_ahead():
    clock = FakeClock(0.0)
    jitter = JitterBuffer(clock=clock, max_delay_seconds=0.1)
    jitter.push(packet(10))
    clock.now = 0.1
    jitter.poll()
    assert seqs(jitter.push(packet(12))) == []
    jump = 12 + MAX_FORWARD_JUMP + 5
    assert seqs(jitter.push(packet(jump))) == [12, jump]
    assert seqs(jitter.push(packet(jump + 1))) == [jump + 1]
    assert jitter.stats.resets == 1
    assert jitter.missing() == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.floats(0, 0.3)), max_size=60))
def test_jitter_releases_each_packet_at_most_once_in_increasing_order(arrivals):
    clock = FakeClock(0.0)
    jitter = JitterBuffer(clock=clock, max_delay_seconds=0.1, max_delay_packets=20)
    out = []
    for seq, step in arrivals:
        clock.now += step
        out += jitter.push(packet(seq))
        jitter.nacks()
    out += jitter.flush()
    unwrapped = []
    for p in out:
        if not unwrapped:
            unwrapped.append(p.sequence_number)
        else:
            unwrapped.append(unwrapped[-1] + rtp.seq_diff(p.sequence_number, unwrapped[-1] & 0xFFFF))
    assert unwrapped == sorted(set(unwrapped))
    assert jitter.stats.released == len(out) <= len(arrivals)
