"""sfu.engine.layers: which simulcast layer a subscriber gets, switched only at
keyframes, with PLIs asked for (throttled) and a fallback when a layer stops; fed three
interleaved VP8 layers (tests/support/simulcast.py) and checked on the bytes out.

The stream rewriting itself (gaps, wraps, temporal layers, NACKs) is in test_munger.py."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfu.engine.layers import DROP, FORWARD, PLI, LayerSelector
from sfu.engine.munger import StreamMunger
from sfu.engine.packet_info import PacketInfo
from sfu.wire import rtp
from tests.support.simulcast import PT, Simulcast, Subscriber, assert_seamless, frame_starts

pytestmark = pytest.mark.unit


def subscriber(target=2, temporal=2, layers=3, **kwargs):
    return Subscriber(LayerSelector(StreamMunger(5555, PT), layers=layers, target=target, target_temporal=temporal, **kwargs))


def layers_out(out):
    """The source layers of the stream out, each run once: [0, 2, 1] = 0, then 2, then 1."""
    seq = [o.spatial for o in out]
    return [s for i, s in enumerate(seq) if i == 0 or s != seq[i - 1]]


def test_nothing_goes_out_before_a_keyframe_of_the_target_and_a_pli_is_asked_for():
    source = Simulcast()
    sub = subscriber(target=1)
    sub.feed(source.frames(5, keyframes={1: [0, 2]}))  # keyframes on layers 0 and 2 only
    assert sub.out == []
    assert sub.plis and {layer for _, layer in sub.plis} == {1}
    sub.feed(source.frames(3, keyframes={1: [1]}))
    assert layers_out(sub.out) == [1]
    assert sub.out[0].keyframe
    assert sub.selector.current == 1 and sub.selector.switches == 1
    assert_seamless(sub.out)


def test_plis_for_one_layer_are_throttled_to_one_per_interval():
    source = Simulcast(fps=30)
    sub = subscriber(target=2)
    sub.feed(source.frames(60))  # two seconds without a keyframe
    times = [t for t, layer in sub.plis if layer == 2]
    assert len(times) == 4  # at 0, 0.5, 1.0, 1.5 s (within a frame's time)
    assert all(b - a >= 0.5 for a, b in pairwise(times))


def test_switching_up_waits_for_the_target_keyframe_and_the_old_layer_goes_on():
    source = Simulcast()
    sub = subscriber(target=0)
    sub.feed(source.frames(4, keyframes={0: [0]}))
    sub.selector.set_target(2)
    verdicts = [sub.one(*p) for p in source.frames(6)]  # no keyframe on layer 2 yet
    assert layers_out(sub.out) == [0]
    assert any(v & PLI for v in verdicts) and sub.plis[-1][1] == 2
    sub.feed(source.frames(4, keyframes={0: [2]}))
    assert layers_out(sub.out) == [0, 2]
    assert sub.selector.current == 2
    assert_seamless(sub.out)


def test_switching_down_waits_for_the_lower_keyframe():
    source = Simulcast()
    sub = subscriber(target=2)
    sub.feed(source.frames(4, keyframes={0: [0, 1, 2]}))
    assert layers_out(sub.out) == [2]
    sub.selector.set_target(0)
    sub.feed(source.frames(3))
    assert layers_out(sub.out) == [2]
    sub.feed(source.frames(3, keyframes={0: [0]}))
    assert layers_out(sub.out) == [2, 0]
    assert_seamless(sub.out)


def test_ten_switches_up_and_down_keep_every_invariant():
    source = Simulcast(pids=(32740, 12, 32760), tl0s=(250, 3, 200), seqs=(65500, 100, 65300))
    sub = subscriber(target=0)
    rnd = random.Random(3)
    sub.feed(source.frames(3, keyframes={0: [0, 1, 2]}))
    targets = [2, 0, 1, 2, 1, 0, 2, 1, 0, 2]
    for target in targets:
        sub.selector.set_target(target, rnd.choice((0, 1, 2)))
        # A few frames before the keyframe comes (the PLI's round trip), then some after.
        sub.feed(source.frames(rnd.randint(1, 5)))
        sub.feed(source.frames(rnd.randint(2, 8), keyframes={0: [target]}))
    assert layers_out(sub.out) == [0] + targets
    assert sub.selector.switches == 11
    assert_seamless(sub.out)
    # Timestamps advance by what the frames are apart (up to the 4 frames of an L1T3
    # period when only TL0 goes out; a switch: the time since the last frame).
    starts = frame_starts(sub.out)
    steps = [(b.ts - a.ts) & 0xFFFFFFFF for a, b in pairwise(starts)]
    assert 0 < min(steps) and max(steps) <= 4 * 3000 + 100
    # Wraps happened on the way: input sequence numbers, PictureIDs and TL0PICIDX out.
    assert {o.in_seq < 200 for o in sub.out} == {True, False}
    assert {o.picture_id < 100 for o in starts} == {True, False}
    assert {o.tl0 < 10 for o in starts} == {True, False}


def test_a_stopped_layer_falls_back_to_the_best_one_still_flowing_and_returns():
    source = Simulcast()
    sub = subscriber(target=2, stall_after=0.5)
    sub.feed(source.frames(3, keyframes={0: [0, 1, 2]}))
    source.layers[2].active = False  # the publisher paused its top layer
    sub.feed(source.frames(16))  # over 0.5 s: now it counts as stopped
    assert sub.plis[-1][1] == 1  # a keyframe of the best layer below is asked for
    sub.feed(source.frames(3, keyframes={0: [0, 1]}))
    assert layers_out(sub.out) == [2, 1]
    source.layers[2].active = True
    sub.feed(source.frames(2))
    assert sub.plis[-1][1] == 2
    sub.feed(source.frames(3, keyframes={0: [2]}))
    assert layers_out(sub.out) == [2, 1, 2]
    assert_seamless(sub.out)


def test_when_everything_below_stopped_the_lowest_layer_above_is_taken():
    source = Simulcast()
    sub = subscriber(target=0, stall_after=0.5)
    sub.feed(source.frames(2, keyframes={0: [0]}))
    source.layers[0].active = False
    sub.feed(source.frames(20, keyframes={17: [1, 2]}))
    assert layers_out(sub.out) == [0, 1]


def test_a_subscriber_that_comes_late_sees_at_once_which_layers_stopped():
    source = Simulcast()
    first = subscriber(target=2, stall_after=0.5)
    first.feed(source.frames(3, keyframes={0: [0, 1, 2]}))
    source.layers[2].active = False
    first.feed(source.frames(20))
    late = subscriber(target=2, stall_after=0.5)
    late.info = first.info  # the producer's: arrivals are per track, not per subscriber
    for packet in source.frames(1):
        first.one(*packet)
        late.one(*packet)
    assert late.plis == [(late.plis[0][0], 1)]  # not a wait for layer 2 first


def test_at_the_start_a_target_that_never_comes_is_given_up_after_stall_after():
    source = Simulcast()
    source.layers[2].active = False  # this publisher sends two layers only
    sub = subscriber(target=2, stall_after=0.5)
    sub.feed(source.frames(10, keyframes={0: [0, 1]}))  # layer 1's keyframe: not taken
    assert sub.out == []
    sub.feed(source.frames(10, keyframes={6: [1]}))
    assert layers_out(sub.out) == [1]
    assert_seamless(sub.out)


def test_pause_and_resume_continue_the_numbers():
    source = Simulcast()
    sub = subscriber(target=1)
    sub.feed(source.frames(3, keyframes={0: [1]}))
    sub.selector.set_target(-1)
    assert all(v == DROP for v in [sub.one(*p) for p in source.frames(10, keyframes={0: [0, 1, 2]})])
    assert sub.selector.current == -1
    sub.selector.set_target(0)
    sub.feed(source.frames(3, keyframes={1: [0]}))
    assert layers_out(sub.out) == [1, 0]
    assert_seamless(sub.out)


def test_target_beyond_the_layers_published_is_the_top_one():
    sub = subscriber(target=2, layers=2)
    assert sub.selector.target == 1
    with pytest.raises(ValueError):
        LayerSelector(StreamMunger(1, PT), layers=4)


def test_temporal_target_applies_on_the_current_layer_without_a_keyframe():
    source = Simulcast()
    sub = subscriber(target=1)
    sub.feed(source.frames(4, keyframes={0: [1]}))
    sub.selector.set_target(1, 0)
    sub.feed(source.frames(8))
    assert [o.tid for o in frame_starts(sub.out)] == [0, 2, 1, 2, 0, 0]
    assert sub.selector.current_temporal == 0 and sub.selector.target_temporal == 0
    assert_seamless(sub.out)


# --- H.264 -----------------------------------------------------------------------------------

SPS = bytes([0x67, 0x42, 0xC0, 0x1F]) + b"s" * 8
IDR = bytes([0x65]) + b"i" * 60
SLICE = bytes([0x41]) + b"p" * 40


def h264_packets(ssrc, seq, ts, frames, idr_at=(), now=0.0, layer=0):
    """Single-NAL packets: an IDR frame is SPS + IDR, a delta frame one slice."""
    out = []
    for n in range(frames):
        ts += 3000
        nals = [SPS, IDR] if n in idr_at else [SLICE]
        for k, nal in enumerate(nals):
            seq = (seq + 1) & 0xFFFF
            out.append((layer, rtp.build_packet(102, seq, ts, ssrc, nal, marker=k == len(nals) - 1), now + n / 30))
    return out


def test_h264_switches_only_at_an_idr():
    sub = Subscriber(LayerSelector(StreamMunger(5555, PT), layers=2, target=0), codec="H264")
    low = h264_packets(1, 100, 0, 12, idr_at=(0,), layer=0)
    high = h264_packets(2, 60000, 777, 12, idr_at=(8,), layer=1)
    packets = sorted(low + high, key=lambda p: p[2])
    sub.feed(packets[:6])
    sub.selector.set_target(1)
    sub.feed(packets[6:])
    assert layers_out(sub.out) == [0, 1]
    first_high = next(o for o in sub.out if o.spatial == 1)
    assert first_high.keyframe and first_high.packet[12] & 0x1F == 7  # the SPS before the IDR
    assert sub.out[0].keyframe
    seqs = [o.seq for o in sub.out]
    assert all((b - a) & 0xFFFF == 1 for a, b in pairwise(seqs))
    ts = [o.ts for o in sub.out]
    assert all((b - a) & 0xFFFFFFFF < 0x80000000 for a, b in pairwise(ts))


def test_a_non_simulcast_track_is_one_layer():
    source = Simulcast(layers=1)
    sub = subscriber(target=2, layers=1)
    assert sub.selector.target == 0
    sub.feed(source.frames(2))
    assert sub.out == [] and sub.plis[0][1] == 0
    sub.feed(source.frames(3, keyframes={0: [0]}))
    assert len(sub.out) == 3 and all(v & FORWARD for v in sub.verdicts[-3:])


def test_packets_of_layers_the_selector_does_not_know_are_dropped():
    source = Simulcast()
    sub = subscriber(target=1, layers=2)
    sub.feed(source.frames(6, keyframes={0: [0, 1, 2]}))
    assert layers_out(sub.out) == [1]
    assert len(sub.out) == 6 * 2


def test_unknown_codecs_never_start():
    info = PacketInfo("VP9")
    selector = LayerSelector(StreamMunger(1, PT), layers=1)
    assert info.read(rtp.build_packet(98, 1, 1, 1, b"\x88\x00\x00"), 0, 1.0)
    assert selector.process(info) & FORWARD == 0


# --- everything at once ----------------------------------------------------------------------


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_losses_reorders_duplicates_and_switches_keep_one_consistent_stream(seed):
    """Random loss (5 %), duplicates (3 %), neighbours swapped (5 %), padding, keyframes and
    targets (spatial and temporal): it never raises, no out number is used twice, and in
    the order of out numbers the stream is what a receiver can reassemble: every stretch of
    one layer starts with a keyframe and follows its input order, timestamps and PictureIDs
    never go back; a NACK for any number sent gives the same bytes again."""
    rnd = random.Random(seed)
    source = Simulcast(seed=seed)
    sub = subscriber(target=rnd.randint(0, 2))
    for _ in range(rnd.randint(6, 20)):
        if rnd.random() < 0.5:
            sub.selector.set_target(rnd.randint(-1, 2), rnd.randint(0, 2))
        keyframes = {rnd.randint(0, 3): rnd.sample(range(3), rnd.randint(0, 3))}
        packets = source.frames(rnd.randint(1, 6), keyframes=keyframes)
        if rnd.random() < 0.3:
            packets.append(source.padding(rnd.randint(0, 2)))
        mangled = []
        for packet in packets:
            if rnd.random() < 0.05:
                continue
            mangled.append(packet)
            if rnd.random() < 0.03:
                mangled.append(packet)
        for i in range(len(mangled) - 1):
            if rnd.random() < 0.05:
                mangled[i], mangled[i + 1] = mangled[i + 1], mangled[i]
        sub.feed(mangled)
    out = sub.out
    assert len({o.seq for o in out}) == len(out)
    if not out:
        return
    base = out[0].seq
    ordered = sorted(out, key=lambda o: (o.seq - base) & 0xFFFF)
    assert ordered[0].keyframe
    for prev, cur in pairwise(ordered):
        assert (cur.ts - prev.ts) & 0xFFFFFFFF < 0x80000000
        assert (cur.picture_id - prev.picture_id) & 0x7FFF < 0x4000
        if cur.spatial != prev.spatial:
            assert cur.keyframe
        elif not cur.keyframe:
            # The same stretch: input order kept; drops only close gaps up.
            assert 0 < (cur.seq - prev.seq) & 0xFFFF <= (cur.in_seq - prev.in_seq) & 0xFFFF < 0x8000
    munger = sub.selector.munger
    for o in out[-200:]:
        src = munger.source(o.seq)
        if src is None:
            continue
        info = PacketInfo("VP8")
        info.read(sub.received[src], src[0], 0.0)
        assert munger.retransmit(info, o.seq) == FORWARD
        assert munger.packet(info) == o.packet
