"""The announcer (sfu/engine/announcer.py) without a network: bytes out of consumers' sinks.

Pacing is driven by explicit `tick(now)` calls (a fake clock): no sleeping. The clips are
the shipped notices (common/notices/*.opus-frames) or made-up Opus packets with a real
20 ms TOC byte.
"""

from __future__ import annotations

import os

import pytest

from common.notices import NOTICE_KINDS, notice_frames
from sfu.engine import feedback
from sfu.engine.announcer import (
    EARLY_TOLERANCE_S,
    FRAME_SAMPLES,
    FRAME_SECONDS,
    MAX_CATCH_UP_S,
    MAX_WAIT_S,
    WAIT_POLL_S,
    Announcer,
    check_clip,
    opus_samples,
)
from sfu.engine.consumer import Consumer
from sfu.engine.stats import Counters
from sfu.wire import rtcp, rtp

PT = 111
T0 = 1000.0


class Sink:
    """A subscriber transport reduced to what it was asked to send."""

    native_to = None  # the Python path (sfu.transport.native)

    def __init__(self) -> None:
        self.rtcp_ssrc = 0xCAFE
        self.connected = True
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []

    def send_rtp(self, packet: bytes) -> None:
        self.rtp.append(packet)

    def send_rtcp(self, packet: bytes) -> None:
        self.rtcp.append(packet)

    def next_transport_sequence(self) -> int:
        return 0


def clip(count: int, tag: bytes = b"") -> list[bytes]:
    # TOC 0x78: config 15 (hybrid, 20 ms), code 0 (one frame), like the shipped notices.
    return [b"\x78" + tag + i.to_bytes(2, "big") + os.urandom(40) for i in range(count)]


def make(count: int = 2):
    counters = Counters()
    announcer = Announcer("announcer-r", PT, counters, lambda: T0, Sink())  # Sink: its direct transport
    consumers = []
    for i in range(count):
        consumer = Consumer(f"c{i}", announcer, Sink(), str(i), 0x1000 + i, PT, counters)
        announcer.add_consumer(consumer)
        consumer.activate(None, 0, False)
        consumers.append(consumer)
    return announcer, consumers, counters


def headers(consumer: Consumer) -> list[rtp.RtpHeader]:
    return [rtp.parse_header(p) for p in consumer.sink.rtp]


def payloads(consumer: Consumer) -> list[bytes]:
    return [p[rtp.payload_offset(p) :] for p in consumer.sink.rtp]


def run(announcer: Announcer, until: float, step: float = 0.001) -> int:
    """Tick like a punctual timer would, every `step` seconds up to `until`."""
    sent, now = 0, T0
    while now <= until + 1e-9:
        sent += announcer.tick(now)
        now += step
    return sent


def contiguous(values: list[int], step: int, modulo: int) -> bool:
    return all((b - a) % modulo == step for a, b in zip(values, values[1:]))


# ------------------------------------------------------------------ the clip itself


def test_the_shipped_notices_are_valid_clips_of_20_ms_packets():
    for kind in NOTICE_KINDS:
        frames = notice_frames(kind)
        check_clip(frames)
        assert all(opus_samples(f) == FRAME_SAMPLES for f in frames)


@pytest.mark.parametrize(
    ("packet", "samples"),
    [
        (bytes([0x78]), 960),  # config 15: hybrid FB 20 ms; code 0: one frame
        (bytes([0x70]), 480),  # config 14: hybrid FB 10 ms
        (bytes([0x79]), 1920),  # code 1: two 20 ms frames
        (bytes([0x1B, 0x01]), 2880),  # config 3: SILK 60 ms; code 3 with a count of 1
        (bytes([0xF8]), 960),  # config 31: CELT FB 20 ms
        (bytes([0xE0]), 120),  # config 28: CELT FB 2.5 ms
        (bytes([0x7B, 0x03]), 2880),  # code 3: three 20 ms frames
    ],
)
def test_opus_duration_from_the_toc_byte(packet, samples):
    assert opus_samples(packet + b"\x00" * 10) == samples


def test_opus_duration_needs_the_frame_count_of_code_3():
    for packet in (bytes([0x7B]), bytes([0x7B, 0x00])):
        with pytest.raises(ValueError, match="frame count"):
            opus_samples(packet)
    with pytest.raises(ValueError, match="empty"):
        opus_samples(b"")


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([], "frames: empty"),
        ([b"\x78" + b"x" * 10, b""], r"frames\[1\]: 0 bytes"),
        ([b"\x70" + b"x" * 10], r"frames\[0\]: 10 ms"),
        ([b"\x78" + b"x" * 1400], r"frames\[0\]: 1401 bytes"),
        ([b"\x78x"] * 3001, "at most 3000"),
    ],
)
def test_bad_clips_are_refused_with_the_frame_named(frames, message):
    announcer, (consumer,), _ = make(1)
    with pytest.raises(ValueError, match=message):
        announcer.play(frames, [consumer], T0)
    assert announcer.next_due is None and announcer.tick(T0 + 1) == 0


# ------------------------------------------------------------------ pacing


def test_one_packet_per_20_ms_at_absolute_deadlines():
    announcer, (a, b), _ = make(2)
    frames = clip(5)
    assert announcer.play(frames, [a, b], T0) == 2
    assert announcer.next_due == T0
    assert announcer.tick(T0) == 2  # frame 0 to both, at once
    assert announcer.next_due == pytest.approx(T0 + FRAME_SECONDS)
    assert announcer.tick(T0 + 0.010) == 0  # nothing due yet
    # A timer that fires slightly early (uvloop rounds to ms) still sends the frame.
    assert announcer.tick(T0 + FRAME_SECONDS - EARLY_TOLERANCE_S / 2) == 2
    # A late timer catches up (two frames now) without moving later deadlines.
    assert announcer.tick(T0 + 3 * FRAME_SECONDS + 0.005) == 4
    assert announcer.next_due == pytest.approx(T0 + 4 * FRAME_SECONDS)
    assert announcer.tick(T0 + 4 * FRAME_SECONDS) == 2
    assert announcer.next_due is None  # played to the end
    assert [len(c.sink.rtp) for c in (a, b)] == [5, 5]
    assert payloads(a) == payloads(b) == frames


def test_a_stalled_loop_resumes_the_pace_instead_of_bursting():
    announcer, (a,), _ = make(1)
    announcer.play(clip(10), [a], T0)
    announcer.tick(T0)
    stalled = T0 + 1.0  # the loop was blocked for a second: 49 frames overdue
    assert announcer.tick(stalled) == 1
    assert announcer.next_due == pytest.approx(stalled + FRAME_SECONDS)
    # Late by a little less than the catch-up window: the frames due meanwhile go now.
    late = MAX_CATCH_UP_S - 0.01
    assert announcer.tick(stalled + FRAME_SECONDS + late) == 1 + int(late / FRAME_SECONDS)
    while announcer.next_due is not None:
        announcer.tick(announcer.next_due)
    assert len(a.sink.rtp) == 10  # nothing skipped: the whole notice is heard
    h = headers(a)
    assert contiguous([x.sequence_number for x in h], 1, 1 << 16)
    assert contiguous([x.timestamp for x in h], FRAME_SAMPLES, 1 << 32)  # the audio is contiguous


def test_the_whole_notice_takes_its_length_in_time():
    announcer, (a,), _ = make(1)
    frames = notice_frames("recording-started")
    announcer.play(frames, [a], T0)
    sent_at = []
    now = T0
    while announcer.next_due is not None:
        now = max(now, announcer.next_due)
        if announcer.tick(now):
            sent_at.append(now)
        now += 0.0007  # a timer with some jitter of its own
    assert len(a.sink.rtp) == len(frames)
    span = sent_at[-1] - sent_at[0]
    assert abs(span - (len(frames) - 1) * FRAME_SECONDS) < 0.002


# ------------------------------------------------------------------ packets


def test_packets_carry_the_consumer_header_the_marker_and_the_payload_intact():
    announcer, (a, b), _ = make(2)
    frames = notice_frames("recording-stopped")
    announcer.play(frames, [a, b], T0)
    run(announcer, T0 + len(frames) * FRAME_SECONDS)
    for consumer in (a, b):
        h = headers(consumer)
        assert {x.ssrc for x in h} == {consumer.ssrc}
        assert {x.payload_type for x in h} == {PT}
        assert [x.marker for x in h] == [True] + [False] * (len(frames) - 1)
        assert contiguous([x.sequence_number for x in h], 1, 1 << 16)
        assert contiguous([x.timestamp for x in h], FRAME_SAMPLES, 1 << 32)
        assert all(len(p) == 12 + len(f) for p, f in zip(consumer.sink.rtp, frames))  # no extension, no CSRC
        assert payloads(consumer) == frames
        assert consumer.sink.rtp[0][0] == 0x80  # V=2, no padding, no extension
    # Each consumer has its own numbering: random starting points, as for any consumer.
    assert (headers(a)[0].sequence_number, headers(a)[0].timestamp) != (
        headers(b)[0].sequence_number,
        headers(b)[0].timestamp,
    )


def test_each_consumer_line_continues_across_plays():
    announcer, (a, b), _ = make(2)
    first, second = clip(3, b"A"), clip(4, b"B")
    announcer.play(first, [a, b], T0)
    run(announcer, T0 + 0.1)
    later = T0 + 1.0
    announcer.play(second, [a], later)  # only a hears the second one
    while announcer.next_due is not None:
        announcer.tick(announcer.next_due)
    assert payloads(a) == first + second
    assert payloads(b) == first  # not targeted: nothing more
    h = headers(a)
    assert contiguous([x.sequence_number for x in h], 1, 1 << 16)  # no gap: nothing was lost
    assert [x.marker for x in h] == [True, False, False, True, False, False, False]
    # The timestamp advances with the silence between the plays (RFC 3550 §5.1).
    gap = (h[3].timestamp - h[2].timestamp) % (1 << 32)
    silence = later - (T0 + 2 * FRAME_SECONDS)
    assert gap == round(silence / FRAME_SECONDS) * FRAME_SAMPLES
    assert contiguous([x.timestamp for x in h[3:]], FRAME_SAMPLES, 1 << 32)


def test_a_new_play_replaces_the_old_one_for_its_consumers_only():
    announcer, (a, b), _ = make(2)
    old, new = clip(10, b"O"), clip(3, b"N")
    announcer.play(old, [a, b], T0)
    for i in range(3):
        announcer.tick(T0 + i * FRAME_SECONDS)
    replaced_at = T0 + 3 * FRAME_SECONDS - 0.005  # between two frames of the old play
    announcer.play(new, [a], replaced_at)
    while announcer.next_due is not None:
        announcer.tick(announcer.next_due)
    assert payloads(a) == old[:3] + new  # a leaves the old play at once
    assert payloads(b) == old  # b hears the old one to its end
    h = headers(a)
    assert contiguous([x.sequence_number for x in h], 1, 1 << 16)
    assert [x.marker for x in h] == [True, False, False, True, False, False]
    # Not even 20 ms since its last packet: the new play still moves on by one frame.
    assert (h[3].timestamp - h[2].timestamp) % (1 << 32) == FRAME_SAMPLES
    assert contiguous([x.sequence_number for x in headers(b)], 1, 1 << 16)


def test_a_consumer_listed_twice_gets_each_frame_once():
    announcer, (a,), _ = make(1)
    assert announcer.play(clip(3), [a, a], T0) == 1
    run(announcer, T0 + 0.1)
    assert len(a.sink.rtp) == 3


def test_a_play_to_no_one_does_nothing():
    announcer, _, _ = make(0)
    assert announcer.play(clip(3), [], T0) == 0
    assert announcer.next_due is None


# ------------------------------------------------------------------ lifecycle, feedback


def test_a_consumer_closed_mid_play_stops_receiving_and_is_forgotten():
    announcer, (a, b), _ = make(2)
    announcer.play(clip(5), [a, b], T0)
    announcer.tick(T0)
    a.close()
    assert a not in announcer.consumers
    run(announcer, T0 + 0.2)
    assert len(a.sink.rtp) == 1 and len(b.sink.rtp) == 5
    b.close()
    announcer.play(clip(5), [a, b], T0 + 1)  # closed consumers are skipped
    assert announcer.next_due is None


def test_a_play_whose_every_consumer_left_ends():
    announcer, (a,), _ = make(1)
    announcer.play(clip(50), [a], T0)
    announcer.tick(T0)
    a.close()
    announcer.tick(T0 + FRAME_SECONDS)
    assert announcer.next_due is None


def test_a_consumer_that_cannot_receive_yet_gets_the_whole_clip_once_it_can():
    announcer, (ready,), counters = make(1)
    joiner = Consumer("w", announcer, Sink(), "1", 0x2222, PT, counters)
    announcer.add_consumer(joiner)  # the joiner has not answered the offer yet
    frames = clip(6)
    assert announcer.play(frames, [ready, joiner], T0) == 2
    assert announcer.tick(T0) == 1 and announcer.tick(T0 + FRAME_SECONDS) == 1
    assert joiner.sink.rtp == []
    joiner.activate(None, 0, False)  # the answer arrives between two frames
    answered = T0 + 0.03
    assert announcer.next_due <= T0 + 2 * FRAME_SECONDS
    announcer.tick(answered)
    while announcer.next_due is not None:
        announcer.tick(announcer.next_due)
    assert payloads(joiner) == frames and payloads(ready) == frames  # the joiner hears it all
    h = headers(joiner)
    assert h[0].marker and contiguous([x.sequence_number for x in h], 1, 1 << 16)
    assert contiguous([x.timestamp for x in h], FRAME_SAMPLES, 1 << 32)


def test_a_consumer_that_never_can_receive_is_given_up_after_the_wait():
    announcer, _, counters = make(0)
    joiner = Consumer("w", announcer, Sink(), "0", 0x2222, PT, counters)
    announcer.add_consumer(joiner)
    announcer.play(clip(3), [joiner], T0)
    polls = 0
    while announcer.next_due is not None and polls < 1000:
        assert announcer.tick(announcer.next_due) == 0
        polls += 1
    assert announcer.next_due is None  # stopped looking
    assert polls == pytest.approx(MAX_WAIT_S / WAIT_POLL_S, abs=2)  # at 20 Hz, not per frame
    joiner.activate(None, 0, False)
    announcer.tick(T0 + MAX_WAIT_S + 1)
    assert joiner.sink.rtp == []
    # A new play is a new chance.
    announcer.play(clip(2), [joiner], T0 + MAX_WAIT_S + 2)
    while announcer.next_due is not None:
        announcer.tick(announcer.next_due)
    assert len(joiner.sink.rtp) == 2


def test_a_waiting_consumer_closed_or_replayed_is_not_started_twice():
    announcer, _, counters = make(0)
    gone = Consumer("g", announcer, Sink(), "0", 0x3333, PT, counters)
    late = Consumer("l", announcer, Sink(), "1", 0x4444, PT, counters)
    for consumer in (gone, late):
        announcer.add_consumer(consumer)
    first, second = clip(3, b"1"), clip(2, b"2")
    announcer.play(first, [gone, late], T0)
    gone.close()
    announcer.play(second, [late], T0 + 0.01)  # replaces the clip it was waiting for
    late.activate(None, 0, False)
    while announcer.next_due is not None:
        announcer.tick(announcer.next_due)
    assert payloads(late) == second and gone.sink.rtp == []


def test_a_paused_announcer_is_silent_and_resumes():
    announcer, (a,), _ = make(1)
    announcer.set_paused(True)
    announcer.play(clip(3), [a], T0)
    run(announcer, T0 + 0.1)
    assert a.sink.rtp == []
    announcer.set_paused(False)
    announcer.play(clip(3), [a], T0 + 1)
    while announcer.next_due is not None:
        announcer.tick(announcer.next_due)
    assert len(a.sink.rtp) == 3 and headers(a)[0].marker


def test_nack_and_pli_for_the_announcer_are_counted_and_answered_by_nothing():
    announcer, (a,), counters = make(1)
    announcer.play(clip(3), [a], T0)
    run(announcer, T0 + 0.1)
    lost = headers(a)[1].sequence_number
    consumers_by_ssrc = {a.ssrc: a}
    compound = rtcp.build_nack(0xABCD, a.ssrc, [lost]) + rtcp.build_pli(0xABCD, a.ssrc)
    feedback.handle_rtcp(compound, {}, consumers_by_ssrc, counters)
    assert counters.nack_requested == 1 and counters.nack_missed == 1 and counters.nack_answered == 0
    assert counters.pli_received == 1 and counters.pli_sent == 0
    assert len(a.sink.rtp) == 3 and a.sink.rtcp == []  # nothing resent, nothing relayed
    announcer.poll_keyframe_request()  # the worker's keyframe poll: nothing to ask anyone
    assert announcer.sink.rtcp == []


def test_rtp_routed_to_the_announcer_is_dropped_not_forwarded():
    announcer, (a,), counters = make(1)
    announcer.on_rtp(rtp.build_packet(PT, 1, 0, 42, payload=b"x" * 20), 42)
    assert a.sink.rtp == [] and counters.dropped["unknown_ssrc"] == 1


def test_close_ends_every_play():
    announcer, (a, b), _ = make(2)
    announcer.play(clip(5), [a, b], T0)
    announcer.close()
    assert announcer.next_due is None and announcer.tick(T0 + 1) == 0
    assert a.closed and b.closed and announcer.consumers == []
