"""The choice of a node for a new meeting (pure) and the node record's wire form."""

from __future__ import annotations

import pytest

from config import ConfigError
from config.schema import ClusterConfig
from control.cluster.load import LoadMeter, WorkerReading
from control.cluster.placement import NodeLoad, choose_node

pytestmark = pytest.mark.unit


def test_the_least_loaded_node_that_is_not_draining_is_chosen():
    nodes = [
        NodeLoad("a", cpu=0.10, participants=40),
        NodeLoad("b", cpu=0.02, participants=90, draining=True),
        NodeLoad("c", cpu=0.55, participants=3),
        NodeLoad("d", cpu=0.12, participants=12),
    ]
    assert choose_node(nodes).node_id == "d"  # a and d share a CPU step: fewer participants win
    assert choose_node([n for n in nodes if n.node_id != "d"]).node_id == "a"
    assert choose_node([NodeLoad("x", draining=True)]) is None
    assert choose_node([]) is None


def test_ties_are_broken_by_meetings_then_by_name():
    nodes = [NodeLoad("b", meetings=2), NodeLoad("c", meetings=1), NodeLoad("a", meetings=1)]
    assert choose_node(nodes).node_id == "a"


def test_a_node_record_survives_its_wire_form_and_ignores_unknown_fields():
    node = NodeLoad("n1", "https://n1.example", False, 0.25, 7, 2, 1500.0)
    assert NodeLoad.decode(node.encode()) == node
    assert NodeLoad.decode(b'{"node_id": "n2", "from_a_newer_release": 1}') == NodeLoad("n2")


@pytest.mark.parametrize("url", ["http://redis:6379", "redis-host:6379", "postgresql://x"])
def test_a_redis_url_of_another_kind_is_refused_by_its_key_without_repeating_it(url):
    with pytest.raises(ConfigError) as error:
        ClusterConfig(redis_url=url)
    assert str(error.value).startswith("cluster.redis_url:") and url not in str(error.value)


def test_the_registration_must_outlive_two_heartbeats():
    with pytest.raises(ConfigError, match="cluster.node_ttl_s"):
        ClusterConfig(heartbeat_s=1.0, node_ttl_s=1.5)
    assert ClusterConfig(redis_url="redis://127.0.0.1:6379/0").redis_url.startswith("redis://")


def test_the_load_meter_reports_the_busiest_worker_and_the_packet_rate():
    meter = LoadMeter()
    meter.update(10.0, [WorkerReading(0, 5.0, 1000), WorkerReading(1, 2.0, 500)])
    assert (meter.cpu, meter.packets_per_s) == (0.0, 0.0)  # one sample: no rate yet
    meter.update(12.0, [WorkerReading(0, 5.5, 21000), WorkerReading(1, 3.6, 4500)])
    assert meter.cpu == pytest.approx(0.8) and meter.packets_per_s == pytest.approx(12000)
    meter.update(13.0, [WorkerReading(0, 0.1, 22000), WorkerReading(1, 3.7, 5500)])  # worker 0 restarted
    assert meter.cpu == pytest.approx(0.1) and meter.packets_per_s == pytest.approx(2000)
