"""How good one transport's path is, from RTCP alone (issue 14, item 1: call quality).

A `LinkQuality` sums what one report window says about a WebRTC transport's path:

- a subscriber's receiver report blocks about the streams we send it (RFC 3550 §6.4.1):
  the fraction lost since its last report and the interarrival jitter, and the round
  trip from LSR/DLSR. Our SRs carry the publisher's NTP time (translated per consumer,
  `sfu.engine.consumer.Consumer.send_sender_report`), so the round trip is not computed
  from NTP clocks: the transport remembers when it sent each SR's NTP middle 32 bits
  (`sender_report_sent`) and a block naming it as LSR gives
  `arrival - sent - DLSR` on our own monotonic clock;
- a publisher's streams as we receive them: each receiver report block we build
  (`sfu.wire.reception.ReceptionStats.report_values`) has the fraction lost in its
  interval and the jitter (`own_reception`).

Nothing here runs per RTP packet: only per report block. The clockwork takes the window
(`take`) every few seconds and the worker tells control (`sfu.api.TransportQuality`).
Pure: the clock is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sfu.wire import rtcp

# SRs sent whose arrival a report may still name: a subscriber names the last one of each
# stream, and its RR comes about a second later. Up to 64 streams per subscriber
# (media.max_subscribe_mlines), a video SR a second each (audio fewer): two seconds of
# them, and some, for a few kB per transport.
MAX_SENT_REPORTS = 256
# A round trip computed above this is a stale or forged LSR/DLSR, not a measurement.
MAX_RTT_S = 10.0
# Jitter above this (in seconds) is a timestamp jump (a new source), not jitter.
MAX_JITTER_S = 10.0


class LinkQuality:
    """One transport's report window: loss, jitter and round trip (see the module)."""

    __slots__ = ("clock", "_sent", "blocks", "loss_sum", "loss_max", "jitter_max_s", "rtt_sum_s", "rtt_samples")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._sent: dict[int, float] = {}  # NTP middle 32 bits of an SR we sent -> when
        self._reset()

    def _reset(self) -> None:
        self.blocks = 0  # report blocks (ours or the peer's) in the window
        self.loss_sum = 0.0
        self.loss_max = 0.0
        self.jitter_max_s = 0.0
        self.rtt_sum_s = 0.0
        self.rtt_samples = 0

    def sender_report_sent(self, ntp_middle: int) -> None:
        """We sent the peer an SR whose NTP timestamp's middle 32 bits are `ntp_middle`."""
        sent = self._sent
        sent.pop(ntp_middle, None)  # re-inserted last: the oldest is evicted first
        sent[ntp_middle] = self.clock()
        if len(sent) > MAX_SENT_REPORTS:
            del sent[next(iter(sent))]

    def peer_report(self, block: rtcp.ReportBlock, clock_rate: int) -> None:
        """A report block the peer sent about one of our streams (its RTP clock `clock_rate`)."""
        self._count(block.fraction_lost, block.jitter, clock_rate)
        if block.lsr == 0:
            return  # no SR of ours reached it yet (RFC 3550: LSR 0)
        sent_at = self._sent.get(block.lsr)
        if sent_at is None:
            return
        rtt = self.clock() - sent_at - block.dlsr / 65536
        if 0.0 <= rtt <= MAX_RTT_S:
            self.rtt_sum_s += rtt
            self.rtt_samples += 1

    def own_reception(self, block: rtcp.ReportBlock, clock_rate: int) -> None:
        """A report block we built about a stream we receive (its RTP clock `clock_rate`)."""
        self._count(block.fraction_lost, block.jitter, clock_rate)

    def _count(self, fraction_lost: int, jitter: int, clock_rate: int) -> None:
        loss = fraction_lost / 256
        self.blocks += 1
        self.loss_sum += loss
        if loss > self.loss_max:
            self.loss_max = loss
        if clock_rate > 0:
            jitter_s = jitter / clock_rate
            if self.jitter_max_s < jitter_s <= MAX_JITTER_S:
                self.jitter_max_s = jitter_s

    def take(self) -> dict[str, float] | None:
        """The window's summary, and a new window; None when nothing was reported in it.

        `loss_ratio`: the mean of the blocks' fractions lost (0..1), `loss_max` the worst
        stream's; `jitter_s`: the worst stream's jitter; `rtt_s`: the mean round trip
        (-1: none measured in the window); `blocks`: how many report blocks it summed."""
        if self.blocks == 0:
            return None
        summary = {
            "loss_ratio": round(self.loss_sum / self.blocks, 4),
            "loss_max": round(self.loss_max, 4),
            "jitter_s": round(self.jitter_max_s, 6),
            "rtt_s": round(self.rtt_sum_s / self.rtt_samples, 6) if self.rtt_samples else -1.0,
            "blocks": self.blocks,
        }
        self._reset()
        return summary
