"""A small network for the bandwidth estimator's tests: a sender pacing at the estimate,
one bottleneck link, a receiver sending real transport-cc feedback back.

    link = Link(capacity_bps=2_000_000, queue_bytes=60_000, delay_us=25_000)
    sim = Simulation(BandwidthEstimator(), link, wanted_bps=3_000_000)
    sim.run_until(5_000_000)
    link.set_capacity(300_000, sim.now_us)
    sim.run_until(7_000_000)
    assert sim.estimate_at(7_000_000) < 400_000

- `Link`: capacity C bit/s (changeable mid-run), a FIFO queue of at most `queue_bytes`
  that drops what does not fit (drop-tail, as a tbf or a home router does), a fixed
  propagation delay, optional random loss (a seeded RNG) before the queue.
- The sender sends `packet_size` packets at min(estimate, wanted): evenly paced, or with
  `frame_rate` set, as video frames that leave in a burst at `burst_factor` × the rate
  (what an SFU forwards: the publisher's pacer spread the frame, we pass it on as it
  came). While a probe cluster is being sent, it sends evenly at the cluster's target,
  every packet tagged (media and padding alike, as the worker will). It asks
  `probe_request` every 25 ms.
- The receiver is `sfu.engine.twcc.TransportCcRecorder`, the one our own receive side
  uses: it builds real feedback packets every 50-100 ms (random, seeded), which travel
  back over an uncongested path and are parsed with `sfu.wire.rtcp.parse_compound`
  before the estimator sees them: the wire format, its 250 µs rounding and its
  reference time are part of what is tested. `receiver_clock_us` puts the receiver's
  clock anywhere (near the 24-bit reference-time wrap, say). With `feedback_faults`
  p, that fraction of feedback packets is delivered twice, the copy up to 150 ms late
  (after newer ones: duplicated and reordered).

Time is an int of microseconds; nothing sleeps.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque

from sfu.engine.bwe import BandwidthEstimator
from sfu.engine.twcc import TransportCcRecorder
from sfu.wire import rtcp

PROBE_CHECK_US = 25_000


class Link:
    __slots__ = ("capacity_bps", "queue_bytes", "delay_us", "loss", "_rng", "_free_at_us", "dropped", "lost")

    def __init__(
        self, capacity_bps: int, queue_bytes: int, delay_us: int, loss: float = 0.0, seed: int = 1
    ) -> None:
        self.capacity_bps = capacity_bps
        self.queue_bytes = queue_bytes
        self.delay_us = delay_us
        self.loss = loss
        self._rng = random.Random(seed)
        self._free_at_us = 0.0  # when the link finishes what is queued
        self.dropped = 0  # by the full queue
        self.lost = 0  # at random

    def backlog_bytes(self, now_us: int) -> float:
        return max(0.0, self._free_at_us - now_us) * self.capacity_bps / 8e6

    def set_capacity(self, capacity_bps: int, now_us: int) -> None:
        """From now on. What is queued keeps the departure times it was given (so nothing
        is reordered); the queue's occupancy is read at the new rate from here on."""
        self.capacity_bps = capacity_bps

    def send(self, size: int, now_us: int) -> int | None:
        """When a packet entering now arrives at the receiver, or None if it is lost."""
        if self.loss and self._rng.random() < self.loss:
            self.lost += 1
            return None
        if self.backlog_bytes(now_us) + size > self.queue_bytes:
            self.dropped += 1
            return None
        start = max(float(now_us), self._free_at_us)
        self._free_at_us = start + size * 8e6 / self.capacity_bps
        return int(self._free_at_us) + self.delay_us


class Simulation:
    def __init__(
        self,
        estimator: BandwidthEstimator,
        link: Link,
        wanted_bps: int,
        packet_size: int = 1200,
        feedback_interval_us: tuple[int, int] = (50_000, 100_000),
        receiver_clock_us: int = 5_000_000_000,
        first_seq: int = 0,
        seed: int = 7,
        frame_rate: int | None = None,
        burst_factor: float = 2.5,
        feedback_faults: float = 0.0,
    ) -> None:
        self.estimator = estimator
        self.link = link
        self.wanted_bps = wanted_bps
        self.packet_size = packet_size
        self.feedback_interval_us = feedback_interval_us
        self.receiver_clock_us = receiver_clock_us
        self.now_us = 0
        self.timeline: list[tuple[int, int]] = []  # (time, estimate) after each feedback
        self.clusters = []  # every ProbeCluster asked for
        self._rng = random.Random(seed)
        self._seq = first_seq
        self._recorder = TransportCcRecorder()
        self._in_flight: deque[tuple[int, int]] = deque()  # (arrival, seq16), in order
        self._feedback_path: list[tuple[int, int, bytes]] = []  # a heap by delivery time
        self._order = itertools.count()
        self.feedback_faults = feedback_faults
        self._next_send_us = 0
        self._next_feedback_us = self._feedback_gap()
        self._next_probe_check_us = 0
        self._probe = None
        self._probe_packets = 0
        self._probe_bytes = 0
        self.sent_bytes = 0
        self.frame_interval_us = 1_000_000 // frame_rate if frame_rate else None
        self.burst_factor = burst_factor
        self._next_frame_us = 0
        self._frame_credit = 0.0  # bytes of the current frame still to send

    def _feedback_gap(self) -> int:
        low, high = self.feedback_interval_us
        return self._rng.randint(low, high)

    def run_until(self, end_us: int) -> None:
        while True:
            now = min(self._next_send_us, self._next_feedback_us, self._next_probe_check_us)
            if self._feedback_path:
                now = min(now, self._feedback_path[0][0])
            if now > end_us:
                self.now_us = end_us
                return
            self.now_us = now
            if self._feedback_path and self._feedback_path[0][0] == now:
                _, _, packet = heapq.heappop(self._feedback_path)
                (feedback,) = rtcp.parse_compound(packet)
                self.estimator.on_transport_feedback(feedback, now)
                self.timeline.append((now, self.estimator.estimate_bps))
            elif now == self._next_probe_check_us:
                self._next_probe_check_us += PROBE_CHECK_US
                if self._probe is None:
                    cluster = self.estimator.probe_request(now, self.wanted_bps)
                    if cluster is not None:
                        self.clusters.append(cluster)
                        self._probe, self._probe_packets, self._probe_bytes = cluster, 0, 0
                        self._next_send_us = min(self._next_send_us, now)
            elif now == self._next_feedback_us:
                self._next_feedback_us = now + self._feedback_gap()
                self._deliver_arrivals(now)
                packet = self._recorder.take_feedback(1, 2)
                if packet is not None:
                    arrive = now + self.link.delay_us
                    heapq.heappush(self._feedback_path, (arrive, next(self._order), packet))
                    if self.feedback_faults and self._rng.random() < self.feedback_faults:
                        late = arrive + self._rng.randint(0, 150_000)
                        heapq.heappush(self._feedback_path, (late, next(self._order), packet))
            else:
                self._send(now)

    def _send(self, now: int) -> None:
        size = self.packet_size
        cluster = self._probe
        if cluster is not None:
            rate = cluster.target_bps
            self._probe_packets += 1
            self._probe_bytes += size
            if self._probe_packets >= cluster.min_packets and self._probe_bytes >= cluster.min_bytes:
                self._probe = None
        else:
            rate = min(self.estimator.estimate_bps, self.wanted_bps)
            if self.frame_interval_us is not None and not self._frame_has_packet(now, rate):
                return
        seq16 = self._seq & 0xFFFF
        self._seq += 1
        self.estimator.on_packet_sent(seq16, size, now, cluster.id if cluster is not None else None)
        self.sent_bytes += size
        arrival = self.link.send(size, now)
        if arrival is not None:
            self._in_flight.append((arrival, seq16))
        gap = max(1, int(size * 8e6 / rate))
        if cluster is None and self.frame_interval_us is not None:
            self._frame_credit -= size
            if self._frame_credit < size:
                self._next_send_us = self._next_frame_us
                return
            gap = max(1, int(gap / self.burst_factor))
        self._next_send_us = now + gap

    def _frame_has_packet(self, now: int, rate: int) -> bool:
        """Frame mode: is a packet of the current frame due now? If not, wait for the next."""
        interval = self.frame_interval_us
        while now >= self._next_frame_us:
            # A frame smaller than a packet carries over (a low rate still sends).
            self._frame_credit = min(self._frame_credit, float(self.packet_size)) + rate * interval / 8e6
            self._next_frame_us += interval
        if self._frame_credit >= self.packet_size:
            return True
        self._next_send_us = self._next_frame_us
        return False

    def _deliver_arrivals(self, now: int) -> None:
        in_flight = self._in_flight
        while in_flight and in_flight[0][0] <= now:
            arrival, seq16 = in_flight.popleft()
            self._recorder.record(seq16, arrival + self.receiver_clock_us)

    def estimate_at(self, at_us: int) -> int:
        """The estimate as it stood at `at_us` (the last feedback before it)."""
        value = self.estimator.estimate_bps if not self.timeline else self.timeline[0][1]
        for when, estimate in self.timeline:
            if when > at_us:
                break
            value = estimate
        return value

    def estimates_between(self, start_us: int, end_us: int) -> list[int]:
        return [estimate for when, estimate in self.timeline if start_us <= when <= end_us]

    def first_time(self, start_us: int, condition) -> int | None:
        """When, after `start_us`, the estimate first satisfied `condition`."""
        for when, estimate in self.timeline:
            if when >= start_us and condition(estimate):
                return when
        return None
