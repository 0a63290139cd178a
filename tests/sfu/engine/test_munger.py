"""sfu.engine.munger (and the PacketInfo it reads): one continuous stream for a
subscriber within a layer and across switches, checked on the bytes that go out.

Drops the SFU makes (temporal layers filtered, padding, malformed payloads) leave no gap
in sequence numbers or PictureIDs; losses upstream do; late packets take the number
kept for them; wraps of every counter; the NACK history. The spatial switching rules
are in test_layers.py."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfu.engine.layers import DROP, FORWARD, LayerSelector
from sfu.engine.munger import HISTORY, StreamMunger
from sfu.engine.packet_info import PacketInfo
from sfu.wire import codecs, rtp
from tests.support.paths import DATA_DIR
from tests.support.simulcast import (
    PT,
    Simulcast,
    Subscriber,
    assert_seamless,
    frame_starts,
    parse_out,
    vp8_payload,
)

pytestmark = pytest.mark.unit


def single(first_seq=100, first_ts=5000, target_temporal=2, **kwargs):
    """A one-layer VP8 source and a subscriber of it."""
    source = Simulcast(layers=1, **kwargs)
    munger = StreamMunger(5555, PT, first_seq=first_seq, first_ts=first_ts)
    sub = Subscriber(LayerSelector(munger, layers=1, target=0, target_temporal=target_temporal))
    return source, sub


def keyed(source, count=1):
    """`count` frames, the first a keyframe."""
    return source.frames(count, keyframes={0: [0]})


# --- PacketInfo ----------------------------------------------------------------------------


def captured(name):
    return (DATA_DIR / f"wire_chromium_{name}.bin").read_bytes()


def test_packet_info_reads_chromium_l1t3_packets():
    info = PacketInfo("VP8")
    assert info.read(captured("vp8_l1t3_key"), 1, 3.0)
    assert (info.spatial, info.now, info.keyframe, info.empty, info.tid) == (1, 3.0, True, False, 0)
    assert info.picture_id >= 0 and info.picture_id_bits == 15 and info.tl0 >= 0
    data = captured("vp8_l1t3_tid2")
    assert info.read(data, 0, 3.1)
    assert (info.keyframe, info.tid) == (False, 2)
    assert data[info.tl0_offset] == info.tl0
    assert rtp.parse_header(data).sequence_number == info.seq


def test_packet_info_h264_keyframes():
    info = PacketInfo("video/H264")
    assert info.read(captured("h264_stap_a"), 0, 1.0) and info.keyframe and info.tid == -1
    assert info.read(captured("h264_fu_a_end"), 0, 1.0) and not info.keyframe and not info.empty


def test_packet_info_padding_only_is_empty():
    info = PacketInfo("VP8")
    assert info.read(rtp.build_packet(PT, 1, 2, 3, b"", padding=100), 0, 0.0)
    assert info.empty and not info.keyframe
    assert not info.read(b"\x80\x60\x00", 0, 0.0)  # not even a header


@pytest.mark.parametrize(
    "payload",
    [
        b"\x90",  # X set, no extension byte
        b"\x90\x80",  # I set, no PictureID
        b"\x90\x80\x85",  # 15-bit PictureID cut
        b"\x90\x40",  # L set, no TL0PICIDX
        b"\x90\x20",  # T set, no TID byte
        b"\x90\x80\x05",  # a descriptor and no VP8 data
    ],
)
def test_malformed_vp8_is_dropped_without_a_gap(payload):
    source, sub = single()
    sub.feed(keyed(source, 2))
    layer = source.layers[0]
    layer.seq = (layer.seq + 1) & 0xFFFF
    bad = rtp.build_packet(PT, layer.seq, layer.ts, layer.ssrc, payload)
    assert sub.one(0, bad, source.now) == DROP
    sub.feed(source.frames(3))
    assert_seamless(sub.out)
    assert len(sub.out) == 5


descriptors = st.builds(
    vp8_payload,
    picture_id=st.none() | st.integers(0, 0x7FFF),
    pid_bits=st.sampled_from((7, 15)),
    tl0=st.none() | st.integers(0, 255),
    tid=st.none() | st.integers(0, 3),
    layer_sync=st.booleans(),
    keyframe=st.booleans(),
    start=st.booleans(),
    size=st.integers(0, 3),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(descriptors, st.binary(max_size=12)))
def test_packet_info_reads_descriptors_as_the_wire_parser_does(payload):
    packet = rtp.build_packet(PT, 1, 2, 3, payload)
    info = PacketInfo("VP8")
    assert info.read(packet, 0, 0.0)
    try:
        desc = codecs.vp8_descriptor(packet, 12)
    except ValueError:
        assert info.empty
        return
    if 12 + desc.header_size >= len(packet):
        assert info.empty  # a descriptor and no VP8 data
        return
    assert not info.empty
    assert info.keyframe == codecs.vp8_is_keyframe(packet, 12)
    assert info.tid == (-1 if desc.tid is None else desc.tid)
    assert info.layer_sync == bool(desc.layer_sync)
    assert info.picture_id == (-1 if desc.picture_id is None else desc.picture_id)
    assert info.picture_id_bits == desc.picture_id_bits
    assert info.tl0 == (-1 if desc.tl0_pic_idx is None else desc.tl0_pic_idx)
    if desc.picture_id is not None:
        assert info.codec_start == desc.picture_id_offset
    if desc.tl0_pic_idx is not None:
        assert info.tl0_offset == desc.tl0_pic_idx_offset
    # The parts every subscriber shares, and the bytes between them, are the packet.
    assert packet[:12] + info.middle + packet[info.codec_start : info.codec_end] + info.tail == packet


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=40), st.booleans(), st.integers(0, 0xFFFF))
def test_any_payload_is_read_or_dropped_never_raises(payload, padded, seq):
    source, sub = single()
    sub.feed(keyed(source, 1))
    packet = bytearray(rtp.build_packet(PT, seq, 1, 1000, payload))
    if padded:
        packet[0] |= 0x20  # a padding count taken from whatever the last byte is
    sub.one(0, bytes(packet), source.now)
    sub.one(0, bytes(packet[:13]), source.now)


# --- what the SFU drops leaves no gap --------------------------------------------------------


def test_first_packets_out_are_the_keyframe_numbered_from_the_start_values():
    source, sub = single(first_seq=65534, first_ts=0xFFFFFF00)
    sub.feed(source.frames(3))  # no keyframe yet: nothing
    assert sub.out == []
    out = sub.feed(keyed(source, 3))
    assert out[0].keyframe and out[0].seq == 65534 and out[0].ts == 0xFFFFFF00
    assert [o.seq for o in out] == [65534, 65535, 0]
    assert out[2].ts == (0xFFFFFF00 + 2 * 3000) & 0xFFFFFFFF
    assert_seamless(out)


def test_padding_only_packets_vanish_without_gaps():
    source, sub = single()
    sub.feed(keyed(source, 2))
    sub.feed([source.padding(0), source.padding(0)])
    sub.feed(source.frames(2))
    sub.feed([source.padding(0)])
    sub.feed(source.frames(2))
    assert len(sub.out) == 6
    assert_seamless(sub.out)


def test_dropping_tid2_then_tid1_renumbers_without_gaps():
    source, sub = single()
    sub.feed(keyed(source, 8))
    sub.selector.set_target(0, 1)
    sub.feed(source.frames(8))
    sub.selector.set_target(0, 0)
    sub.feed(source.frames(8))
    tids = [o.tid for o in sub.out]
    assert tids[:8] == [0, 2, 1, 2, 0, 2, 1, 2]
    assert tids[8:12] == [0, 1, 0, 1]
    assert tids[12:] == [0, 0]
    assert_seamless(sub.out)  # TL0PICIDX too: +1 at each TL0 frame, the same between


def test_dropped_frames_leave_no_picture_id_gap_and_tl0_wraps():
    source, sub = single(tl0s=(250,), pids=(32760,), target_temporal=0)
    sub.feed(keyed(source, 40))
    out = sub.out
    assert [o.tid for o in out] == [0] * 10
    assert_seamless(out)
    pids = [o.picture_id for o in out]
    assert pids == [(32761 + i) & 0x7FFF for i in range(10)]  # continuous, through the 15-bit wrap
    assert [o.tl0 for o in out] == [(251 + i) & 0xFF for i in range(10)]  # TL0PICIDX through 255 -> 0


def test_seven_bit_picture_ids_wrap():
    source, sub = single(pid_bits=7, pids=(120,), target_temporal=1)
    sub.feed(keyed(source, 24))
    assert {o.pid_bits for o in sub.out} == {7}
    assert_seamless(sub.out)
    assert len(sub.out) == 12


def test_temporal_upswitch_waits_for_a_sync_frame():
    source, sub = single(target_temporal=0)
    sub.feed(keyed(source, 5))  # tids 0 2 1 2 0: Y on the first TL2 and TL1 frame only
    sub.selector.set_target(0, 2)
    sub.feed(source.frames(8))  # 2 1 2 0 2 1 2 0, none with Y, within sync_wait: no change
    assert [o.tid for o in sub.out] == [0, 0, 0, 0]
    source.now += 0.5
    sub.feed(source.frames(4))  # 2 1 2 0: past sync_wait, the next TL1 frame takes us up one layer
    assert [o.tid for o in sub.out][4:] == [1, 0]
    source.now += 0.5
    sub.feed(source.frames(4))  # 2 1 2 0: and after another wait, TL2 too
    assert [o.tid for o in sub.out][6:] == [2, 1, 2, 0]
    assert_seamless(sub.out)


def test_temporal_upswitch_one_layer_at_a_time_at_layer_sync_frames():
    source, sub = single(target_temporal=0)
    sub.feed(keyed(source, 1))
    sub.selector.set_target(0, 2)
    sub.feed(source.frames(4))  # 2 (Y) 1 (Y) 2 0: TL2 cannot come before TL1 is in
    assert [o.tid for o in sub.out] == [0, 1, 0]
    sub.feed(keyed(source, 4))  # a keyframe: every layer at once
    assert [o.tid for o in sub.out][3:] == [0, 2, 1, 2]
    assert_seamless(sub.out)


def test_temporal_downswitch_at_the_next_frame():
    source, sub = single(packets=(3,))
    sub.feed(keyed(source, 1))
    packets = source.frames(2)  # a TL2 frame of three packets, then TL1
    sub.feed(packets[:1])
    sub.selector.set_target(0, 0)
    sub.feed(packets[1:])  # the TL2 frame is finished; TL1 is not sent
    sub.feed(source.frames(2))  # TL2, TL0
    assert [o.tid for o in frame_starts(sub.out)] == [0, 2, 0]
    assert_seamless(sub.out)


# --- what was lost upstream still looks lost ----------------------------------------------


def test_upstream_loss_still_shows_as_a_gap():
    source, sub = single()
    packets = keyed(source, 3)
    del packets[1]  # the second frame: one packet, lost
    sub.feed(packets)
    sub.feed(source.frames(2))
    assert_seamless(sub.out, seq_gaps=1, pid_gaps=1)


def test_loss_within_a_temporal_drop_keeps_its_gap_and_renumbers_the_rest():
    source, sub = single(target_temporal=1)
    packets = keyed(source, 8)  # tids 0 2 1 2 0 2 1 2
    del packets[4]  # the second TL0 frame, lost upstream
    sub.feed(packets)
    assert [o.tid for o in sub.out] == [0, 1, 1]
    assert_seamless(sub.out, seq_gaps=1, pid_gaps=1)


def test_late_packet_takes_the_number_kept_for_it_and_duplicates_are_dropped():
    source, sub = single()
    sub.feed(keyed(source, 1))
    packets = source.frames(2)
    late = packets.pop(0)
    sub.feed(packets)
    assert len(sub.out) == 2
    assert sub.one(*late) == FORWARD
    assert sub.one(*late) == DROP
    assert sub.one(*packets[0]) == DROP  # a duplicate of an in-order one
    out = sorted(sub.out, key=lambda o: o.seq)
    assert [o.in_seq for o in out] == [o.in_seq for o in sorted(out, key=lambda o: o.in_seq)]
    assert_seamless(out)


def test_late_packet_of_a_dropped_frame_stays_dropped():
    source, sub = single(target_temporal=0, packets=(2,))
    sub.feed(keyed(source, 1))
    packets = source.frames(2)  # TL2 frame [a, b], TL1 frame [c, d]
    late = packets.pop(1)
    sub.feed(packets)  # a: its frame is dropped; c comes after a gap; c and d dropped
    assert sub.one(*late) == DROP  # b belongs to a frame dropped here
    sub.feed(source.frames(2))  # TL2, TL0
    assert_seamless(sub.out, seq_gaps=1)  # the gap was kept: nothing could tell it was b's


def test_late_packet_of_a_frame_lost_whole_takes_its_reserved_numbers():
    source, sub = single(target_temporal=0)
    sub.feed(keyed(source, 1))
    packets = source.frames(3)  # tids 2 1 2, one packet each
    late = packets.pop(0)  # the first TL2 frame: lost as a whole, for now
    sub.feed(packets)
    assert sub.one(*late) == FORWARD  # its numbers were kept: it goes out, TL2 or not
    sub.feed(source.frames(1))  # TL0
    assert [o.tid for o in sub.out] == [0, 2, 0]
    assert_seamless(sorted(sub.out, key=lambda o: o.seq))


def test_input_sequence_numbers_wrap():
    source, sub = single(seqs=(65530,))
    sub.feed(keyed(source, 12))
    assert any(o.in_seq < 100 for o in sub.out) and any(o.in_seq > 65000 for o in sub.out)
    assert_seamless(sub.out)
    assert len(sub.out) == 12


# --- switches ------------------------------------------------------------------------------


def test_timestamps_across_a_switch_follow_the_wall_clock():
    source = Simulcast()
    sub = Subscriber(LayerSelector(StreamMunger(5555, PT, first_ts=1000), target=0))
    sub.feed(source.frames(3, keyframes={0: [0]}))
    last = sub.out[-1]
    sub.selector.set_target(2)
    source.layers[0].active = False
    source.now += 0.3  # nothing at all for 0.3 s (less than stall_after)
    out = sub.feed(source.frames(3, keyframes={0: [2]}))
    assert out[0].spatial == 2 and out[0].keyframe
    # Layer 0's last frame arrived at t + 1 ms, this keyframe at t + 1/30 + 0.3 + 2 ms.
    assert (out[0].ts - last.ts) & 0xFFFFFFFF == pytest.approx((1 / 30 + 0.3 + 0.001) * 90000, abs=2)
    assert_seamless(sub.out)


def test_a_switch_at_the_same_instant_still_moves_the_timestamp_forward():
    source = Simulcast(packets=(1, 1, 1))
    sub = Subscriber(LayerSelector(StreamMunger(5555, PT), target=0))
    sub.feed(source.frames(1, keyframes={0: [0]}))
    sub.selector.set_target(1)
    (_, low, now), (_, high, _), _ = source.frame(keyframes=(0, 1))
    sub.one(0, low, now)
    sub.one(1, high, now)  # the same capture, the same arrival
    assert [o.spatial for o in sub.out] == [0, 0, 1]
    assert (sub.out[2].ts - sub.out[1].ts) & 0xFFFFFFFF == 1
    assert_seamless(sub.out)


def test_a_switch_right_after_a_loss_does_not_reuse_the_reserved_number():
    source = Simulcast()
    sub = Subscriber(LayerSelector(StreamMunger(5555, PT), target=0))
    sub.feed(source.frames(2, keyframes={0: [0]}))  # TL0, TL2
    sub.selector.set_target(0, 0)
    packets = source.frames(2)  # TL1 (its layer-0 packet lost), TL2 (dropped)
    packets.remove(next(p for p in packets if p[0] == 0))
    sub.feed(packets)
    sub.selector.set_target(1)
    sub.feed([p for p in source.frames(1, keyframes={0: [1]}) if p[0] != 0])  # layer 0's is late
    sub.feed(source.frames(1))
    assert [o.spatial for o in frame_starts(sub.out)] == [0, 0, 1, 1]
    assert_seamless(sub.out, seq_gaps=1, pid_gaps=1)


# --- NACKs ---------------------------------------------------------------------------------


def resend(sub, out_seq, cache):
    """What the consumer's NACK path would do: the source, the cached packet, the rewrite."""
    munger = sub.selector.munger
    src = munger.source(out_seq)
    if src is None:
        return None
    packet = cache.get(src)
    if packet is None:
        return None
    info = PacketInfo("VP8")
    info.read(packet, src[0], 0.0)
    if munger.retransmit(info, out_seq) != FORWARD:
        return None
    buf = bytearray(packet)
    munger.rewrite(buf, info)
    return bytes(buf)


def test_retransmission_repeats_the_bytes_that_went_out_even_after_switches():
    source = Simulcast()
    sub = Subscriber(LayerSelector(StreamMunger(5555, PT), target=0))
    sub.feed(source.frames(4, keyframes={0: [0]}))
    sub.selector.set_target(2)
    sub.feed(source.frames(4, keyframes={2: [2]}))
    sub.selector.set_target(1, 1)
    sub.feed(source.frames(8, keyframes={1: [1]}))
    layers = [o.spatial for o in sub.out]
    assert [s for i, s in enumerate(layers) if i == 0 or s != layers[i - 1]] == [0, 2, 1]
    for o in sub.out:
        assert resend(sub, o.seq, sub.received) == o.packet
    assert resend(sub, (sub.out[-1].seq + 1) & 0xFFFF, sub.received) is None


def test_retransmissions_after_drops_padding_and_a_loss_repeat_what_went_out():
    source, sub = single(target_temporal=1)
    packets = keyed(source, 6) + [source.padding(0)] + source.frames(6)
    lost = packets.pop(2)  # a TL1 frame, lost upstream
    sub.feed(packets)
    sub.selector.set_target(0, 0)
    sub.feed(source.frames(8))
    assert_seamless(sub.out, seq_gaps=1, pid_gaps=1)
    for o in sub.out:
        assert resend(sub, o.seq, sub.received) == o.packet
    seqs = [o.seq for o in sub.out]
    gap = next((a + 1) & 0xFFFF for a, b in pairwise(seqs) if (b - a) & 0xFFFF == 2)
    assert sub.selector.munger.source(gap) == (0, rtp.parse_header(lost[1]).sequence_number)
    assert resend(sub, gap, sub.received) is None  # lost: not in the cache
    sub.received[(0, rtp.parse_header(lost[1]).sequence_number)] = lost[1]  # recovered upstream
    recovered = parse_out(resend(sub, gap, sub.received), 0, 0)
    assert (recovered.seq, recovered.tid) == (gap, 1)
    sub.out = sorted(sub.out + [recovered], key=lambda o: o.seq)
    assert_seamless(sub.out)


def test_numbers_older_than_the_history_are_not_looked_up():
    source, sub = single()
    sub.feed(keyed(source, 1))
    first = sub.out[0]
    sub.feed(source.frames(HISTORY + 10))
    assert sub.selector.munger.source(first.seq) is None
    assert resend(sub, sub.out[-5].seq, sub.received) == sub.out[-5].packet


def test_a_nack_for_a_reserved_number_sends_the_packet_once_it_is_cached():
    source, sub = single()
    packets = keyed(source, 4)
    lost = packets.pop(1)  # the second frame's packet
    sub.feed(packets)
    seqs = {o.seq for o in sub.out}
    missing = [s for s in range(min(seqs), max(seqs)) if s not in seqs]
    assert len(missing) == 1
    cache = {(0, rtp.parse_header(lost[1]).sequence_number): lost[1]}
    data = resend(sub, missing[0], cache)
    assert data is not None
    got = parse_out(data, 0, 0)
    assert got.seq == missing[0] and got.ssrc == 5555
    sub.out.append(got)
    sub.out.sort(key=lambda o: o.seq)
    assert_seamless(sub.out)
    assert resend(sub, missing[0], cache) is not None  # answered again, from the history now


def test_frame_starts_helper_sees_one_start_per_frame():
    source, sub = single()
    sub.feed(keyed(source, 3))
    assert len(frame_starts(sub.out)) == 3


def test_payload_factory_round_trips():
    payload = vp8_payload(picture_id=300, tl0=7, tid=1, layer_sync=True, keyframe=True)
    info = PacketInfo("VP8")
    info.read(rtp.build_packet(PT, 1, 2, 3, payload), 0, 0.0)
    assert (info.picture_id, info.tl0, info.tid, info.layer_sync, info.keyframe) == (300, 7, 1, True, True)
