"""The native forwarding module (sfu/transport/native/forward.c) under fuzzing.

`NativeFuzz(module).run(data)` treats `data` as an RTP packet a worker received: what
the Python side refuses before the module (sfu.wire.rtp.payload_offset's ValueError,
more than MAX_DATAGRAM bytes) stops there, as on the packet path. The rest goes through
every entry point the worker uses (cc_send, cc_send_header, cc_send_rewritten), with
copy parameters drawn from the packet's own bytes (a transport-wide number's offset in
and out of range, body/codec/tail cut anywhere), on a plain route and an SRTP one, and
is checked against the Python path's bytes: every copy the module accepts arrives as
Python would have built it (decrypted, for SRTP), every copy it refuses is one Python
refuses too (a number outside the packet, too long for SRTP).

The corpus is the RTP parser's (tests.fuzz.targets.seeds_rtp). Run in the unit tier on
the normal build (tests/sfu/transport/test_native.py) and under AddressSanitizer by
`python -m bench.native_fuzz` (the module built with -fsanitize=address,undefined).
"""

from __future__ import annotations

import random
import socket
import struct
import zlib

import pylibsrtp

from sfu.transport.native import NativeSender, sockaddr, srtp_context
from sfu.transport.plain import srtp_session
from sfu.transport.srtp import FastSrtp
from sfu.wire import rtp
from tests.fuzz.targets import check

MAX_DATAGRAM = 1500
_HEADER = struct.Struct("!HHII")
KEY = bytes(range(30))


class NativeFuzz:
    def __init__(self, module) -> None:
        self.sender = NativeSender(module)
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sink.bind(("127.0.0.1", 0))
        self.sink.setblocking(False)
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.address = sockaddr(self.sink.getsockname())
        self.plain = self.sender.route(self.out.fileno(), self.address, 0)

    def close(self) -> None:
        self.sink.close()
        self.out.close()

    def run(self, data: bytes) -> None:
        if len(data) > MAX_DATAGRAM:
            return  # refused in Python (MediaSocket: "oversized")
        try:
            rtp.payload_offset(data)
        except ValueError:
            return  # refused in Python ("malformed_rtp")
        rnd = random.Random(zlib.crc32(data))
        first = (data[0] << 8 | data[1]) & 0xFFFF
        seq, ts, ssrc = rnd.getrandbits(16), rnd.getrandbits(32), rnd.getrandbits(32)
        body = data[12:]
        tcc_at = rnd.choice((-1, rnd.randrange(-2, len(body) + 3)))
        tcc_seq = rnd.getrandbits(16)
        cut1 = rnd.randrange(0, len(body) + 1)
        cut2 = rnd.randrange(cut1, len(body) + 1)
        a, c, t = body[:cut1], body[cut1:cut2], body[cut2:]
        sender = self.sender
        expected: list[bytes] = []
        # A copy made in Python (RTX, NACK answers, padding) passes unchanged.
        sender.held += 1
        try:
            check(sender.send(self.plain, data) == len(data), "cc_send: wrong length")
            expected.append(data)
            for parts, call in (((body, b"", b""), "header"), ((a, c, t), "rewritten")):
                want = self._python_copy(first, seq, ts, ssrc, parts, tcc_at, tcc_seq)
                got = self._native_copy(self.plain, call, first, seq, ts, ssrc, parts, tcc_at, tcc_seq)
                check((want is None) == (got is None), f"{call}: native {'refused' if got is None else 'took'} it")
                if want is not None:
                    check(got == len(want), f"{call}: {got} bytes queued, Python makes {len(want)}")
                    expected.append(want)
        finally:
            sender.held -= 1
        sender.flush()
        received = self._receive(len(expected))
        check(received == expected, "what arrived differs from the Python path's bytes")
        self._run_srtp(first, seq, ts, ssrc, (a, c, t), tcc_at, tcc_seq)

    def _run_srtp(self, first, seq, ts, ssrc, parts, tcc_at, tcc_seq) -> None:
        """The same copy protected in C and by FastSrtp (the Python path), each with its own
        session of one key: the same bytes on the wire, or the same refusal (too long for
        SRTP: ValueError; what libsrtp refuses: its pylibsrtp.Error)."""
        session = srtp_session(KEY, outbound=True)
        route = self.sender.route(self.out.fileno(), self.address, srtp_context(session))
        want = self._python_copy(first, seq, ts, ssrc, parts, tcc_at, tcc_seq)
        python_error = native_error = None
        protected = b""
        if want is not None:
            try:
                protected = FastSrtp(srtp_session(KEY, outbound=True)).protect(want)
            except (ValueError, pylibsrtp.Error) as exc:
                python_error = exc
        try:
            got = self._native_copy(route, "rewritten", first, seq, ts, ssrc, parts, tcc_at, tcc_seq)
        except (ValueError, pylibsrtp.Error) as exc:
            native_error, got = exc, None
        if want is None:
            check(got is None, "SRTP: took a transport-wide number outside the packet")
            return
        if python_error is not None or native_error is not None:
            check(type(python_error) is type(native_error) and str(python_error) == str(native_error),
                  f"SRTP: Python says {python_error!r}, native {native_error!r}")
            return
        self.sender.flush()
        (sent,) = self._receive(1)
        check(sent == protected and got == len(sent), "SRTP: the protected copy differs from FastSrtp's")

    @staticmethod
    def _python_copy(first, seq, ts, ssrc, parts, tcc_at, tcc_seq) -> bytes | None:
        """What the Python path sends for these parameters, None where it cannot be made."""
        a, c, t = parts
        if tcc_at >= 0 and tcc_at + 2 > len(a):
            return None
        if tcc_at >= 0:
            a = a[:tcc_at] + tcc_seq.to_bytes(2, "big") + a[tcc_at + 2 :]
        return _HEADER.pack(first, seq, ts, ssrc) + a + c + t

    def _native_copy(self, route, call, first, seq, ts, ssrc, parts, tcc_at, tcc_seq) -> int | None:
        a, c, t = parts
        try:
            if call == "header":
                return self.sender.send_header(route, first, seq, ts, ssrc, a, tcc_at, tcc_seq)
            return self.sender.send_rewritten(route, first, seq, ts, ssrc, a, tcc_at, tcc_seq, c, t)
        except ValueError as exc:
            if "transport-wide" in str(exc):
                return None
            raise

    def _receive(self, count: int) -> list[bytes]:
        out = []
        for _ in range(count):
            try:
                out.append(self.sink.recv(4096))
            except BlockingIOError:
                break
        try:
            extra = self.sink.recv(4096)
        except BlockingIOError:
            return out
        raise AssertionError(f"more copies arrived than were queued ({len(extra)} bytes)")


def seeds() -> list[bytes]:
    from tests.fuzz.targets import seeds_rtp

    return seeds_rtp()
