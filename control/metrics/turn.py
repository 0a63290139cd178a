"""The managed coturn in Prometheus (control.processes.turn): whether it runs, and the
allocations its log reports. Nothing is exported when TURN is not managed."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from control.processes.turn import TurnSupervisor


class TurnCollector(Collector):
    def __init__(self, turn: TurnSupervisor) -> None:
        self._turn = turn

    def collect(self) -> Iterator[Metric]:
        turn = self._turn
        if not turn.managed:
            return
        yield GaugeMetricFamily("conclave_turn_up", "1 when the managed coturn runs and listens",
                                value=1 if turn.up else 0)  # fmt: skip
        yield GaugeMetricFamily("conclave_turn_allocations", "TURN allocations open now (coturn's log)",
                                value=turn.log.allocations)  # fmt: skip
        yield CounterMetricFamily("conclave_turn_allocations_opened", "TURN allocations made (coturn's log)",
                                  value=turn.log.allocations_total)  # fmt: skip
        yield CounterMetricFamily("conclave_turn_auth_failures", "TURN requests coturn refused for their "
                                  "credentials (wrong or expired)", value=turn.log.auth_failures_total)  # fmt: skip
        yield CounterMetricFamily("conclave_turn_peers_denied", "Relay requests coturn refused because the peer "
                                  "is not the SFU (turn relay peers)", value=turn.log.peers_denied_total)  # fmt: skip
        yield CounterMetricFamily("conclave_turn_restarts", "Times the managed coturn was started again after "
                                  "it died", value=turn.restarts)  # fmt: skip
