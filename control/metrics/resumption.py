"""Restarts that end nothing in Prometheus (control.meeting.resumption): the meetings this
process took up again at its start, and the reconnect credentials traded at
`POST .../rejoin`, by outcome (admitted, expired, refused: any other refusal)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from control.meeting.resumption import Resumption


class ResumptionCollector(Collector):
    def __init__(self, resumption: Resumption) -> None:
        self._resumption = resumption

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("conclave_meetings_resumed", "Live meetings this process took up again at its "
                                  "start (left live by the run before it)", value=self._resumption.resumed_meetings)  # fmt: skip
        rejoins = CounterMetricFamily("conclave_rejoins", "Reconnect credentials presented to come back after a "
                                      "lost connection, by outcome", labels=["outcome"])  # fmt: skip
        for outcome, count in self._resumption.rejoins.items():
            rejoins.add_metric([outcome], count)
        yield rejoins
