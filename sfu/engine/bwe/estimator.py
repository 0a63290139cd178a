"""One subscriber transport's send-side bandwidth estimate.

The worker tells a `BandwidthEstimator` what it sent and what came back, and asks it two
things: how much may we send (`estimate_bps`), and should we probe now
(`probe_request`). The estimate is the smallest of

- the **delay-based** estimate (`sfu.engine.bwe.delay`, `sfu.engine.bwe.rate`: packet
  groups → trendline → overuse detector → AIMD on the acknowledged bitrate), the one
  that reacts first, to a queue building before anything is lost;
- the **loss-based** cap (`sfu.engine.bwe.rate.LossBasedControl`), which catches what
  delay misses (a shallow policer drops without queueing) and tolerates the random
  loss of a lossy link;
- the receiver's **REMB**, when it sends one: a client that speaks only REMB has done
  the estimation itself, and its number caps ours (before any transport-cc feedback
  arrives it *is* ours);

bounded by `min_bps` and `max_bps`. A **probe** measurement (`sfu.engine.bwe.probe`)
lifts both the delay-based and the loss-based estimate at once, unless the detector is
seeing overuse right now.

Pure: no clock of its own (every call is given `now_us`, an int of microseconds on the
worker's monotonic clock), no I/O, no logging. `on_packet_sent` is the only call made
per packet sent (one tuple into the send log's ring: ~0.3 µs on the dev machine, where
forwarding a packet costs ~5.5 µs); a feedback costs ~1.4 µs per packet it reports;
`probe_request` runs per allocation pass or timer tick.
"""

from __future__ import annotations

from operator import attrgetter

from sfu.engine.bwe.delay import OVERUSING, USAGE_NAMES, OveruseDetector, PacketGrouper, QueueDelay, TrendlineFilter
from sfu.engine.bwe.probe import ProbeCluster, ProbeController, ProbeMeasurement
from sfu.engine.bwe.rate import DEFAULT_RTT_US, AckedBitrate, AimdRateControl, LossBasedControl
from sfu.engine.bwe.send_log import PacketResult, SendLog

DEFAULT_MIN_BPS = 30_000
DEFAULT_MAX_BPS = 20_000_000
DEFAULT_START_BPS = 300_000
RTT_SMOOTHING = 0.125  # RFC 6298's alpha


class BandwidthEstimator:
    __slots__ = (
        "min_bps",
        "max_bps",
        "send_log",
        "_grouper",
        "_trendline",
        "_detector",
        "_acked",
        "_queue",
        "_aimd",
        "_loss",
        "_probes",
        "_measurement",
        "remb_bps",
        "rtt_us",
        "_estimate",
        "_feedback_seen",
        "last_probe_bps",
        "feedbacks",
    )

    def __init__(
        self,
        start_bps: int = DEFAULT_START_BPS,
        min_bps: int = DEFAULT_MIN_BPS,
        max_bps: int = DEFAULT_MAX_BPS,
        log_capacity: int = 8192,
    ) -> None:
        if not 0 < min_bps <= max_bps:
            raise ValueError(f"bandwidth bounds: need 0 < min_bps <= max_bps, got {min_bps}, {max_bps}")
        start = min(max(start_bps, min_bps), max_bps)
        self.min_bps = min_bps
        self.max_bps = max_bps
        self.send_log = SendLog(log_capacity)
        self._grouper = PacketGrouper()
        self._trendline = TrendlineFilter()
        self._detector = OveruseDetector()
        self._acked = AckedBitrate()
        self._queue = QueueDelay()
        self._aimd = AimdRateControl(start, min_bps, max_bps)
        self._loss = LossBasedControl(start)
        self._probes = ProbeController(max_bps)
        self._measurement = ProbeMeasurement()
        self.remb_bps: int | None = None
        self.rtt_us = DEFAULT_RTT_US
        self._estimate = start
        self._feedback_seen = False
        self.last_probe_bps: int | None = None
        self.feedbacks = 0

    # --- inputs ----------------------------------------------------------------------

    def on_packet_sent(self, seq: int, size: int, now_us: int, probe_cluster: int | None = None) -> None:
        """Every packet that carries our transport-wide sequence number `seq` (16-bit, as
        written), `size` bytes on the wire, sent at `now_us`; `probe_cluster`: the id of
        the ProbeCluster it was sent for (media sent during a probe counts too)."""
        self.send_log.on_sent(seq, size, now_us, probe_cluster)
        if probe_cluster is not None:
            self._measurement.on_sent(probe_cluster, size)

    def on_transport_feedback(self, feedback, now_us: int) -> None:
        """A parsed `sfu.wire.rtcp.TransportFeedback` from the subscriber."""
        self.on_packet_results(self.send_log.match(feedback), now_us)

    def on_packet_results(self, results: list[PacketResult], now_us: int) -> None:
        """Per-packet results of one feedback (what `SendLog.match` returns)."""
        self.feedbacks += 1
        if not results:
            self._finish_probes(now_us)
            return
        self._feedback_seen = True
        expected = lost = 0
        received = []
        measurement = self._measurement
        for result in results:
            if result.probe_cluster is not None:
                measurement.on_result(result.probe_cluster, result.send_us, result.size, result.arrival_us)
                if result.arrival_us is None:
                    continue  # a probe sent past the link on purpose: the probe's own result, not media loss
                received.append(result)
                continue
            if result.arrival_us is None:
                expected += 1
                lost += 1
            else:
                if result.recovered:
                    lost -= 1
                else:
                    expected += 1
                received.append(result)
        self._loss.add(expected, lost, now_us)
        if received:
            self._on_received(received, now_us)
        self._update_delay_based(now_us)
        self._loss.update(now_us, self.rtt_us, self._aimd.bps)
        self._finish_probes(now_us)
        self._combine()

    def _on_received(self, received: list[PacketResult], now_us: int) -> None:
        received.sort(key=_ARRIVAL)  # in arrival order, as the path delivered them
        grouper, trendline, detector, acked = self._grouper, self._trendline, self._detector, self._acked
        acked.add_results(received)
        newest_send_us = least_one_way = None
        for result in received:
            send_us, arrival_us = result.send_us, result.arrival_us
            one_way = arrival_us - send_us
            if least_one_way is None or one_way < least_one_way:
                least_one_way = one_way
            if newest_send_us is None or send_us > newest_send_us:
                newest_send_us = send_us
            delta = grouper.add(send_us, arrival_us)
            if delta is not None:
                send_delta_us, arrival_delta_us, group_arrival_us = delta
                trend = trendline.update(send_delta_us / 1000, arrival_delta_us / 1000, group_arrival_us / 1000)
                detector.detect(trend, trendline.samples, send_delta_us / 1000, group_arrival_us / 1000)
        acked.update()
        self._queue.update(least_one_way, received[-1].arrival_us)
        if now_us > newest_send_us:
            # Includes the receiver's feedback delay (up to its interval): an upper bound.
            self.rtt_us = int(self.rtt_us + RTT_SMOOTHING * (now_us - newest_send_us - self.rtt_us))

    def on_remb(self, bps: int, now_us: int) -> None:
        """The subscriber's REMB (`sfu.wire.rtcp.Remb.bitrate`): caps the estimate."""
        if bps < 0:
            return
        self.remb_bps = bps
        self._combine()

    # --- outputs ---------------------------------------------------------------------

    @property
    def estimate_bps(self) -> int:
        return self._estimate

    @property
    def usage(self) -> str:
        """What the delay detector says now: normal, underusing or overusing."""
        return USAGE_NAMES[self._detector.state]

    def probe_request(self, now_us: int, wanted_bps: int) -> ProbeCluster | None:
        """Call when the allocation changes and on a timer (every ~100 ms will do):
        `wanted_bps` is what the allocation would send if bandwidth were no object. A
        cluster to send now, or None."""
        self._finish_probes(now_us)
        if self._aimd.queue_standing:
            return None  # a probe would only add to the queue
        if self.remb_bps is not None:
            wanted_bps = min(wanted_bps, self.remb_bps)  # no use finding more than the receiver allows
        last_decrease = _latest(self._aimd.last_decrease_us, self._loss.last_decrease_us)
        cluster = self._probes.request(now_us, wanted_bps, self._estimate, last_decrease)
        if cluster is not None:
            self._measurement.start(cluster)
        return cluster

    def stats(self) -> dict[str, int | float | str]:
        """A snapshot for metrics: plain numbers."""
        acked = self._acked.bps
        return {
            "estimate_bps": self._estimate,
            "delay_based_bps": int(self._aimd.bps),
            "loss_based_bps": int(self._loss.bps),
            "acked_bps": int(acked) if acked is not None else 0,
            "remb_bps": self.remb_bps if self.remb_bps is not None else 0,
            "rtt_us": self.rtt_us,
            "queue_delay_us": self._queue.delay_us,
            "loss_fraction": self._loss.fraction,
            "usage": self.usage,
            "threshold_ms": self._detector.threshold_ms,
            "probes": self._probes.probes,
            "probe_successes": self._probes.successes,
            "feedbacks": self.feedbacks,
        }

    # --- internals -------------------------------------------------------------------

    def _update_delay_based(self, now_us: int) -> None:
        aimd, acked_bps, usage = self._aimd, self._acked.bps, self._detector.state
        if usage == OVERUSING and acked_bps is not None and not aimd.may_reduce_further(now_us, self.rtt_us, acked_bps):
            return
        aimd.update(usage, acked_bps, now_us, self.rtt_us, self._queue.delay_us)

    def _finish_probes(self, now_us: int) -> None:
        for cluster, result in self._measurement.finished(now_us):
            before = self._estimate
            if result is not None:
                self.last_probe_bps = int(result)
                if result > before and self._detector.state != OVERUSING:
                    if result > self._aimd.bps:
                        self._aimd.set_estimate(result, now_us)
                    self._loss.raise_to(min(result, self._aimd.bps))  # aimd.bps: clamped to max_bps
                    self._combine()
            self._probes.on_done(cluster, result, before, now_us)

    def _combine(self) -> None:
        if self._feedback_seen:
            estimate = min(self._aimd.target_bps, self._loss.bps)
            if self.remb_bps is not None:
                estimate = min(estimate, self.remb_bps)
        elif self.remb_bps is not None:
            estimate = self.remb_bps
        else:
            estimate = self._aimd.bps
        self._estimate = int(min(max(estimate, self.min_bps), self.max_bps))


_ARRIVAL = attrgetter("arrival_us")  # a C key: sorting a feedback's results calls no Python per packet



def _latest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
