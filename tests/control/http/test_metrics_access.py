"""/metrics behind a bearer token (`metrics.token`) and on a listener of its own
(`metrics.listen`), over real servers (control.http.health)."""

from __future__ import annotations

import socket

from tests.support.http import fetch

TOKEN = "metrics-token-0123456789"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_metrics_need_the_bearer_token_when_one_is_set(conclave_server_factory):
    server = await conclave_server_factory(metrics={"token": TOKEN})
    url = f"{server.base_url}/metrics"
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN}):
        status, body, _ = await fetch("GET", url, headers=headers)
        assert status == 401 and body["error"]["code"] == "unauthorized", (headers, body)
    status, body, content_type = await fetch("GET", url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and content_type == "text/plain" and "conclave_worker_up" in body


async def test_metrics_on_a_listener_of_their_own_and_not_on_the_http_port(conclave_server_factory):
    port = free_port()
    server = await conclave_server_factory(metrics={"listen": f"127.0.0.1:{port}"})
    status, body, _ = await fetch("GET", f"http://127.0.0.1:{port}/metrics")
    assert status == 200 and "conclave_worker_up" in body
    status, _, _ = await fetch("GET", f"{server.base_url}/metrics")
    assert status == 404
    status, _, _ = await fetch("GET", f"http://127.0.0.1:{port}/healthz")
    assert status == 404  # that listener serves /metrics and nothing else
