"""The native forwarding path (issue 15): the per-copy work of a forwarded packet in C.

`sfu.transport.native._forward` (forward.c, built by cffi in API mode: build.py, run by
`pip install`) writes each copy's header, protects it with the libsrtp pylibsrtp loaded
(its `srtp_protect` and each session's `srtp_t`, as addresses: one crypto library) and
queues it; `NativeSender.flush` sends the queue with one `sendmmsg` per socket. Python
still decides everything: which consumers get a packet, their numbers, every counter.

`load(mode)` picks the path once per process (`sfu.native`: auto, on, off) and logs
which one is in use; the Python path (each transport's `send_rtp`) is the reference and
the fallback. Who uses it: `sfu.transport.webrtc.WebRtcTransport.send_rewritten` /
`send_rtp` and `sfu.transport.plain.PlainTransport.send_rtp`, through `route` (the
socket, address and SRTP context one transport sends to), flushed at the end of each
producer's fan-out (`sfu.engine.producer.Producer.flush_sends`) and of each datagram.
"""

from __future__ import annotations

import logging
import socket
import struct
from typing import TYPE_CHECKING

import pylibsrtp
from pylibsrtp import _binding

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger(__name__)

MODES = ("auto", "on", "off")
_ERRORS = pylibsrtp.ERRORS  # type: ignore[attr-defined]
_FAMILY = struct.Struct("=H")
_PORT = struct.Struct("!H")
_FULL = -5


class NativeUnavailable(RuntimeError):
    """sfu.native is on but the module cannot be loaded."""


def _module():
    from sfu.transport.native import _forward  # built by setup.py; absent without a compiler

    return _forward


def load(mode: str) -> NativeSender | None:
    """The worker's sender, or None for the Python path; says which in the log."""
    if mode not in MODES:
        raise ValueError(f"sfu.native: {mode!r}, expected one of {', '.join(MODES)}")
    if mode == "off":
        log.info("forwarding path: Python (sfu.native: off)")
        return None
    try:
        module = _module()
    except ImportError as exc:
        if mode == "on":
            raise NativeUnavailable(f"sfu.native is on but the native module cannot be loaded: {exc}") from exc
        log.warning("forwarding path: Python (the native module is not built: %s; install gcc and python3-dev, "
                    "then pip install -e . again)", exc)
        return None
    log.info("forwarding path: native (sendmmsg batches, libsrtp through pylibsrtp)")
    return NativeSender(module)


def sockaddr(addr: tuple) -> bytes | None:
    """`struct sockaddr_in` / `sockaddr_in6` bytes of a UDP address; None for what the
    native path does not send to (an ICE-TCP connection's key)."""
    if len(addr) != 2:
        return None
    host, port = addr[0], addr[1]
    try:
        return _FAMILY.pack(socket.AF_INET) + _PORT.pack(port) + socket.inet_pton(socket.AF_INET, host) + bytes(8)
    except OSError:
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        return None
    return _FAMILY.pack(socket.AF_INET6) + _PORT.pack(port) + bytes(4) + packed + bytes(4)


def address_of(raw: bytes) -> tuple[str, int] | str:
    """The address of sockaddr bytes as Python's socket calls take it (the rare path:
    copies the kernel refused): (host, port), or a Unix socket's path (tests)."""
    family = _FAMILY.unpack_from(raw)[0]
    if family == socket.AF_UNIX:
        return raw[2:].split(b"\0", 1)[0].decode()
    port = _PORT.unpack_from(raw, 2)[0]
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port


def srtp_context(session: pylibsrtp.Session) -> int:
    """The address of a pylibsrtp Session's `srtp_t` (kept alive by the Session)."""
    return int(_binding.ffi.cast("uintptr_t", session._srtp[0]))  # type: ignore[attr-defined]


class NativeSender:
    """The worker's one queue of outgoing copies (a C `struct cc_batch`)."""

    __slots__ = (
        "_addr",
        "_addrlen",
        "_data",
        "_fd",
        "batch",
        "endpoints",
        "ffi",
        "header",
        "held",
        "lib",
        "module",
        "rewritten",
    )

    def __init__(self, module) -> None:
        self.module = module
        self.lib = module.lib
        self.ffi = module.ffi
        protect = int(_binding.ffi.cast("uintptr_t", _binding.ffi.addressof(_binding.lib, "srtp_protect")))
        self.batch = self.ffi.gc(self.lib.cc_batch_new(protect), self.lib.cc_batch_free)
        if self.batch == self.ffi.NULL:
            raise MemoryError("cc_batch_new")
        self.held = 0  # > 0 inside a datagram's handling: flushed at its end
        # The two per-copy calls, for the transports to call with the batch themselves
        # (one Python call less per copy; `settle` handles what they refuse):
        # header(batch, route, first, seq, ts, ssrc, body, len(body), tcc_at, tcc_seq) and
        # rewritten(..., tcc_seq, codec, len(codec), tail, len(tail)).
        self.header = self.lib.cc_send_header
        self.rewritten = self.lib.cc_send_rewritten
        # Each sending socket's event-loop transport, by descriptor: where copies the
        # kernel refused (its buffer full) are queued, as the Python path does.
        self.endpoints: dict[int, asyncio.DatagramTransport] = {}
        self._fd = self.ffi.new("int *")
        self._data = self.ffi.new("const char **")
        self._addr = self.ffi.new("const char **")
        self._addrlen = self.ffi.new("int *")

    def route(self, fd: int, addr: bytes, srtp: int):
        """Where one transport sends (a C `struct cc_route`, freed with the object):
        its socket's descriptor, sockaddr bytes, srtp_t address (0: plain)."""
        made = self.lib.cc_route_new(fd, addr, len(addr), srtp)
        if made == self.ffi.NULL:
            raise ValueError(f"native route: descriptor {fd}, {len(addr)}-byte address")
        return self.ffi.gc(made, self.lib.cc_route_free)

    def send(self, route, packet: bytes) -> int:
        """Queue one copy made in Python; its length on the wire (after SRTP)."""
        if type(packet) is not bytes:
            packet = bytes(packet)  # cffi passes bytes' own buffer; anything else is copied once
        result = self.lib.cc_send(self.batch, route, packet, len(packet))
        if result == _FULL:
            self.flush()
            result = self.lib.cc_send(self.batch, route, packet, len(packet))
        if result < 0:
            raise self._error(result)
        if not self.held:
            self.flush()
        return result

    def send_header(self, route, first: int, seq: int, ts: int, ssrc: int, body: bytes, tcc_at: int,
                    tcc_seq: int) -> int:
        """Queue one copy written in C: the 12-byte header from first/seq/ts/ssrc, then
        body (its transport-wide number at tcc_at, -1: none)."""
        result = self.lib.cc_send_header(self.batch, route, first, seq, ts, ssrc, body, len(body), tcc_at, tcc_seq)
        if result == _FULL:
            self.flush()
            result = self.lib.cc_send_header(self.batch, route, first, seq, ts, ssrc, body, len(body), tcc_at,
                                             tcc_seq)
        if result < 0:
            raise self._error(result)
        if not self.held:
            self.flush()
        return result

    def send_rewritten(self, route, first: int, seq: int, ts: int, ssrc: int, body: bytes, tcc_at: int,
                       tcc_seq: int, codec: bytes, tail: bytes) -> int:
        """send_header with a simulcast consumer's codec bytes and the rest after body."""
        lib = self.lib
        result = lib.cc_send_rewritten(self.batch, route, first, seq, ts, ssrc, body, len(body), tcc_at, tcc_seq,
                                       codec, len(codec), tail, len(tail))
        if result == _FULL:
            self.flush()
            result = lib.cc_send_rewritten(self.batch, route, first, seq, ts, ssrc, body, len(body), tcc_at,
                                           tcc_seq, codec, len(codec), tail, len(tail))
        if result < 0:
            raise self._error(result)
        if not self.held:
            self.flush()
        return result

    def settle(self, result: int, function, args: tuple) -> int:
        """A negative result of header/rewritten: full (flush, call again) or an error
        (raised as the Python path raises it)."""
        if result == _FULL:
            self.flush()
            result = function(self.batch, *args)
        if result < 0:
            raise self._error(result)
        return result

    def flush(self) -> None:
        """Send what is queued; what the kernel's full buffer refused goes to the event
        loop's transport (which queues it), as the Python path's sendto does."""
        lib = self.lib
        if not lib.cc_count(self.batch):
            return
        unsent = lib.cc_flush(self.batch)
        if unsent:
            self._queue_unsent(unsent)

    def _queue_unsent(self, unsent: int) -> None:
        lib, ffi = self.lib, self.ffi
        for index in range(unsent):
            size = lib.cc_unsent(self.batch, index, self._fd, self._data, self._addr, self._addrlen)
            udp = self.endpoints.get(self._fd[0])
            if size >= 0 and udp is not None and not udp.is_closing():
                raw = ffi.buffer(self._addr[0], self._addrlen[0])[:]
                udp.sendto(ffi.buffer(self._data[0], size)[:], address_of(raw))
        lib.cc_clear(self.batch)

    @property
    def send_errors(self) -> int:
        return self.lib.cc_send_errors(self.batch)

    @staticmethod
    def _error(code: int) -> Exception:
        # The errors FastSrtp raises for the same packet on the Python path.
        if code <= -100:
            status = -100 - code
            return pylibsrtp.Error(_ERRORS[status] if status < len(_ERRORS) else f"srtp error {status}")
        if code == -1:
            return ValueError("packet is too long")
        if code == -4:
            return ValueError("transport-wide sequence number outside the packet")
        return ValueError(f"native send refused the copy (code {code})")
