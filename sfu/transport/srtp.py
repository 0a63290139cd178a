"""SRTP on the hot path: pylibsrtp's libsrtp context, called without its per-packet overhead.

`pylibsrtp.Session.protect` costs about 1.9 µs for a 1200-byte packet, of which about
0.45 µs is its Python wrapper: an `ffi.new("int *")` allocation, type and length checks
and a buffer slice on every call (measured: bench/RESULTS.md, "Hot path profile"). At
fan-out 16 that is paid per forwarded packet. `FastSrtp` wraps an existing Session and
calls the same libsrtp functions through pylibsrtp's own cffi binding with a buffer and
length cell allocated once: one copy in, one copy out (the bytes handed to sendto), the
same results and the same errors (`pylibsrtp.Error`, `ValueError` when too long).

The session's internals (`Session._srtp`, `pylibsrtp._binding`) are private: pylibsrtp
is pinned to 1.0.0 in pyproject.toml, and tests/sfu/transport/test_srtp.py checks each one
(same output as Session, same errors, replay protection kept). Like pylibsrtp's Session,
one FastSrtp must never be used from two threads (one buffer).
"""

from __future__ import annotations

import pylibsrtp
from pylibsrtp import _binding

_ffi = _binding.ffi
_lib = _binding.lib

BUFFER_BYTES = 1500  # as pylibsrtp.Session: a datagram never exceeds max_datagram (≤ 1500 here)
RTP_TRAILER = pylibsrtp.SRTP_MAX_TRAILER_LEN  # type: ignore[attr-defined]
RTCP_TRAILER = pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN  # type: ignore[attr-defined]
_ERRORS = pylibsrtp.ERRORS  # type: ignore[attr-defined]


class FastSrtp:
    """protect/unprotect (RTP and RTCP) of one pylibsrtp.Session, minus the wrapper's cost."""

    __slots__ = ("session", "_ctx", "_cdata", "_buffer", "_length")

    def __init__(self, session: pylibsrtp.Session) -> None:
        self.session = session  # keeps the libsrtp context alive (freed with the Session)
        self._ctx = session._srtp[0]  # type: ignore[attr-defined]
        self._cdata = _ffi.new("char[]", BUFFER_BYTES)
        self._buffer = _ffi.buffer(self._cdata)
        self._length = _ffi.new("int *")

    # protect/unprotect repeat _process's body on purpose: they run once per packet on
    # the hot path, and the shared call would cost a Python call each time.
    def protect(self, packet: bytes) -> bytes:
        size = len(packet)
        if size > BUFFER_BYTES - RTP_TRAILER:
            raise ValueError("packet is too long")
        buffer = self._buffer
        buffer[0:size] = packet
        length = self._length
        length[0] = size
        status = _lib.srtp_protect(self._ctx, self._cdata, length)
        if status:
            raise pylibsrtp.Error(_ERRORS[status])
        return buffer[0 : length[0]]

    def unprotect(self, packet: bytes) -> bytes:
        size = len(packet)
        if size > BUFFER_BYTES:
            raise ValueError("packet is too long")
        buffer = self._buffer
        buffer[0:size] = packet
        length = self._length
        length[0] = size
        status = _lib.srtp_unprotect(self._ctx, self._cdata, length)
        if status:
            raise pylibsrtp.Error(_ERRORS[status])
        return buffer[0 : length[0]]

    def protect_rtcp(self, packet: bytes) -> bytes:
        return self._process(packet, _lib.srtp_protect_rtcp, RTCP_TRAILER)

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        return self._process(packet, _lib.srtp_unprotect_rtcp, 0)

    def _process(self, packet: bytes, function, trailer: int) -> bytes:
        size = len(packet)
        if size > BUFFER_BYTES - trailer:
            raise ValueError("packet is too long")
        buffer = self._buffer
        buffer[0:size] = packet
        length = self._length
        length[0] = size
        status = function(self._ctx, self._cdata, length)
        if status:
            raise pylibsrtp.Error(_ERRORS[status])
        return buffer[0 : length[0]]
