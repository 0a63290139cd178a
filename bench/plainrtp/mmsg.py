"""A nearly free packet source: packets built before the phase, sent with sendmmsg(2).

The scaling part (two workers against one) runs on a machine with no third CPU, so
whatever the generator spends is taken from the workers. Here every packet of a phase is
built (and SRTP-protected with the stream's own session, in sequence order: each
(ROC, sequence number) once, in order) before the phase starts, into one flat buffer per
stream; a ctypes array of `struct mmsghdr` points into it once, so a batch of any size
goes out in one `sendmmsg` system call with no Python work per packet.

The send time written into each payload is then the time the packet was built, not when
it left: phases sent this way must not report latency (the scaling part does not).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import struct
from array import array

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_sendmmsg = _libc.sendmmsg
_sendmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
_sendmmsg.restype = ctypes.c_int

UIO_MAXIOV = 1024  # the kernel's limit on messages per sendmmsg call
MAX_PREBUILT_BYTES = 2 * 1024 ** 3  # every stream's pre-built packets together, at most


class _IoVec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class _MsgHdr(ctypes.Structure):
    _fields_ = (
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    )


class _MMsgHdr(ctypes.Structure):
    _fields_ = (("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint))


MMSGHDR_SIZE = ctypes.sizeof(_MMsgHdr)
IOVEC_SIZE = ctypes.sizeof(_IoVec)
_WORDS = MMSGHDR_SIZE // 8  # the structures are built as arrays of 64-bit words
_IOV_WORD = _MsgHdr.msg_iov.offset // 8
_NAME_WORD = _MsgHdr.msg_name.offset // 8
_NAMELEN_WORD = _MsgHdr.msg_namelen.offset // 8
_IOVLEN_WORD = _MsgHdr.msg_iovlen.offset // 8
assert MMSGHDR_SIZE % 8 == 0 and IOVEC_SIZE == 16 and _NAMELEN_WORD != _IOV_WORD


def sockaddr_in(address: tuple[str, int]) -> ctypes.Array:
    """struct sockaddr_in for an IPv4 (host, port)."""
    raw = struct.pack("=H", socket.AF_INET) + struct.pack("!H", address[1]) + socket.inet_aton(address[0]) + bytes(8)
    return ctypes.create_string_buffer(raw, len(raw))


class PrebuiltStream:
    """One stream's packets, built ahead into a flat buffer, sent in order by sendmmsg.

    `prepare(n)` makes sure at least n unsent packets are ready (packets built earlier and
    not sent come first, so the sequence never skips nor repeats); `send(sock, n)` sends
    the next n (at most) and returns how many the kernel took."""

    def __init__(self, source, target: tuple[str, int], budget_bytes: int = MAX_PREBUILT_BYTES) -> None:
        self.source = source  # a packets.PacketSource: its SRTP session and sequence go on from here
        self.target = target
        self.budget_bytes = budget_bytes
        self._name = sockaddr_in(target)
        self._slot = 0
        self._buf: ctypes.Array | None = None
        self._iov: array | None = None
        self._msgs: array | None = None
        self._msgs_addr = 0
        self._next = 0
        self._count = 0
        self.build_s = 0.0
        self.errors = 0

    @property
    def remaining(self) -> int:
        return self._count - self._next

    def prepare(self, count: int, send_time_ns: int = 0) -> int:
        """Have at least `count` packets ready (bounded by the byte budget); returns how many are."""
        if self.remaining >= count:
            return self.remaining
        first = self.source.next_packet(send_time_ns)
        slot = len(first)
        if self._slot and slot != self._slot:
            raise ValueError("packets changed size between phases")
        count = max(1, min(count, self.budget_bytes // slot))
        keep = self.remaining
        buf = ctypes.create_string_buffer(count * slot)
        view = memoryview(buf).cast("B")
        if keep:
            assert self._buf is not None
            old = memoryview(self._buf).cast("B")
            view[: keep * slot] = old[self._next * slot : self._count * slot]
        view[keep * slot : (keep + 1) * slot] = first
        next_packet = self.source.next_packet
        for i in range(keep + 1, count):
            packet = next_packet(send_time_ns)
            if len(packet) != slot:
                raise ValueError("the stream's packets must all have the same size")
            view[i * slot : (i + 1) * slot] = packet
        base = ctypes.addressof(buf)
        iov = array("Q", bytes(count * IOVEC_SIZE))
        iov[0::2] = array("Q", range(base, base + count * slot, slot))
        iov[1::2] = array("Q", [slot]) * count
        iov_base = iov.buffer_info()[0]
        msgs = array("Q", bytes(count * MMSGHDR_SIZE))
        msgs[_NAME_WORD::_WORDS] = array("Q", [ctypes.addressof(self._name)]) * count
        msgs[_NAMELEN_WORD::_WORDS] = array("Q", [ctypes.sizeof(self._name)]) * count
        msgs[_IOV_WORD::_WORDS] = array("Q", range(iov_base, iov_base + count * IOVEC_SIZE, IOVEC_SIZE))
        msgs[_IOVLEN_WORD::_WORDS] = array("Q", [1]) * count
        self._buf, self._iov, self._msgs, self._slot = buf, iov, msgs, slot
        self._msgs_addr = msgs.buffer_info()[0]
        self._next, self._count = 0, count
        return count

    def send(self, sock: socket.socket, count: int) -> int:
        """Send up to `count` of the ready packets (one sendmmsg per 1024 at most); returns how
        many were used up (sent, or refused by the kernel and counted in `errors`)."""
        count = min(count, self.remaining)
        fd = sock.fileno()
        done = 0
        while done < count:
            n = min(count - done, UIO_MAXIOV)
            sent = _sendmmsg(fd, self._msgs_addr + self._next * MMSGHDR_SIZE, n, 0)
            if sent < 0:
                err = ctypes.get_errno()
                if err == 4:  # EINTR
                    continue
                # ENOBUFS/EAGAIN/ECONNREFUSED: the first message failed. Count it and move on,
                # as the one-packet path does; the packet is not sent (a gap the receiver sees).
                self.errors += 1
                self._next += 1
                done += 1
                continue
            self._next += sent
            done += sent
            if sent < n:
                break  # the rest is for the next batch
        return done

    def release(self) -> None:
        """Free the buffers (the unsent packets are dropped: the sequence skips them)."""
        self._buf = self._iov = self._msgs = None
        self._msgs_addr = self._next = self._count = 0
