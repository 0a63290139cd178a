"""A reorder buffer for one RTP stream: packets go in as they arrive, come out in
sequence-number order, and a hole is waited for at most a bounded time (or a bounded
number of packets behind it) before it is given up on and counted.

Sequence numbers are 16-bit and wrap (RFC 3550 §5.1); they are unwrapped into an
ever-growing integer with RFC 1982 serial arithmetic. Time comes from an injected clock
(seconds); nothing here sleeps: the owner calls `poll()` at `next_deadline()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sfu.wire.rtp import SEQUENCE_MASK, seq_diff

from recorder.media.packet import MediaPacket

DEFAULT_MAX_DELAY_SECONDS = 0.5  # long enough for a NACK round trip or two on loopback
DEFAULT_MAX_DELAY_PACKETS = 1000  # a few key frames' worth: bounds memory, not latency
DEFAULT_NACK_INTERVAL_SECONDS = 0.05
DEFAULT_MAX_NACKS_PER_PACKET = 5
# A jump this far ahead is a new run of the stream, not a hole worth waiting for.
MAX_FORWARD_JUMP = 3000
MAX_REMEMBERED_HOLES = 4096  # to tell a late packet from a duplicate


class JitterStats:
    """Plain counters; `as_dict()` is the snapshot the recorder exports."""

    __slots__ = ("received", "released", "duplicates", "late", "lost", "nacked", "recovered", "resets")

    def __init__(self) -> None:
        self.received = 0  # packets pushed
        self.released = 0  # packets handed out in order
        self.duplicates = 0  # a packet already buffered or released again
        self.late = 0  # arrived after its sequence number was given up on
        self.lost = 0  # sequence numbers given up on
        self.nacked = 0  # sequence numbers reported by nacks() (each time)
        self.recovered = 0  # NACKed sequence numbers that arrived in time
        self.resets = 0  # forward jumps beyond MAX_FORWARD_JUMP

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class JitterBuffer:
    """In: `push(packet)`. Out: the packets now in order, from `push`, `poll` or `flush`.

    A hole at the head is given up on when the oldest packet waiting behind it has waited
    `max_delay_seconds`, or when more than `max_delay_packets` packets are waiting. The
    stream's first packets are held the same way, since the first to arrive may not be
    the first sent; after that, packets in order pass straight through.
    `nacks()` lists the missing sequence numbers worth asking for again now.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        max_delay_seconds: float = DEFAULT_MAX_DELAY_SECONDS,
        max_delay_packets: int = DEFAULT_MAX_DELAY_PACKETS,
        nack_interval_seconds: float = DEFAULT_NACK_INTERVAL_SECONDS,
        max_nacks_per_packet: int = DEFAULT_MAX_NACKS_PER_PACKET,
    ) -> None:
        if max_delay_seconds < 0 or max_delay_packets < 0:
            raise ValueError("max_delay_seconds / max_delay_packets: must not be negative")
        self.clock = clock
        self.max_delay_seconds = max_delay_seconds
        self.max_delay_packets = max_delay_packets
        self.nack_interval_seconds = nack_interval_seconds
        self.max_nacks_per_packet = max_nacks_per_packet
        self.stats = JitterStats()
        self._buffer: dict[int, MediaPacket] = {}  # unwrapped seq -> packet
        # When each buffered packet was stored; insertion order is time order, so the
        # first entry is the one that has waited longest.
        self._stored_at: dict[int, float] = {}
        self._given_up: dict[int, None] = {}  # recent holes given up on (ordered set)
        self._next: int | None = None  # unwrapped seq to release next
        self._highest: int | None = None  # highest unwrapped seq seen
        self._nack_state: dict[int, tuple[int, float]] = {}  # seq -> (times asked, last asked)

    # ------------------------------------------------------------------ input

    def push(self, packet: MediaPacket) -> list[MediaPacket]:
        """Take one arriving packet; return the packets that are now in order."""
        self.stats.received += 1
        now = self.clock()
        ext = self._unwrap(packet.sequence_number)
        before_jump: list[MediaPacket] = []
        if self._next is not None and ext < self._next:
            if ext in self._given_up:
                self.stats.late += 1
            else:
                self.stats.duplicates += 1
            return self._release(now)
        if self._highest is not None and ext - self._highest > MAX_FORWARD_JUMP:
            before_jump = self._reset(ext)
        if ext in self._buffer:
            self.stats.duplicates += 1
            return self._release(now)
        self._store(ext, packet, now)
        return before_jump + self._release(now)

    def poll(self) -> list[MediaPacket]:
        """Give up on holes that have waited long enough; return what that releases."""
        return self._release(self.clock())

    def flush(self) -> list[MediaPacket]:
        """Stop waiting: release everything buffered, in order, giving up every hole."""
        out: list[MediaPacket] = []
        if self._next is None and self._buffer:
            self._next = min(self._buffer)
        while self._buffer:
            self._skip_hole()
            out += self._release_in_order()
        return out

    # ----------------------------------------------------------------- output

    def next_deadline(self) -> float | None:
        """When `poll()` could next give up on a hole (clock seconds), or None."""
        if not self._stored_at:
            return None
        return next(iter(self._stored_at.values())) + self.max_delay_seconds

    def missing(self) -> list[int]:
        """Sequence numbers (16-bit) of every hole between the head and the newest packet."""
        head = self._head()
        if head is None:
            return []
        return [ext & SEQUENCE_MASK for ext in range(head, self._highest) if ext not in self._buffer]

    def nacks(self) -> list[int]:
        """Missing sequence numbers to NACK now (RFC 4585 §6.2.1): each one at most
        `max_nacks_per_packet` times, at least `nack_interval_seconds` apart."""
        head = self._head()
        if head is None:
            return []
        now = self.clock()
        wanted = []
        for ext in range(head, self._highest):
            if ext in self._buffer:
                continue
            times, last = self._nack_state.get(ext, (0, float("-inf")))
            if times >= self.max_nacks_per_packet or now - last < self.nack_interval_seconds:
                continue
            self._nack_state[ext] = (times + 1, now)
            wanted.append(ext & SEQUENCE_MASK)
        self.stats.nacked += len(wanted)
        return wanted

    def __len__(self) -> int:
        return len(self._buffer)

    # --------------------------------------------------------------- internals

    def _head(self) -> int | None:
        """The first sequence number still expected (while the first packets are held:
        the oldest one buffered so far)."""
        if self._next is not None:
            return self._next
        return min(self._buffer) if self._buffer else None

    def _unwrap(self, seq: int) -> int:
        """RFC 1982: the unwrapped value closest to the highest one seen so far."""
        if self._highest is None:
            return seq
        return self._highest + seq_diff(seq, self._highest & SEQUENCE_MASK)

    def _store(self, ext: int, packet: MediaPacket, now: float) -> None:
        self._buffer[ext] = packet
        self._stored_at[ext] = now
        if self._highest is None or ext > self._highest:
            self._highest = ext
        if self._nack_state.pop(ext, None) is not None:
            self.stats.recovered += 1

    def _reset(self, ext: int) -> list[MediaPacket]:
        """A jump far ahead: hand out what is buffered and start again at `ext`."""
        self.stats.resets += 1
        if self._next is None:
            self._next = min(self._buffer)
        out = self.flush()
        self._nack_state.clear()  # nothing from before the jump is waited for any more
        self._next = ext
        self._highest = ext
        return out

    def _release(self, now: float) -> list[MediaPacket]:
        if self._next is None:
            # The first packets wait too: the stream's very first packet may not be the
            # first to arrive. Start at the oldest one once waiting is over.
            if not self._buffer or not self._must_give_up(now):
                return []
            self._next = min(self._buffer)
        out = self._release_in_order()
        while self._buffer and self._must_give_up(now):
            self._skip_hole()
            out += self._release_in_order()
        return out

    def _must_give_up(self, now: float) -> bool:
        if len(self._buffer) > self.max_delay_packets:
            return True
        return now >= self.next_deadline()

    def _skip_hole(self) -> None:
        """Give up on the hole at the head: jump to the oldest buffered packet."""
        first = min(self._buffer)
        self.stats.lost += first - self._next
        for ext in range(self._next, first):
            self._nack_state.pop(ext, None)
            self._given_up[ext] = None
        while len(self._given_up) > MAX_REMEMBERED_HOLES:
            del self._given_up[next(iter(self._given_up))]
        self._next = first

    def _release_in_order(self) -> list[MediaPacket]:
        out = []
        buffer = self._buffer
        while self._next in buffer:
            out.append(buffer.pop(self._next))
            del self._stored_at[self._next]
            self._nack_state.pop(self._next, None)
            self._next += 1
        self.stats.released += len(out)
        return out
