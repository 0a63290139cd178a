"""A full run of `conclave serve` logging JSON at debug level: every line one JSON event
(control, workers and the recorder alike), REST requests carry their id, a participant's
lines say which meeting and participant, and no secret the run used is anywhere in the log
(operator key, API key, password, session token, passcode, join token, S3 secret, a
wrong password guessed)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.support.servers import OPERATOR_KEY, spawn_serve, stop_serve

S3_SECRET = "s3-secret-Zq8vR2wK7yT4mN1pX6"

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


def start(tmp_path: Path):
    config = tmp_path / "conclave.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "http": {"host": "127.0.0.1", "port": 0},
        "sfu": {"workers": 1, "port_base": 0, "listen_ip": "127.0.0.1"},
        "turn": {"mode": "off"},
        "auth": {"operator_key": OPERATOR_KEY},
        "logging": {"level": "debug", "format": "json", "levels": ["aiohttp.access=debug"]},
    }))  # fmt: skip
    return spawn_serve(config, tmp_path / "serve.log")


async def a_meeting_with_secrets(server) -> list[str]:
    """Everything a day's use sends that must never be logged; returns those secrets."""
    created = await server.new_customer(name="Logs Inc")
    customer_id, api_key = created["customer"]["id"], created["api_key"]
    host = await server.new_host(customer_id)
    storage = {"kind": "s3", "endpoint_url": "https://s3.example.com", "region": "eu-west-1", "bucket": "logs-bucket",
               "prefix": "p/", "access_key_id": "AKIALOGS", "secret_access_key": S3_SECRET}  # fmt: skip
    await server.call("PUT", f"/customers/{customer_id}/storage", token=api_key, json_body=storage)
    meeting = await server.create_meeting(host=host)
    joined = await server.join(meeting, "Ada")
    # The signaling URL with the join token in its query string, as the web client opens it.
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(server.ws_url(meeting, token=joined["token"])) as ws:
            await ws.send_json({"type": "join", "token": joined["token"]})
            while (reply := await ws.receive_json(timeout=10))["type"] != "joined":
                pass
            await ws.send_json({"type": "chat", "text": "hello"})
            await asyncio.sleep(0.5)
    # A wrong password, a wrong passcode: refused and logged as refusals, without the guesses.
    await server.api("POST", "/auth/login", json_body={"email": host["email"], "password": "wrong-password-123"})
    await server.api("POST", f"/meetings/{meeting['number']}/join", json_body={"name": "X", "passcode": "999999"})
    return [OPERATOR_KEY, api_key, host["password"], host["token"], meeting["passcode"], meeting["host_token"],
            joined["token"], S3_SECRET, "wrong-password-123", reply["participant_id"]]


async def test_a_debug_run_logs_json_events_with_context_and_no_secret(tmp_path):
    server = start(tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.base_url}/api/v1/meetings", headers={"X-Request-Id": "probe-42"}) as r:
                assert r.status == 401 and r.headers["X-Request-Id"] == "probe-42"  # a caller's sane id is kept
            async with session.get(f"{server.base_url}/api/v1/meetings", headers={"X-Request-Id": "bad id\u00e9"}) as r:
                assert len(r.headers["X-Request-Id"]) == 16  # else a new one
        secrets = await a_meeting_with_secrets(server)
    finally:
        stop_serve(server)
    participant_id = secrets.pop()
    text = server.log_text()
    events = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is one JSON event
    assert {e["process"] for e in events} >= {"control", "worker-0", "recorder"}
    for secret in secrets:
        assert secret not in text, f"a secret is in the log: {secret[:4]}…"
    access = [e for e in events if e["logger"] == "aiohttp.access"]
    assert any(e["message"].startswith("GET /api/v1/meetings 401") and e["request_id"] == "probe-42" for e in access)
    assert any(e["message"].startswith("GET /api/v1/meetings/") and "/ws " in e["message"] for e in access)
    assert all("?" not in e["message"] for e in access)  # no query string: the socket's token was there
    # Lines logged for the participant's socket say whose they are.
    assert any(e.get("participant") == participant_id and e.get("meeting") for e in events), "no participant context"
