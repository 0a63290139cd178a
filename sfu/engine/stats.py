"""Plain-integer counters shared by every object of one worker's media plane.

Nothing on the packet path calls Prometheus: objects bump these ints and the worker's
`stats()` snapshot is read periodically by control.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

DROP_REASONS = (
    "oversized",
    "unknown_packet",
    "malformed_stun",
    "stun_auth",  # a check for no transport of ours, or with a wrong MESSAGE-INTEGRITY: not answered
    "stun_unexpected",  # a STUN response we did not ask for, or not a Binding
    "address_taken",  # a nominated check from an address another transport's peer has
    "unknown_peer",
    "dtls_error",
    "malformed_dtls",
    "not_connected",
    "srtp_error",
    "malformed_rtp",
    "malformed_rtcp",
    "unknown_ssrc",
    "unexpected_payload_type",
    "internal_error",
    "malformed_feedback",  # a subscriber's transport-cc or REMB that does not parse
    "feedback_over_budget",  # transport-cc past its bounds (sfu.engine.feedback.BandwidthIntake)
    "socket_buffer_full",  # the kernel's count for the worker's sockets, filled in by the worker
)


# Why a NACKed sequence number was not retransmitted (sfu/engine/retransmit.py): counted
# as `nack_refused_<reason>`; control exports them as conclave_sfu_nack_refused_total.
# (`nack_missed`: not in the cache any more, or the consumer is not forwarding.)
NACK_REFUSED_REASONS = ("budget", "duplicate", "too_old")

# ICE-TCP (sfu/transport/tcp.py, which owns the reasons; repeated here because the engine
# imports no transport): framing refused, by reason (`tcp_framing_errors_<reason>`), and
# packets (and their bytes) not sent to a connection, by reason
# (`tcp_dropped_packets_<reason>`, `tcp_dropped_bytes_<reason>`).
TCP_FRAMING_ERRORS = ("zero_length", "oversized", "garbage")
TCP_DROP_REASONS = ("send_buffer_full", "closed")
_BY_REASON = ("dropped", "forward_time_buckets", "tcp_framing_errors", "tcp_dropped_packets", "tcp_dropped_bytes")

# Upper bounds (µs) of the fan-out time histogram: how long one packet takes from the
# producer to the last consumer's send, sampled on one packet in FORWARD_TIME_SAMPLE_EVERY.
FORWARD_TIME_BUCKETS_US = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
FORWARD_TIME_SAMPLE_EVERY = 256  # a power of two: the test is a mask on a count kept anyway


# Upper bounds (bit/s) of the distribution of subscriber transports' bandwidth estimates,
# a gauge (`subscriber_estimate_bps_le_<bound>`, cumulative, from `estimate_gauges`).
ESTIMATE_BUCKETS_BPS = (100_000, 250_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000)
ESTIMATE_GAUGE_PREFIX = "subscriber_estimate_bps_le_"


def estimate_gauges(estimates_bps: Iterable[int]) -> dict[str, float]:
    """The current estimates of a worker's subscriber transports as a gauge histogram:
    cumulative counts per bound of ESTIMATE_BUCKETS_BPS (`..._le_inf`: all of them), with
    `subscriber_estimate_bps_sum`. Computed when stats are asked for, not per packet."""
    counts = [0] * (len(ESTIMATE_BUCKETS_BPS) + 1)
    total = 0
    for bps in estimates_bps:
        total += bps
        counts[bisect_left(ESTIMATE_BUCKETS_BPS, bps)] += 1
    gauges: dict[str, float] = {}
    cumulative = 0
    for bound, count in zip((*ESTIMATE_BUCKETS_BPS, "inf"), counts):
        cumulative += count
        gauges[f"{ESTIMATE_GAUGE_PREFIX}{bound}"] = float(cumulative)
    gauges["subscriber_estimate_bps_sum"] = float(total)
    return gauges


class Counters:
    __slots__ = (
        "packets_received",
        "bytes_received",
        "packets_sent",
        "bytes_sent",
        "rtcp_received",
        "rtcp_sent",
        "nack_requested",
        "nack_answered",
        "nack_missed",
        "nack_refused_budget",
        "nack_refused_duplicate",
        "nack_refused_too_old",
        "pli_sent",
        "pli_received",
        "fir_received",
        "keyframes_forwarded",
        "padding_received",
        "rtx_received",
        "stun_requests",
        "ice_probes_sent",
        "ice_path_switches",
        "ice_consent_expired",
        "transport_feedback_received",  # transport-cc from subscribers (their estimators')
        "remb_received",
        "bwe_probes",  # probe clusters started (sfu.engine.bwe.pacer)
        "bwe_probe_packets",  # their padding packets sent
        "bwe_probe_bytes",
        "forward_time_samples",
        "forward_time_us_sum",
        "allocations",  # per-subscriber allocation runs (sfu.engine.subscription)
        "layer_switches",  # target changes they made (a layer, or a pause, to another)
        "tcp_connections_accepted",  # ICE-TCP connections (sfu.transport.tcp)
        "tcp_unbound_closed",  # ... closed because no ICE check bound them to a transport
        "tcp_refused",  # ... closed on accept: sfu.ice_tcp_max_connections were open
        "pipe_packets_sent",  # RTP to another worker's router (sfu.transport.pipe)
        "pipe_bytes_sent",
        "pipe_packets_received",  # RTP and RTCP from another worker's router
        "pipe_bytes_received",
        "dropped",
        "forward_time_buckets",
        "tcp_framing_errors",
        "tcp_dropped_packets",
        "tcp_dropped_bytes",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        # One count per bucket of FORWARD_TIME_BUCKETS_US, then one for "longer".
        self.forward_time_buckets = [0] * (len(FORWARD_TIME_BUCKETS_US) + 1)
        self.tcp_framing_errors: dict[str, int] = dict.fromkeys(TCP_FRAMING_ERRORS, 0)
        self.tcp_dropped_packets: dict[str, int] = dict.fromkeys(TCP_DROP_REASONS, 0)
        self.tcp_dropped_bytes: dict[str, int] = dict.fromkeys(TCP_DROP_REASONS, 0)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def record_forward_time(self, nanoseconds: int) -> None:
        """One sampled fan-out: producer to the last consumer's send (off the common path)."""
        micros = nanoseconds // 1000
        self.forward_time_samples += 1
        self.forward_time_us_sum += micros
        for index, bound in enumerate(FORWARD_TIME_BUCKETS_US):
            if micros <= bound:
                self.forward_time_buckets[index] += 1
                return
        self.forward_time_buckets[-1] += 1

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        """(counters, dropped). The ICE-TCP counts by reason appear as `<family>_<reason>`.
        The fan-out time histogram appears as cumulative counters
        `forward_time_us_le_<bound>` and `forward_time_us_le_inf` (Prometheus style), with
        `forward_time_us_sum` and `forward_time_samples`."""
        counters = {name: getattr(self, name) for name in self.__slots__ if name not in _BY_REASON}
        for family in ("tcp_framing_errors", "tcp_dropped_packets", "tcp_dropped_bytes"):
            for reason, count in getattr(self, family).items():
                counters[f"{family}_{reason}"] = count
        cumulative = 0
        for bound, count in zip((*FORWARD_TIME_BUCKETS_US, "inf"), self.forward_time_buckets):
            cumulative += count
            counters[f"forward_time_us_le_{bound}"] = cumulative
        return counters, dict(self.dropped)
