"""Prometheus metrics of control and of the workers' latest stats snapshots.

Nothing here runs per packet: worker numbers come from the `WorkerStats` snapshots the
supervisor polls, meeting numbers from the registry, both read when /metrics is scraped.
Each app has its own CollectorRegistry, so several servers can live in one process (tests).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from control.meeting.model import MeetingRegistry
from control.metrics.recorder import RecorderMetrics
from control.processes.workers import WorkerSupervisor

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The limits control.http refuses with 429 (RateLimited.limit): control.http.accounts,
# control.http.sessions, control.http.whip.
RATE_LIMITS = ("login_per_email", "login_per_client", "passcode_per_meeting", "passcode_per_client",
               "joins_per_client", "whip_posts_per_client", "ingest_token_per_meeting",
               "ingest_token_per_client")  # fmt: skip

# Worker stats counter key -> (metric name without _total, help).
WORKER_COUNTERS = {
    "packets_received": ("conclave_worker_packets_received", "RTP/RTCP/STUN/DTLS packets the worker received"),
    "bytes_received": ("conclave_worker_bytes_received", "Bytes the worker received on its UDP socket"),
    "packets_sent": ("conclave_worker_packets_sent", "Packets the worker sent"),
    "bytes_sent": ("conclave_worker_bytes_sent", "Bytes the worker sent"),
    "nack_requested": ("conclave_worker_nack_requested", "Sequence numbers subscribers asked to be retransmitted"),
    "nack_answered": ("conclave_worker_nack_answered", "Retransmissions the worker sent"),
    "pli_sent": ("conclave_worker_pli_sent", "Keyframe requests (PLI) sent to publishers"),
    "pli_received": ("conclave_worker_pli_received", "Keyframe requests (PLI) received from subscribers"),
    "notice_plays": ("conclave_worker_notice_plays", "In-band notices (recording/transcription) started"),
    "notice_packets_sent": ("conclave_worker_notice_packets_sent", "RTP packets of in-band notices sent"),
    # Send-side bandwidth estimation of subscriber transports (issue 11, item 3).
    "transport_feedback_received": (
        "conclave_sfu_transport_feedback",
        "Transport-wide congestion control feedback packets received from subscribers",
    ),
    "remb_received": ("conclave_sfu_remb_received", "REMB bandwidth reports received from subscribers"),
    "bwe_probes": ("conclave_sfu_bwe_probes", "Bandwidth probe clusters sent to subscribers"),
    "bwe_probe_packets": ("conclave_sfu_bwe_probe_packets", "Padding packets of bandwidth probes sent"),
    "bwe_probe_bytes": ("conclave_sfu_bwe_probe_bytes", "Bytes of bandwidth probe padding packets sent"),

    "allocations": ("conclave_sfu_allocations", "Per-subscriber video allocations the worker ran"),
    # Pipes between workers (a meeting spread over several, sfu.transport.pipe).
    "pipe_packets_sent": ("conclave_sfu_pipe_packets_sent", "RTP packets sent through pipes to other workers"),
    "pipe_bytes_sent": ("conclave_sfu_pipe_bytes_sent", "Bytes of RTP sent through pipes to other workers"),
    "pipe_packets_received": (
        "conclave_sfu_pipe_packets_received", "RTP and RTCP packets received through pipes from other workers"
    ),
    "pipe_bytes_received": ("conclave_sfu_pipe_bytes_received", "Bytes received through pipes from other workers"),
    "layer_switches": (
        "conclave_sfu_layer_switches",
        "Changes of a subscriber's video target (layer, or paused) made by allocations",
    ),
    # ICE-TCP (issue 12, item 2; sfu/transport/tcp.py).
    "tcp_connections_accepted": ("conclave_sfu_ice_tcp_connections_accepted", "ICE-TCP connections the worker accepted"),
    "tcp_unbound_closed": (
        "conclave_sfu_ice_tcp_unbound_closed",
        "ICE-TCP connections closed because no ICE check bound them to a transport in time",
    ),
    "tcp_refused": (
        "conclave_sfu_ice_tcp_refused",
        "ICE-TCP connections closed on accept because sfu.ice_tcp_max_connections were open",
    ),
}
# Worker stats gauge key -> (metric name, help).
WORKER_GAUGES = {
    "routers": ("conclave_worker_routers", "Routers (meetings) in the worker"),
    "transports": ("conclave_worker_transports", "Transports (ICE/DTLS paths) in the worker"),
    "producers": ("conclave_worker_producers", "Incoming streams in the worker"),
    "consumers": ("conclave_worker_consumers", "Outgoing streams in the worker"),
    "cpu_seconds": ("conclave_worker_cpu_seconds", "CPU time (user+system) of the current worker process"),
    "rss_bytes": ("conclave_worker_resident_memory_bytes", "Resident memory of the worker process"),
    "dtls_certificate_expires": (
        "conclave_worker_dtls_certificate_expiry_timestamp_seconds",
        "When the worker's DTLS certificate for new transports expires (unix time; renewed before)",
    ),
    "tcp_connections": ("conclave_sfu_ice_tcp_connections", "ICE-TCP connections open on the worker"),
    "pipe_transports": ("conclave_sfu_pipe_transports", "Pipe transports to other workers open on the worker"),
    "dynacast_layers_paused": (
        "conclave_sfu_dynacast_layers_paused",
        "Simulcast layers no subscriber takes, which publishers are told to pause",
    ),
}
# The worker samples one packet in 256 per producer: the time from the producer to the
# last consumer's send, as cumulative counters `forward_time_us_le_<bound>` (…`_le_inf`),
# `forward_time_us_sum` and `forward_time_samples` (sfu/engine/stats.py). The bounds are
# read from the keys, so a worker with other buckets needs no change here.
FORWARD_TIME_BUCKET_PREFIX = "forward_time_us_le_"
FORWARD_LATENCY = (
    "conclave_sfu_forward_latency_seconds",
    "Time from a packet reaching its producer to the last consumer's send, sampled on one packet in 256",
)
# NACKed sequence numbers the worker did not retransmit, from its counters
# `nack_refused_<reason>` (sfu/engine/stats.py, NACK_REFUSED_REASONS): over the
# consumer's budget, answered moments ago, older than sfu.nack_max_age_s. A fixed set
# of label values (a test keeps it equal to the worker's).
NACK_REFUSED_REASONS = ("budget", "duplicate", "too_old")
NACK_REFUSED = (
    "conclave_sfu_nack_refused",
    "Sequence numbers subscribers asked to be retransmitted that the worker refused, by reason",
)

# Subscribers' video tracks paused now by their allocation, from the worker's gauges
# `tracks_paused_<reason>` (sfu.engine.subscription.PAUSE_REASONS): a fixed set.
PAUSE_REASONS = ("bandwidth", "hidden", "last_n")
TRACKS_PAUSED = (
    "conclave_sfu_tracks_paused",
    "Subscribers' video tracks paused by their allocation, by reason",
)


# Each worker's subscriber transports by their current bandwidth estimate, as gauges
# `subscriber_estimate_bps_le_<bound>` (cumulative, `..._le_inf` counts them all) and
# `subscriber_estimate_bps_sum` (sfu.engine.stats.estimate_gauges): a gauge histogram,
# bounds read from the keys.
ESTIMATE_BUCKET_PREFIX = "subscriber_estimate_bps_le_"
SUBSCRIBER_ESTIMATE = (
    "conclave_sfu_subscriber_estimate_bps",
    "Subscriber transports by their current send-side bandwidth estimate, in bits per second",
)


# ICE-TCP by reason, from the worker's counters `<key>_<reason>` (sfu.engine.stats:
# TCP_FRAMING_ERRORS, TCP_DROP_REASONS): fixed sets of label values (a test keeps them
# equal to the worker's).
TCP_FRAMING_ERRORS = ("zero_length", "oversized", "garbage")
TCP_DROP_REASONS = ("send_buffer_full", "closed")
TCP_BY_REASON = {
    "tcp_framing_errors": (
        "conclave_sfu_ice_tcp_framing_errors",
        "ICE-TCP connections closed for framing that cannot be right (RFC 4571), by reason",
        TCP_FRAMING_ERRORS,
    ),
    "tcp_dropped_packets": (
        "conclave_sfu_ice_tcp_dropped_packets",
        "Packets for ICE-TCP clients dropped instead of queued (a client not reading), by reason",
        TCP_DROP_REASONS,
    ),
    "tcp_dropped_bytes": (
        "conclave_sfu_ice_tcp_dropped_bytes",
        "Bytes of packets for ICE-TCP clients dropped instead of queued, by reason",
        TCP_DROP_REASONS,
    ),
}


class LoopLagMonitor:
    """Measures how late a periodic timer fires on this process's event loop."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.lag_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.interval_s)
            self.lag_s = max(0.0, loop.time() - started - self.interval_s)


class _StateCollector(Collector):
    def __init__(self, meetings: MeetingRegistry, supervisor: WorkerSupervisor, lag: LoopLagMonitor) -> None:
        self._meetings = meetings
        self._supervisor = supervisor
        self._lag = lag

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("conclave_meetings", "Meetings that exist", value=len(self._meetings))
        participants = self._meetings.participant_count()
        yield GaugeMetricFamily("conclave_participants", "Participants in meetings", value=participants)
        yield GaugeMetricFamily("conclave_tracks", "Published tracks", value=self._meetings.track_count())
        yield from self._worker_metrics()
        lag = GaugeMetricFamily(
            "conclave_event_loop_lag_seconds", "How late a periodic timer fired on the event loop", labels=["process"]
        )
        lag.add_metric(["control"], self._lag.lag_s)
        for worker in self._supervisor.workers:
            if worker.up and worker.stats is not None:
                lag.add_metric([f"worker-{worker.index}"], worker.gauge("loop_lag_seconds"))
        yield lag

    def _worker_metrics(self) -> Iterator[Metric]:
        workers = self._supervisor.workers
        up = GaugeMetricFamily("conclave_worker_up", "1 when the worker is running and ready", labels=["worker"])
        restarts = CounterMetricFamily("conclave_worker_restarts", "Times the worker was restarted", labels=["worker"])
        counters = {
            key: CounterMetricFamily(name, text, labels=["worker"]) for key, (name, text) in WORKER_COUNTERS.items()
        }
        dropped = CounterMetricFamily(
            "conclave_worker_packets_dropped", "Packets the worker dropped, by reason", labels=["worker", "reason"]
        )
        gauges = {key: GaugeMetricFamily(name, text, labels=["worker"]) for key, (name, text) in WORKER_GAUGES.items()}
        for worker in workers:
            label = str(worker.index)
            up.add_metric([label], 1.0 if worker.up else 0.0)
            restarts.add_metric([label], worker.restarts)
            totals = worker.counters()
            for key, family in counters.items():
                family.add_metric([label], totals.get(key, 0))
            for reason, packets in sorted(worker.dropped().items()):
                dropped.add_metric([label, reason], packets)
            for key, family in gauges.items():
                family.add_metric([label], worker.gauge(key))
        yield up
        yield restarts
        yield from counters.values()
        yield dropped
        yield from gauges.values()
        yield _forward_latency(workers)
        yield _nack_refused(workers)
        yield from _ice_tcp_by_reason(workers)
        yield _subscriber_estimates(workers)

        yield _tracks_paused(workers)


def _forward_latency(workers: list) -> Metric:
    family = HistogramMetricFamily(*FORWARD_LATENCY, labels=["worker"])
    for worker in workers:
        totals = worker.counters()  # this slot's processes together: buckets stay cumulative
        buckets = forward_latency_buckets(totals)
        if buckets:
            family.add_metric([str(worker.index)], buckets, sum_value=totals.get("forward_time_us_sum", 0) / 1e6)
    return family


def _nack_refused(workers: list) -> Metric:
    family = CounterMetricFamily(*NACK_REFUSED, labels=["worker", "reason"])
    for worker in workers:
        totals = worker.counters()
        for reason in NACK_REFUSED_REASONS:
            family.add_metric([str(worker.index), reason], totals.get(f"nack_refused_{reason}", 0))
    return family


def _ice_tcp_by_reason(workers: list) -> Iterator[Metric]:
    for key, (name, text, reasons) in TCP_BY_REASON.items():
        family = CounterMetricFamily(name, text, labels=["worker", "reason"])
        for worker in workers:
            totals = worker.counters()
            for reason in reasons:
                family.add_metric([str(worker.index), reason], totals.get(f"{key}_{reason}", 0))
        yield family


def _subscriber_estimates(workers: list) -> Metric:
    family = GaugeHistogramMetricFamily(*SUBSCRIBER_ESTIMATE, labels=["worker"])
    for worker in workers:
        if not worker.up or worker.stats is None:
            continue
        gauges = worker.stats.gauges
        buckets = estimate_buckets(gauges)
        if buckets:
            family.add_metric([str(worker.index)], buckets, gsum_value=gauges.get("subscriber_estimate_bps_sum", 0.0))
    return family


def estimate_buckets(gauges: dict[str, float]) -> list[tuple[str, float]]:
    """[(le in bit/s, cumulative count), ..., ("+Inf", count)] from a worker's gauges; []
    when it reported none."""
    bounds = []
    for key, value in gauges.items():
        if key.startswith(ESTIMATE_BUCKET_PREFIX):
            try:
                bounds.append((float(key[len(ESTIMATE_BUCKET_PREFIX) :]), value))
            except ValueError:
                continue
    bounds.sort()
    if not bounds or bounds[-1][0] != float("inf"):
        return []
    return [(floatToGoString(bound), float(count)) for bound, count in bounds]



def _tracks_paused(workers: list) -> Metric:
    family = GaugeMetricFamily(*TRACKS_PAUSED, labels=["worker", "reason"])
    for worker in workers:
        for reason in PAUSE_REASONS:
            family.add_metric([str(worker.index), reason], worker.gauge(f"tracks_paused_{reason}"))
    return family


def forward_latency_buckets(counters: dict[str, int]) -> list[tuple[str, float]]:
    """[(le in seconds, cumulative count), ..., ("+Inf", count)] from a worker's counters;
    [] when it reported no histogram. _count is the +Inf bucket, i.e. forward_time_samples."""
    bounds: list[tuple[float, int]] = []
    for key, value in counters.items():
        if key.startswith(FORWARD_TIME_BUCKET_PREFIX):
            bound = key[len(FORWARD_TIME_BUCKET_PREFIX) :]
            try:
                micros = float(bound)  # "inf" too
            except ValueError:
                continue
            bounds.append((micros, value))
    if not bounds:
        return []
    bounds.sort()
    if bounds[-1][0] != float("inf"):
        bounds.append((float("inf"), counters.get("forward_time_samples", bounds[-1][1])))
    return [(floatToGoString(micros / 1e6), float(count)) for micros, count in bounds]


class LabeledCounter(Collector):
    """A counter by one label, kept as plain ints (no `_created` series, no locks)."""

    def __init__(self, name: str, documentation: str, label: str, known: tuple[str, ...] = ()) -> None:
        self._name = name
        self._documentation = documentation
        self._label = label
        # Known values are exported at 0 from the start: rate() and alerts see a series
        # before the first event, not "no data".
        self._values: dict[str, int] = dict.fromkeys(known, 0)

    def inc(self, value: str) -> None:
        self._values[value] = self._values.get(value, 0) + 1

    def get(self, value: str) -> int:
        return self._values.get(value, 0)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=[self._label])
        for value, count in sorted(self._values.items()):
            family.add_metric([value], count)
        yield family


class _WebhookCollector(Collector):
    """Webhook deliveries: attempts by outcome, and events dropped because a pending-delivery
    cap was reached (control.webhooks.WebhookSender.attempts / .dropped)."""

    def __init__(self, dropped: Callable[[], int], attempts: Callable[[], dict[str, int]]) -> None:
        self._dropped = dropped
        self._attempts = attempts

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "conclave_webhook_events_dropped",
            "Webhook events not delivered because too many deliveries were pending (per customer or in all)",
            value=self._dropped(),
        )
        family = CounterMetricFamily(
            "conclave_webhook_delivery_attempts",
            "Webhook delivery attempts by outcome: delivered, failed (retried later), gave_up (the last attempt failed)",
            labels=["outcome"],
        )
        for outcome, count in sorted(self._attempts().items()):
            family.add_metric([outcome], count)
        yield family


class _ActiveSpeakerCollector(Collector):
    """Changes of a meeting's active speaker that control announced
    (control.meeting.conference.Conference.active_speaker_changes)."""

    def __init__(self, changes: Callable[[], int]) -> None:
        self._changes = changes

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "conclave_sfu_active_speaker_changes",
            "Times a meeting's active speaker changed (the media server's dominant-speaker detector), in all meetings",
            value=self._changes(),
        )


class Metrics:
    def __init__(self, meetings: MeetingRegistry, supervisor: WorkerSupervisor) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.loop_lag = LoopLagMonitor()
        # Label values are bounded: message types and error codes are fixed sets in code.
        self.signaling_messages = LabeledCounter(
            "conclave_signaling_messages", "Signaling messages received, by type", "type"
        )
        self.signaling_errors = LabeledCounter(
            "conclave_signaling_errors", "Signaling error replies sent, by code", "code"
        )
        self.signaling_refused = LabeledCounter(
            "conclave_signaling_sockets_refused",
            "Signaling WebSockets refused before the upgrade or closed for abuse, by reason",
            "reason",
        )
        self.registry.register(self.signaling_messages)
        self.registry.register(self.signaling_errors)
        self.registry.register(self.signaling_refused)
        self.rate_limited = LabeledCounter(
            "conclave_http_rate_limited",
            "Requests refused with 429 by a brute-force or per-client limit, by limit",
            "limit",
            known=RATE_LIMITS,
        )
        self.registry.register(self.rate_limited)
        self.registry.register(_StateCollector(meetings, supervisor, self.loop_lag))
        # The recorder's (exported as 0 before its first snapshot).
        self.recorder = RecorderMetrics()
        self.registry.register(self.recorder)

    def watch_webhooks(self, dropped: Callable[[], int], attempts: Callable[[], dict[str, int]]) -> None:
        """Export webhook delivery attempts by outcome and the events a pending cap dropped."""
        self.registry.register(_WebhookCollector(dropped, attempts))

    def watch_active_speakers(self, changes: Callable[[], int]) -> None:
        """Export how many times a meeting's active speaker changed."""
        self.registry.register(_ActiveSpeakerCollector(changes))

    def render(self) -> bytes:
        return generate_latest(self.registry)
