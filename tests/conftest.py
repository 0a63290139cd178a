"""Shared fixtures. Keep each fixture small and documented; the classes they hand out live
in tests/support/ (servers.py: ConclaveServer, SignalingSocket, ServerProcess).

Conclave servers (control plane + REAL SFU workers, 127.0.0.1 only, one worker, ephemeral
ports):
- `conclave_server`: in-process, started on this test's event loop; `.services` is its
  control.app.Services (store, registry, workers, conference, metrics, ...).
- `conclave_server_factory`: the same with settings overridden, e.g.
  `await conclave_server_factory(signaling={"messages_per_second": 5})`.
- `server_process`: `conclave serve` as a real subprocess with a temporary config;
  stopped by PID (SIGTERM, then SIGKILL) with any worker it left behind.
All of them stop every worker process at teardown. Each has `.base_url`,
`.ws_url(meeting)`, `await .create_meeting(title, waiting_room=False)` (a meeting of the
fixture host, started: meeting_id, meeting_number, passcode, join_url, host_token...),
`await .join(meeting, name)` (REST join) and helpers for customers and hosts
(`new_customer`, `new_host`), all through the real REST API with the operator key.

`signaling_socket`: `await signaling_socket(server.ws_url(id))` gives a bare signaling
WebSocket (`send`, `recv`, `recv_type`, `join`), closed at teardown; `join(name)` gets a
join token with the meeting's passcode first.

PostgreSQL (tests/support/postgres.py): `postgres`, one real server for the run (Debian's
package, an unprivileged user, a temporary directory, a free loopback port), and
`postgres_url`, a database of the test's own (a copy of a migrated template), dropped
after it. The store suite takes both backends (tests/control/store/conftest.py).

Speed tiers: every test gets exactly one of the markers `unit`, `process`, `browser`
(`pytest_collection_modifyitems` below): `browser` when it uses a Chromium fixture or is
marked so, `process` when it uses a fixture that starts real processes or servers
(PROCESS_FIXTURES) or is marked so, else `unit`. A `unit` test that starts a subprocess
fails (`unit_tests_start_no_process`).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from control.store.postgres import PostgresStore
from tests.support.postgres import PostgresServer
from tests.support.servers import (
    OPERATOR_KEY,
    ConclaveServer,
    ServerProcess,
    SignalingSocket,
    conclave_test_config,
    spawn_serve,
    start_in_process,
    stop_in_process,
    stop_serve,
)

# ------------------------------------------------------------------ speed tiers

TIERS = ("unit", "process", "browser")
# Fixtures that drive Chromium through Playwright.
BROWSER_FIXTURES = frozenset({"chromium"})
# Fixtures that start real processes or servers: control with its SFU worker processes,
# `conclave serve`, an in-process SFU worker on real sockets, SeaweedFS (S3), PostgreSQL.
PROCESS_FIXTURES = frozenset(
    {"conclave_server", "conclave_server_factory", "server_process", "signaling_socket", "worker", "seaweed", "s3",
     "postgres", "postgres_url"}
)  # fmt: skip


def tier_of(item: pytest.Item) -> str:
    """The one tier of a test: what it is marked, else what its fixtures make it."""
    marked = {mark.name for mark in item.iter_markers() if mark.name in TIERS}
    fixtures = set(getattr(item, "fixturenames", ()))
    found = "browser" if fixtures & BROWSER_FIXTURES else "process" if fixtures & PROCESS_FIXTURES else "unit"
    if len(marked) > 1:
        raise pytest.UsageError(f"{item.nodeid} is marked {' and '.join(sorted(marked))}: one tier only")
    if marked:
        (tier,) = marked
        if TIERS.index(tier) < TIERS.index(found):
            raise pytest.UsageError(f"{item.nodeid} is marked {tier} but its fixtures make it {found}")
        return tier
    return found


@pytest.hookimpl(tryfirst=True)  # before -m selects by these markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item)
        if item.get_closest_marker(tier) is None:
            item.add_marker(getattr(pytest.mark, tier))


class UnitTestStartedProcess(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def unit_tests_start_no_process(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails a `unit` test that starts a subprocess (subprocess.Popen, which asyncio's
    subprocesses also go through, or asyncio.create_subprocess_exec/_shell)."""
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    attempts: list[str] = []

    def refuse(what: str) -> UnitTestStartedProcess:
        attempts.append(what)
        return UnitTestStartedProcess(f"{what}: unit tests start no process: mark the module `process`")

    def popen_init(self: subprocess.Popen, args: Any, *more: Any, **kwargs: Any) -> None:
        raise refuse(f"subprocess.Popen({args!r})")

    async def create_subprocess_exec(program: Any, *args: Any, **kwargs: Any) -> Any:
        raise refuse(f"asyncio.create_subprocess_exec({program!r}, ...)")

    async def create_subprocess_shell(command: Any, **kwargs: Any) -> Any:
        raise refuse(f"asyncio.create_subprocess_shell({command!r})")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", popen_init)
        for module in (asyncio, asyncio.subprocess):
            patch.setattr(module, "create_subprocess_exec", create_subprocess_exec)
            patch.setattr(module, "create_subprocess_shell", create_subprocess_shell)
        yield
    if attempts:  # even where the test caught the exception
        pytest.fail("unit tests start no process: mark the module `process`\n" + "\n".join(attempts), pytrace=False)


# ------------------------------------------------------------------ in-process servers


@pytest.fixture
async def conclave_server(tmp_path: Path) -> AsyncIterator[ConclaveServer]:
    server, runner = await start_in_process(conclave_test_config(tmp_path))
    try:
        yield server
    finally:
        await stop_in_process(server, runner)


@pytest.fixture
async def conclave_server_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[ConclaveServer]]]:
    started: list[tuple[ConclaveServer, web.AppRunner]] = []

    async def start(**sections: dict[str, Any]) -> ConclaveServer:
        server, runner = await start_in_process(conclave_test_config(tmp_path, **sections))
        started.append((server, runner))
        return server

    try:
        yield start
    finally:
        for server, runner in reversed(started):
            await stop_in_process(server, runner)


# ------------------------------------------------------------------ raw signaling sockets


@pytest.fixture
async def signaling_socket() -> AsyncIterator[Callable[..., Awaitable[SignalingSocket]]]:
    """`await signaling_socket(server.ws_url(meeting_id))` opens a socket, closed at teardown.
    `socket.join(name)` on it first gets a join token with the meeting's passcode."""
    session = aiohttp.ClientSession()
    sockets: list[SignalingSocket] = []

    async def connect(url: str) -> SignalingSocket:
        ws = await session.ws_connect(url, autoclose=False, autoping=True)
        socket = SignalingSocket(ws, getattr(url, "token_source", None))
        sockets.append(socket)
        return socket

    try:
        yield connect
    finally:
        for socket in sockets:
            await socket.ws.close()
        await session.close()


# ------------------------------------------------------------------ subprocess server


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    """`conclave serve --config FILE` as a subprocess on free ports (port 0, URL read from
    its stdout). Stopped by PID at teardown, together with any worker it left behind."""
    config_path = tmp_path / "conclave.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "http": {"host": "127.0.0.1", "port": 0},
                "sfu": {"workers": 1, "port_base": 0, "listen_ip": "127.0.0.1"},
                "auth": {"operator_key": OPERATOR_KEY},
                "outbound": {"allowed_networks": ["127.0.0.0/8", "::1/128"]},  # test receivers, S3
                "logging": {"level": "info"},
                "turn": {"mode": "off"},  # no coturn unless a test asks for it
            }
        )
    )
    server = spawn_serve(config_path, tmp_path / "conclave-serve.log")
    workers = server.worker_pids()
    try:
        yield server
    finally:
        stop_serve(server, workers)


# ------------------------------------------------------------------ PostgreSQL


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the run (tests/support/postgres.py), with a migrated template
    database; `postgres.new_database()` gives a test a database of its own."""
    server = PostgresServer()
    try:
        server.start()
        server.prepare_template(lambda url: PostgresStore(url)._migrate())
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a fresh database of this test's own, dropped after it."""
    url = postgres.new_database()
    try:
        yield url
    finally:
        postgres.drop_database(url)
