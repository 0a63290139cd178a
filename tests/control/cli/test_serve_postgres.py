"""`conclave serve` on PostgreSQL (`store.url`), end to end: two real servers (two nodes)
on one database of the test PostgreSQL. A meeting is scheduled and started through one,
a participant joins through REST; the same host starting another meeting through the
other node is refused (409 host_has_live_meeting: the rule holds across nodes, in the
database); neither server's log shows the database password."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.servers import OPERATOR_KEY, ApiFailed, ConclaveServer, spawn_serve, stop_serve

pytestmark = [pytest.mark.process, pytest.mark.timeout(180)]
DB_PASSWORD = "pg-node-secret-4f1e"  # the test server trusts loopback; the password is only carried


def node_config(tmp_path: Path, name: str, store_url: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / name),
        "http": {"host": "127.0.0.1", "port": 0},
        "sfu": {"workers": 1, "port_base": 0, "listen_ip": "127.0.0.1"},
        "auth": {"operator_key": OPERATOR_KEY},
        "turn": {"mode": "off"},
        "logging": {"level": "debug"},
        "store": {"url": store_url},
    }))  # fmt: skip
    return path


def with_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{DB_PASSWORD}@{host}"


async def test_two_nodes_on_one_postgresql_serve_a_meeting_and_hold_the_host_rule(tmp_path, postgres_url):
    url = with_password(postgres_url)
    nodes = []
    try:
        for name in ("a", "b"):
            nodes.append(spawn_serve(node_config(tmp_path, name, url), tmp_path / f"{name}.log"))
        a, b = (ConclaveServer(node.base_url) for node in nodes)
        host = await a.new_host()
        meeting = await a.create_meeting("on node a", host=host)  # scheduled and started through a
        joined = await a.join(meeting, "Pat")
        assert joined["token"] and joined["participant_id"]

        b._host = host  # the same host, signed in once: its session lives in the shared database
        with pytest.raises(ApiFailed) as refused:
            await b.create_meeting("on node b", host=host)
        assert refused.value.status == 409
        assert refused.value.body["error"]["code"] == "host_has_live_meeting"
        assert meeting["meeting_number"] in refused.value.body["error"]["message"]  # names the live one
    finally:
        for node in nodes:
            stop_serve(node)
    for node in nodes:
        log = node.log_text()
        assert "store: PostgreSQL postgresql://" in log
        assert DB_PASSWORD not in log
