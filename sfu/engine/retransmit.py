"""How much one subscriber may have sent again: a consumer's NACK budget (RFC 4585 §6.2.1).

Answering a NACK costs, per named packet, a cache lookup, a header rewrite, an SRTP
protect and a send. Unbudgeted, one 1.3 KB compound naming all 1,024 cached packets
five times bought ~5,000 retransmissions (~6 MB) from the worker. Per consumer now:

- **a budget per second**, in packets and in bytes: `ratio` times what the consumer
  forwarded (over the last whole second, or this second so far when that is more),
  never below the floor (`min_packets_per_s`, `min_bytes_per_s`);
- **no repeats**: a sequence number answered less than `repeat_interval_s` ago is not
  answered again (the same number twice in one compound, or asked again before the first
  copy could have arrived);
- **a bounded look**: at most EXAMINED_PER_BUDGETED_PACKET × the packet budget sequence
  numbers are examined per second; past that, a NACK is refused in bulk (counted, not
  expanded), so a flood of requests for packets we do not have, or already sent, costs
  no more per second than one the budget refuses;
- and the consumer refuses what is older than `max_age_s` (it knows the packet's age).

Pure: no clock of its own (`start` is given the time), no I/O, integers and one small
map (the numbers answered lately: at most a second's budget). Nothing here runs per
forwarded packet: the forwarded counts are read from the
consumer's own counters when a NACK arrives.
"""

from __future__ import annotations

# Sequence numbers examined per packet of budget (answered or not) before the rest of
# the second's NACKs are refused unexamined.
EXAMINED_PER_BUDGETED_PACKET = 4
WINDOW_S = 1.0

# What `admit` says.
ANSWER = 0
REFUSED_BUDGET = 1
REFUSED_DUPLICATE = 2


class RetransmitPolicy:
    """The numbers (config.schema.SfuConfig: nack_*), the same for every consumer of a worker."""

    __slots__ = ("ratio", "min_packets_per_s", "min_bytes_per_s", "max_age_s", "repeat_interval_s")

    def __init__(
        self,
        ratio: float = 2.0,
        min_packets_per_s: int = 30,
        min_bytes_per_s: int = 36_000,
        max_age_s: float = 1.0,
        repeat_interval_s: float = 0.1,
    ) -> None:
        if ratio < 0 or min_packets_per_s < 0 or min_bytes_per_s < 0 or max_age_s <= 0 or repeat_interval_s < 0:
            raise ValueError("retransmit policy: ratio and floors must be >= 0, max_age_s > 0")
        self.ratio = ratio
        self.min_packets_per_s = min_packets_per_s
        self.min_bytes_per_s = min_bytes_per_s
        self.max_age_s = max_age_s
        self.repeat_interval_s = repeat_interval_s


DEFAULT_POLICY = RetransmitPolicy()


class RetransmitBudget:
    """One consumer's allowance: `start` once per received NACK compound, then for each
    sequence number `may_examine` (False: refuse it and the rest unexamined) and, for a
    packet still cached and young enough, `admit`."""

    __slots__ = (
        "policy",
        "window_start",
        "base_packets",
        "base_octets",
        "last_packets",
        "last_octets",
        "packets_now",
        "octets_now",
        "spent_packets",
        "spent_bytes",
        "examined",
        "answered",
        "now",
    )

    def __init__(self, policy: RetransmitPolicy = DEFAULT_POLICY, since: float = 0.0) -> None:
        """`since`: when the consumer's forwarded counts started from zero."""
        self.policy = policy
        self.window_start = since
        self.base_packets = 0  # the consumer's forwarded counts when this window started
        self.base_octets = 0
        self.last_packets = 0.0  # forwarded per second over the last whole window
        self.last_octets = 0.0
        self.packets_now = 0  # forwarded so far in this window
        self.octets_now = 0
        self.spent_packets = 0
        self.spent_bytes = 0
        self.examined = 0
        # Sequence number -> when it was answered; pruned when a window starts.
        self.answered: dict[int, float] = {}
        self.now = since

    def start(self, now: float, packets_sent: int, octets_sent: int) -> None:
        """A NACK compound arrived at `now`; the consumer has forwarded `packets_sent`
        packets (`octets_sent` bytes) in all."""
        self.now = now
        start = self.window_start
        if now - start >= WINDOW_S:
            elapsed = now - start
            self.last_packets = (packets_sent - self.base_packets) / elapsed
            self.last_octets = (octets_sent - self.base_octets) / elapsed
            self.window_start = now
            self.base_packets, self.base_octets = packets_sent, octets_sent
            self.spent_packets = self.spent_bytes = self.examined = 0
            interval = self.policy.repeat_interval_s
            self.answered = {seq: at for seq, at in self.answered.items() if now - at < interval}
        self.packets_now = packets_sent - self.base_packets
        self.octets_now = octets_sent - self.base_octets

    @property
    def packet_limit(self) -> int:
        """Retransmissions this window may hold."""
        policy = self.policy
        forwarded = max(self.last_packets, self.packets_now)
        return max(policy.min_packets_per_s, int(policy.ratio * forwarded))

    @property
    def byte_limit(self) -> int:
        policy = self.policy
        forwarded = max(self.last_octets, self.octets_now)
        return max(policy.min_bytes_per_s, int(policy.ratio * forwarded))

    def may_examine(self) -> bool:
        """May one more sequence number be looked at this window? Counts it if so; False
        once the window's packet budget is spent or enough numbers were examined: the
        caller refuses the rest of its NACKs in bulk."""
        limit = self.packet_limit
        if self.spent_packets >= limit or self.examined >= EXAMINED_PER_BUDGETED_PACKET * limit:
            return False
        self.examined += 1
        return True

    def admit(self, seq: int, size: int) -> int:
        """May the packet with (outgoing) sequence number `seq`, `size` bytes, be sent
        again? ANSWER (and it is counted as spent), REFUSED_DUPLICATE or REFUSED_BUDGET."""
        answered_at = self.answered.get(seq)
        if answered_at is not None and self.now - answered_at < self.policy.repeat_interval_s:
            return REFUSED_DUPLICATE
        if self.spent_packets + 1 > self.packet_limit or self.spent_bytes + size > self.byte_limit:
            return REFUSED_BUDGET
        self.spent_packets += 1
        self.spent_bytes += size
        self.answered[seq] = self.now
        return ANSWER
