"""Call quality in Prometheus (control.meeting.call_quality): how many participants are at
each level now, and the distributions of the round trips and losses the media server
measured. No participant or meeting label: the label values are the three levels and the
two directions, fixed sets."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from control.meeting.call_quality import DIRECTIONS, CallQuality
from control.meeting.quality import LEVELS, Distribution


class QualityCollector(Collector):
    def __init__(self, quality: CallQuality) -> None:
        self._quality = quality

    def collect(self) -> Iterator[Metric]:
        levels = GaugeMetricFamily(
            "conclave_participant_quality",
            "Participants whose connection quality is at each level now (excellent, good, poor)",
            labels=["quality"],
        )
        counts = self._quality.level_counts()
        for level in LEVELS:
            levels.add_metric([level], counts[level])
        yield levels
        rtt = HistogramMetricFamily(
            "conclave_rtt_seconds",
            "Round trips between the media server and subscribers, one per transport report window (RTCP LSR/DLSR)",
        )
        rtt.add_metric([], _buckets(self._quality.rtt_seconds), self._quality.rtt_seconds.total)
        yield rtt
        loss = HistogramMetricFamily(
            "conclave_loss_ratio",
            "Packet loss per transport report window (0..1): subscribe, what subscribers lost of what "
            "the server sent; publish, what the server lost of what publishers sent",
            labels=["direction"],
        )
        for direction in DIRECTIONS:
            distribution = self._quality.loss_ratio[direction]
            loss.add_metric([direction], _buckets(distribution), distribution.total)
        yield loss


def _buckets(distribution: Distribution) -> list[tuple[str, float]]:
    buckets = [(floatToGoString(bound), float(count)) for bound, count in zip(distribution.bounds, distribution.counts)]
    buckets.append(("+Inf", float(distribution.count)))
    return buckets
