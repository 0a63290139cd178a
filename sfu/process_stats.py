"""What the kernel knows about a worker process, read when stats are asked for (never per packet).

- CPU seconds (user + system, every thread): with packets_sent, the CPU per forwarded
  packet, the number the fan-out bench compares across SFUs.
- Resident memory (RSS), for per-consumer cost and leaks over long meetings.
- Datagrams the kernel dropped because a socket's receive buffer was full: loss the
  worker's own counters cannot see (it never received them), the first sign of a
  saturated worker. Counted per socket from /proc/net/udp and accumulated, so the total
  never goes back when a socket closes.
"""

from __future__ import annotations

import os
import socket
import time

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_UDP_TABLES = ("/proc/self/net/udp", "/proc/self/net/udp6")


def cpu_seconds() -> float:
    return time.process_time()


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return 0


def socket_inode(sock: socket.socket | None) -> int | None:
    if sock is None:
        return None
    try:
        return os.fstat(sock.fileno()).st_ino
    except (OSError, ValueError):
        return None


def read_udp_drops(inodes: set[int]) -> dict[int, int]:
    """inode -> datagrams dropped so far, for those of `inodes` the kernel lists."""
    found: dict[int, int] = {}
    for table in _UDP_TABLES:
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
                    if len(fields) >= 13 and int(fields[9]) in inodes:
                        found[int(fields[9])] = int(fields[-1])
        except (OSError, ValueError):
            continue
    return found


class UdpDropMeter:
    """A monotonic total of receive-buffer drops over sockets that come and go."""

    __slots__ = ("_last", "total")

    def __init__(self) -> None:
        self._last: dict[int, int] = {}
        self.total = 0

    def update(self, inodes: set[int]) -> int:
        now = read_udp_drops(inodes)
        for inode, drops in now.items():
            self.total += max(0, drops - self._last.get(inode, 0))
        self._last = now  # closed sockets are forgotten; what they dropped stays counted
        return self.total
