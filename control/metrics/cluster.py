"""The cluster in Prometheus (control.cluster; nothing is exported on a single node):
whether Redis answers, the living nodes as this node saw them at its last heartbeat,
the placements this node made and the events it received from others."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from control.cluster.service import Cluster

REDIS_UP = "conclave_cluster_redis_up"
NODES = "conclave_cluster_nodes"


class ClusterCollector(Collector):
    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def collect(self) -> Iterator[Metric]:
        cluster = self._cluster
        yield GaugeMetricFamily(REDIS_UP, "1 while this node's heartbeat reaches Redis",
                                value=1 if cluster.reachable else 0)  # fmt: skip
        living = cluster.registry.living
        yield GaugeMetricFamily(NODES, "Nodes registered and alive, as of this node's last "
                                "heartbeat", value=len(living))  # fmt: skip
        yield GaugeMetricFamily("conclave_cluster_nodes_draining", "Of those, nodes taking no new meetings",
                                value=sum(1 for node in living.values() if node.draining))  # fmt: skip
        placements = CounterMetricFamily("conclave_cluster_placements", "Meeting placements this node asked "
                                         "for, by outcome: kept (the meeting's node lives), placed (a new "
                                         "meeting), replaced (its node had died)", labels=["outcome"])  # fmt: skip
        for outcome, count in cluster.placements.outcomes.items():
            placements.add_metric([outcome], count)
        yield placements
        yield CounterMetricFamily("conclave_cluster_events_received", "Cluster events from other nodes this "
                                  "node received", value=cluster.bus.received)  # fmt: skip
