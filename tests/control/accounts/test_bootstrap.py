"""`conclave serve` twice on one data directory: customers, hosts, meetings, sign-ins, chat
and the audit log are still there; a meeting left live by the first run is live again
after it (control.meeting.resumption: restarts end nothing); the first-start bootstrap
does not run again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.store.sqlite import SqliteStore
from tests.support.accounts_client import Api, make_customer, make_host, make_meeting
from tests.support.servers import ServerProcess, spawn_serve, stop_serve


@pytest.fixture
def restart_server(server_process) -> Iterator:
    """`restart_server()` starts `conclave serve` again with the config (and data directory)
    of `server_process`, which must be stopped first; stopped at teardown."""
    started: list[ServerProcess] = []
    config = Path(server_process.log_path).parent / "conclave.yaml"

    def start() -> ServerProcess:
        server = spawn_serve(config, config.parent / f"conclave-serve-{len(started) + 2}.log")
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            stop_serve(server, server.worker_pids())


def test_state_survives_a_restart(server_process, restart_server):
    data_dir = Path(server_process.log_path).parent / "data"
    operator_key = server_process.operator_key
    initial_password = (data_dir / "initial-host-password").read_text().strip()

    async def first_run() -> tuple:
        api = Api(server_process.base_url)
        acme = await make_customer(api, operator_key, "Acme")
        ann = await make_host(api, acme, "ann@acme.example")
        meeting = await make_meeting(api, ann, title="Weekly")
        return acme, ann, meeting

    acme, ann, meeting = asyncio.run(first_run())
    assert server_process.stop() == 0

    async def while_stopped() -> None:
        # What the sessions side writes while a meeting runs: chat, and the meeting live.
        store = SqliteStore(str(data_dir / "conclave.db"))
        await store.open()
        try:
            await store.append_chat(meeting["id"], "p1", "Bob", "hello", 1)
            await store.append_chat(meeting["id"], "p1", "Bob", "bye", 2)
            await store.start_live_session(meeting["id"], ann.id, 1)
        finally:
            await store.close()

    asyncio.run(while_stopped())
    again = restart_server()

    async def second_run() -> None:
        api = Api(again.base_url)
        customers = (await api.ok("GET", "/customers", token=operator_key))["customers"]
        assert sorted(c["name"] for c in customers) == ["Acme", "Default"]  # no second bootstrap
        assert (await api.ok("GET", "/auth/me", token=ann.token))["host"]["email"] == "ann@acme.example"
        assert (await api.ok("GET", f"/customers/{acme.id}", token=acme.api_key))["name"] == "Acme"
        await api.ok("POST", "/auth/login", json={"email": "admin@localhost", "password": initial_password})
        got = await api.ok("GET", f"/meetings/{meeting['meeting_number']}", token=ann.token)
        assert (got["id"], got["title"], got["passcode"]) == (meeting["id"], "Weekly", meeting["passcode"])
        assert got["status"] == "live"  # it was live when the server stopped: it goes on
        audit = (await api.ok("GET", "/audit?limit=1000", token=operator_key))["entries"]
        actions = [(e["action"], e["target_id"]) for e in audit]
        assert ("customer.create", acme.id) in actions and ("meeting.create", meeting["id"]) in actions
        assert not [e for e in audit if e["action"] == "meeting.end"]  # nothing ended it
        await api.ok("POST", f"/meetings/{meeting['meeting_number']}/end", token=ann.token)
        removed = await api.ok("DELETE", f"/meetings/{meeting['meeting_number']}/content", token=operator_key)
        # the chat was still there
        assert removed["removed"] == {"chat_messages": 2, "recordings": 0, "files": 0, "participants": 0,
                                      "consent_entries": 0, "webhook_deliveries": 0}  # fmt: skip

    asyncio.run(second_run())
    assert again.stop() == 0
    assert "Traceback" not in again.log_text()
