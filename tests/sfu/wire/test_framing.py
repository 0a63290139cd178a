"""sfu.wire.framing: RFC 4571 frames, cut from a stream however TCP splits it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.wire.framing import MAX_FRAME, Deframer, frame

STUN = bytes.fromhex("000100002112a442") + bytes(12)


def test_a_frame_is_the_length_in_network_order_then_the_packet():
    assert frame(STUN) == b"\x00\x14" + STUN
    assert frame(bytes(300))[:2] == b"\x01\x2c"


@pytest.mark.parametrize("size", [0, MAX_FRAME + 1])
def test_frame_refuses_what_sixteen_bits_cannot_carry(size):
    with pytest.raises(ValueError, match="frame length"):
        frame(bytes(size))


def test_packets_split_anywhere_come_out_whole_and_in_order():
    packets = [STUN, bytes([0x80]) + bytes(199), bytes([22]) + bytes(40)]
    stream = b"".join(frame(p) for p in packets)
    for cut in range(len(stream) + 1):
        deframer = Deframer(1500)
        out = deframer.feed(stream[:cut]) + deframer.feed(stream[cut:])
        assert out == packets
        assert deframer.pending == 0


def test_a_byte_at_a_time_holds_a_partial_packet_until_it_is_whole():
    deframer = Deframer(1500)
    data = frame(STUN)
    for byte in data[:-1]:
        assert deframer.feed(bytes([byte])) == []
    assert deframer.pending == len(data) - 1
    assert deframer.feed(data[-1:]) == [STUN]


def test_a_zero_length_frame_is_refused():
    with pytest.raises(ValueError, match="frame length: 0"):
        Deframer(1500).feed(frame(STUN) + b"\x00\x00")


def test_a_length_past_the_limit_is_refused_before_its_bytes_arrive():
    deframer = Deframer(1500)
    with pytest.raises(ValueError, match="1501 bytes, more than 1500"):
        deframer.feed(b"\x05\xdd")  # 1501: refused on the header alone, nothing is held


def test_the_limit_itself_is_accepted():
    packet = bytes([0x80]) + bytes(1499)
    assert Deframer(1500).feed(frame(packet)) == [packet]


@pytest.mark.parametrize("limit", [0, MAX_FRAME + 1])
def test_a_deframer_limit_must_be_a_frame_length(limit):
    with pytest.raises(ValueError, match="max_packet"):
        Deframer(limit)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000), st.integers(1, 50))
def test_random_bytes_give_packets_or_a_value_error_never_anything_else(data, step):
    deframer = Deframer(1500)
    try:
        for start in range(0, len(data), step):
            for packet in deframer.feed(data[start : start + step]):
                assert 0 < len(packet) <= 1500
    except ValueError as exc:
        assert "frame length" in str(exc)
