"""Probing: finding headroom before we need it, instead of creeping up to it.

The delay-based estimate only moves up as fast as AIMD lets it (8 %/s far from the
ceiling, a packet per response time near it) and never above 1.5 × what the receiver
got. After a link recovers from 300 kbit/s to 2 Mbit/s that would take most of a minute;
a subscriber whose allocation sits on the low layer (sending far less than the path
allows: libwebrtc's "application limited region") would never learn the path could
carry more. A probe answers the question directly: send a short cluster (at least
PROBE_MIN_PACKETS packets and PROBE_DURATION_US worth of bytes) at a target rate above
the estimate, and see what rate the receiver measured (libwebrtc probe_controller.cc and
probe_bitrate_estimator.cc; LiveKit's prober sends padding the same way).

`ProbeController` decides *when* and *how high* (pure: it is asked, it never schedules):
- **start**: the first time the allocation wants more than the estimate, at 3 × estimate;
- **continue**: after a probe that succeeded (measured at least 70 % of its target and
  lifted the estimate by 10 %), at once, at 2 × the new estimate: exponential search;
- **wanted**: when the allocation wants 25 % more than it did at the last probe (a tile
  grew, a screen share started), at 2 × estimate, at most once per second;
- **retry**: a probe that measured nothing (too many of its packets lost, or never
  sent) says nothing about the path: again after 1 s, up to 3 times in a row;
- **periodic**: while the allocation wants more than the estimate, every 5 s at 2 ×:
  libwebrtc's ALR probing. An SFU subscriber is application limited exactly when its
  allocation cannot use more than it is given, and the allocation tells us what it would
  use (`wanted_bps`), so the controller needs no ALR detector of its own.
Never above 1.2 × wanted (probing for bandwidth nobody would use costs the subscriber
padding), never while a cluster is in flight, never within 1 s of a backoff (the path just
said no).

`ProbeMeasurement` follows each cluster's packets through feedback and turns them into a
rate: bytes over the *receive* interval, as the bottleneck spaced them; the smaller of
the send and receive rates; 0.95 × the receive rate if it fell clearly (10 %) short of
the send rate (the path is saturated: the queue absorbed the rest). Invalid when under
80 % of the cluster's packets or bytes came back, or the receive rate is implausibly
(2 ×) above the send rate.
"""

from __future__ import annotations

START_MULTIPLIER = 3.0
PROBE_MULTIPLIER = 2.0
WANTED_HEADROOM = 1.2
WANTED_MARGIN = 1.05  # wanted must exceed the estimate by this much to be worth a probe
WANTED_GROWTH = 1.25
MIN_GAP_US = 1_000_000
PERIODIC_INTERVAL_US = 5_000_000
AFTER_DECREASE_US = 1_000_000
CONTINUE_FRACTION = 0.7
CONTINUE_GROWTH = 1.1

MAX_RETRIES = 3

# A cluster big enough that losing a packet or two of it still leaves 80 % to measure.
PROBE_DURATION_US = 40_000
PROBE_MIN_PACKETS = 6
PROBE_TIMEOUT_US = 1_000_000
MIN_RECEIVED_FRACTION = 0.8
MAX_RECEIVE_TO_SEND = 2.0
SATURATED_RATIO = 0.9
SATURATED_UTILISATION = 0.95

START = "start"
CONTINUE = "continue"
WANTED = "wanted"
RETRY = "retry"
PERIODIC = "periodic"


class ProbeCluster:
    """What the sender must do: send at least `min_packets` packets and `min_bytes` bytes
    at `target_bps` (media, RTX or padding), each tagged with `id` in `on_packet_sent`."""

    __slots__ = ("id", "target_bps", "min_packets", "min_bytes", "reason", "created_us")

    def __init__(self, id: int, target_bps: int, min_packets: int, min_bytes: int, reason: str, created_us: int):
        self.id = id
        self.target_bps = target_bps
        self.min_packets = min_packets
        self.min_bytes = min_bytes
        self.reason = reason
        self.created_us = created_us

    def __repr__(self) -> str:
        return f"ProbeCluster(id={self.id}, target_bps={self.target_bps}, reason={self.reason!r})"


class ProbeController:
    __slots__ = (
        "max_bps",
        "_next_id",
        "active",
        "_started",
        "_continue",
        "_last_end_us",
        "_wanted_at_probe",
        "_retries",
        "probes",
        "successes",
    )

    def __init__(self, max_bps: float) -> None:
        self.max_bps = max_bps
        self._next_id = 1
        self.active: ProbeCluster | None = None
        self._started = False
        self._continue = False
        self._last_end_us: int | None = None
        self._wanted_at_probe = 0.0
        self._retries = 0  # unmeasured probes in a row; > 0: retry after MIN_GAP_US
        self.probes = 0
        self.successes = 0

    def request(
        self, now_us: int, wanted_bps: float, estimate_bps: float, last_decrease_us: int | None
    ) -> ProbeCluster | None:
        if self.active is not None:
            return None
        if wanted_bps <= estimate_bps * WANTED_MARGIN:
            self._wanted_at_probe = 0.0  # satisfied: a later rise is news again
            self._continue = False
            return None
        if last_decrease_us is not None and now_us - last_decrease_us < AFTER_DECREASE_US:
            return None
        since_last = None if self._last_end_us is None else now_us - self._last_end_us
        if not self._started:
            reason, multiplier = START, START_MULTIPLIER
        elif self._continue:
            reason, multiplier = CONTINUE, PROBE_MULTIPLIER
        elif since_last is not None and since_last < MIN_GAP_US:
            return None
        elif wanted_bps > self._wanted_at_probe * WANTED_GROWTH:
            reason, multiplier = WANTED, PROBE_MULTIPLIER
        elif 0 < self._retries <= MAX_RETRIES:
            reason, multiplier = RETRY, PROBE_MULTIPLIER
        elif since_last is None or since_last >= PERIODIC_INTERVAL_US:
            reason, multiplier = PERIODIC, PROBE_MULTIPLIER
        else:
            return None
        target = min(multiplier * estimate_bps, WANTED_HEADROOM * wanted_bps, self.max_bps)
        if target <= estimate_bps:
            return None
        self._started = True
        self._continue = False
        self._wanted_at_probe = wanted_bps
        min_bytes = int(target * PROBE_DURATION_US / 8_000_000)
        cluster = ProbeCluster(self._next_id, int(target), PROBE_MIN_PACKETS, min_bytes, reason, now_us)
        self._next_id += 1
        self.active = cluster
        self.probes += 1
        return cluster

    def on_done(self, cluster: ProbeCluster, result_bps: float | None, estimate_before: float, now_us: int) -> None:
        if self.active is not None and self.active.id == cluster.id:
            self.active = None
        self._last_end_us = now_us
        succeeded = (
            result_bps is not None
            and result_bps >= CONTINUE_FRACTION * cluster.target_bps
            and result_bps > CONTINUE_GROWTH * estimate_before
        )
        self._continue = succeeded
        self._retries = self._retries + 1 if result_bps is None else 0
        if succeeded:
            self.successes += 1


class _ClusterRecord:
    __slots__ = (
        "cluster",
        "sent_packets",
        "sent_bytes",
        "reported",
        "received",
        "received_bytes",
        "first_send_us",
        "last_send_us",
        "last_send_size",
        "first_arrival_us",
        "first_arrival_size",
        "last_arrival_us",
    )

    def __init__(self, cluster: ProbeCluster) -> None:
        self.cluster = cluster
        self.sent_packets = self.sent_bytes = 0
        self.reported = self.received = self.received_bytes = 0
        self.first_send_us = self.last_send_us = self.first_arrival_us = self.last_arrival_us = None
        self.last_send_size = self.first_arrival_size = 0

    def sender_done(self) -> bool:
        cluster = self.cluster
        return self.sent_packets >= cluster.min_packets and self.sent_bytes >= cluster.min_bytes

    def rate_bps(self) -> float | None:
        cluster = self.cluster
        if (
            self.received < MIN_RECEIVED_FRACTION * cluster.min_packets
            or self.received_bytes < MIN_RECEIVED_FRACTION * cluster.min_bytes
            or self.first_send_us is None
            or self.first_arrival_us is None
        ):
            return None
        send_interval = self.last_send_us - self.first_send_us
        receive_interval = self.last_arrival_us - self.first_arrival_us
        if send_interval <= 0 or receive_interval <= 0 or send_interval > PROBE_TIMEOUT_US:
            return None
        # The last packet sent adds no send time, the first received no receive time.
        send_bps = (self.received_bytes - self.last_send_size) * 8_000_000 / send_interval
        receive_bps = (self.received_bytes - self.first_arrival_size) * 8_000_000 / receive_interval
        if receive_bps > MAX_RECEIVE_TO_SEND * send_bps:
            return None
        if receive_bps < SATURATED_RATIO * send_bps:
            return SATURATED_UTILISATION * receive_bps
        return min(send_bps, receive_bps)


class ProbeMeasurement:
    """Clusters in flight: what was sent for each, what feedback said about it."""

    __slots__ = ("_records",)

    def __init__(self) -> None:
        self._records: dict[int, _ClusterRecord] = {}

    def start(self, cluster: ProbeCluster) -> None:
        self._records[cluster.id] = _ClusterRecord(cluster)

    def on_sent(self, cluster_id: int, size: int) -> None:
        record = self._records.get(cluster_id)
        if record is not None:
            record.sent_packets += 1
            record.sent_bytes += size

    def on_result(self, cluster_id: int, send_us: int, size: int, arrival_us: int | None) -> None:
        record = self._records.get(cluster_id)
        if record is None:
            return
        record.reported += 1
        if arrival_us is None:
            return
        record.received += 1
        record.received_bytes += size
        if record.first_send_us is None or send_us < record.first_send_us:
            record.first_send_us = send_us
        if record.last_send_us is None or send_us >= record.last_send_us:
            record.last_send_us = send_us
            record.last_send_size = size
        if record.first_arrival_us is None or arrival_us < record.first_arrival_us:
            record.first_arrival_us = arrival_us
            record.first_arrival_size = size
        if record.last_arrival_us is None or arrival_us > record.last_arrival_us:
            record.last_arrival_us = arrival_us

    def finished(self, now_us: int) -> list[tuple[ProbeCluster, float | None]]:
        """Clusters now complete (sent in full and every packet reported) or timed out,
        with their measured rate (None: no valid measurement); forgotten afterwards."""
        done = []
        for cluster_id, record in list(self._records.items()):
            complete = record.sender_done() and record.reported >= record.sent_packets
            if complete or now_us - record.cluster.created_us >= PROBE_TIMEOUT_US:
                del self._records[cluster_id]
                done.append((record.cluster, record.rate_bps()))
        return done
