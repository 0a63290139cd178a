"""FastSrtp (sfu/transport/srtp.py): pylibsrtp's libsrtp context without its per-call wrapper.

It reaches into pylibsrtp 1.0 (pinned): `Session._srtp` and `pylibsrtp._binding`. These
tests pin what it relies on and prove it behaves exactly like `pylibsrtp.Session`: same
bytes out, same errors, replay protection kept, garbage never raises anything else.
"""

from __future__ import annotations

import os
import struct

import pylibsrtp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.transport.srtp import FastSrtp
from sfu.wire import rtcp, rtp

KEY = bytes(range(30))


def session(outbound: bool, allow_repeat_tx: bool = False, key: bytes = KEY) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=key,
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND,
        srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    )
    policy.allow_repeat_tx = allow_repeat_tx
    return pylibsrtp.Session(policy)


def packets(count: int, size: int = 1200) -> list[bytes]:
    payload = os.urandom(size - 12)
    return [rtp.build_packet(96, seq, seq * 90, 0x1234, payload=payload) for seq in range(100, 100 + count)]


def test_the_pylibsrtp_internals_it_uses_are_there():
    assert pylibsrtp.__version__ == "1.0.0"
    s = session(True)
    assert s._srtp[0] is not None
    from pylibsrtp import _binding

    for name in ("srtp_protect", "srtp_unprotect", "srtp_protect_rtcp", "srtp_unprotect_rtcp"):
        assert callable(getattr(_binding.lib, name))
    assert len(pylibsrtp.ERRORS) > 10 and pylibsrtp.SRTP_MAX_TRAILER_LEN and pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN


def test_protect_gives_the_same_bytes_as_pylibsrtp_and_both_decrypt():
    reference, fast = session(True), FastSrtp(session(True))
    rx_reference, rx_fast = session(False), FastSrtp(session(False))
    for packet in packets(50):
        protected = fast.protect(packet)
        assert protected == reference.protect(packet)
        assert isinstance(protected, bytes) and len(protected) == len(packet) + 10
        assert rx_fast.unprotect(protected) == packet
        assert rx_reference.unprotect(protected) == packet


def test_rtcp_round_trip_matches_pylibsrtp():
    reference, fast = session(True), FastSrtp(session(True))
    rx = FastSrtp(session(False))
    for i in range(5):
        packet = rtcp.build_pli(0xAA + i, 0xBB)
        protected = fast.protect_rtcp(packet)
        assert protected == reference.protect_rtcp(packet)
        assert rx.unprotect_rtcp(protected) == packet


def test_a_wrong_key_and_a_replay_raise_pylibsrtp_errors():
    packet = packets(1)[0]
    protected = FastSrtp(session(True)).protect(packet)
    with pytest.raises(pylibsrtp.Error, match="authentication failure"):
        FastSrtp(session(False, key=bytes(30))).unprotect(protected)
    rx = FastSrtp(session(False))
    assert rx.unprotect(protected) == packet
    with pytest.raises(pylibsrtp.Error, match="replay"):
        rx.unprotect(protected)
    tx = FastSrtp(session(True))
    tx.protect(packet)
    with pytest.raises(pylibsrtp.Error, match="replay"):
        tx.protect(packet)  # the same sequence number twice, without allow_repeat_tx


def test_allow_repeat_tx_is_honoured_for_nack_resends():
    tx = FastSrtp(session(True, allow_repeat_tx=True))
    packet = packets(1)[0]
    assert tx.protect(packet) == tx.protect(packet)


def test_too_long_is_a_value_error_like_pylibsrtp():
    tx = FastSrtp(session(True))
    too_long = packets(1, size=1500 - 144 + 1)[0]
    with pytest.raises(ValueError):
        session(True).protect(too_long)
    with pytest.raises(ValueError):
        tx.protect(too_long)
    with pytest.raises(ValueError):
        FastSrtp(session(False)).unprotect(b"\x80" * 1501)


def test_the_output_is_a_copy_not_a_view_of_the_reused_buffer():
    tx = FastSrtp(session(True))
    first, second = packets(2)
    out1 = tx.protect(first)
    kept = bytes(out1)
    tx.protect(second)
    assert out1 == kept


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=1600))
def test_garbage_raises_only_pylibsrtp_error_or_value_error(data):
    rx = FastSrtp(session(False))
    for method in (rx.unprotect, rx.unprotect_rtcp):
        try:
            method(data)
        except (pylibsrtp.Error, ValueError):
            pass


def test_a_sequence_with_rollover_decrypts():
    tx, rx = FastSrtp(session(True)), FastSrtp(session(False))
    payload = b"p" * 100
    for i in range(70_000 - 5, 70_000 + 5):  # across the 16-bit wrap: the ROC advances
        packet = rtp.build_packet(96, i & 0xFFFF, i, 7, payload=payload)
        assert rx.unprotect(tx.protect(packet)) == packet
    assert struct.unpack("!H", packet[2:4])[0] == (70_000 + 4) & 0xFFFF
