"""Shared fixtures. Keep each fixture small and documented; helpers live beside it.

Conclave servers (control plane + REAL SFU workers, 127.0.0.1 only, one worker, ephemeral
ports):
- `conclave_server`: in-process, started on this test's event loop; `.state` is its
  control.state.AppState (meetings, supervisor, conference, metrics).
- `conclave_server_factory`: the same with settings overridden, e.g.
  `await conclave_server_factory(signaling={"messages_per_second": 5})`.
- `server_process`: `conclave serve` as a real subprocess with a temporary config;
  stopped by PID (SIGTERM, then SIGKILL) with any worker it left behind.
All of them stop every worker process at teardown. Each has `.base_url`,
`.ws_url(meeting_id)` and `await .create_meeting(title)`.

`signaling_socket`: `await signaling_socket(server.ws_url(id))` gives a bare signaling
WebSocket (`send`, `recv`, `recv_type`, `join`), closed at teardown.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from config import Config, HttpConfig, SfuConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


class ConclaveServer:
    """A running server as tests see it: URLs and a couple of REST helpers."""

    def __init__(self, base_url: str, app: web.Application | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.app = app  # None for a subprocess server

    def ws_url(self, meeting_id: str) -> str:
        return self.base_url.replace("http", "ws", 1) + f"/api/v1/meetings/{meeting_id}/ws"

    async def create_meeting(self, title: str = "test meeting") -> dict[str, Any]:
        """POST /api/v1/meetings; returns its JSON (meeting_id, join_url, title)."""
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{self.base_url}/api/v1/meetings", json={"title": title}) as response:
                assert response.status == 201, await response.text()
                return await response.json()

    @property
    def state(self) -> Any:
        """control.state.AppState of an in-process server."""
        from control.state import get_state

        assert self.app is not None, "only in-process servers expose their state"
        return get_state(self.app)


def conclave_test_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """Defaults for tests (127.0.0.1, port 0, one worker on an ephemeral UDP port), then
    `sections` ({"signaling": {"messages_per_second": 5}}) laid over them."""
    base = Config(
        data_dir=str(tmp_path / "data"),
        http=HttpConfig(host="127.0.0.1", port=0),
        sfu=SfuConfig(workers=1, port_base=0, listen_ip="127.0.0.1"),
    )
    changes = {name: dataclasses.replace(getattr(base, name), **values) for name, values in sections.items()}
    return dataclasses.replace(base, **changes)


async def _start_in_process(cfg: Config) -> tuple[ConclaveServer, web.AppRunner]:
    from control.app import create_app

    runner = web.AppRunner(create_app(cfg), handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()  # starts the workers and waits until they are ready
    site = web.TCPSite(runner, cfg.http.host, cfg.http.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    return ConclaveServer(f"http://{host}:{port}", runner.app), runner


async def _stop_in_process(server: ConclaveServer, runner: web.AppRunner) -> None:
    supervisor = server.state.supervisor
    await runner.cleanup()  # closes sockets, then stops workers by PID
    for worker in supervisor.workers:  # belt and braces: nothing may outlive the test
        if worker.process is not None and worker.process.returncode is None:
            worker.process.kill()
            await worker.process.wait()


@pytest.fixture
async def conclave_server(tmp_path: Path) -> AsyncIterator[ConclaveServer]:
    server, runner = await _start_in_process(conclave_test_config(tmp_path))
    try:
        yield server
    finally:
        await _stop_in_process(server, runner)


@pytest.fixture
async def conclave_server_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[ConclaveServer]]]:
    started: list[tuple[ConclaveServer, web.AppRunner]] = []

    async def start(**sections: dict[str, Any]) -> ConclaveServer:
        server, runner = await _start_in_process(conclave_test_config(tmp_path, **sections))
        started.append((server, runner))
        return server

    try:
        yield start
    finally:
        for server, runner in reversed(started):
            await _stop_in_process(server, runner)


# ------------------------------------------------------------------ raw signaling sockets


class SignalingSocket:
    """A bare signaling WebSocket for protocol tests (no media): send dicts or text,
    receive parsed messages, optionally skipping until a given type."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []  # every message received, in order

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        frame = await self.ws.receive(timeout)
        if frame.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"expected a text frame, got {frame.type.name} {frame.data!r}")
        message = json.loads(frame.data)
        self.seen.append(message)
        return message

    async def recv_type(self, message_type: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next message of `message_type`, skipping others (they stay in `seen`)."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self.recv(max(0.01, deadline - time.monotonic()))
            if message.get("type") == message_type:
                return message

    async def join(self, name: str, **fields: Any) -> dict[str, Any]:
        await self.send({"type": "join", "name": name, **fields})
        return await self.recv_type("joined")

    async def close(self) -> None:
        await self.ws.close()


@pytest.fixture
async def signaling_socket() -> AsyncIterator[Callable[..., Awaitable[SignalingSocket]]]:
    """`await signaling_socket(server.ws_url(meeting_id))` opens a socket, closed at teardown."""
    session = aiohttp.ClientSession()
    sockets: list[SignalingSocket] = []

    async def connect(url: str) -> SignalingSocket:
        socket = SignalingSocket(await session.ws_connect(url, autoclose=False, autoping=True))
        sockets.append(socket)
        return socket

    try:
        yield connect
    finally:
        for socket in sockets:
            await socket.ws.close()
        await session.close()


# ------------------------------------------------------------------ subprocess server


class ServerProcess(ConclaveServer):
    def __init__(self, base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
        super().__init__(base_url)
        self.process = process
        self.pid = process.pid
        self.log_path = log_path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        return _child_pids(self.pid)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _child_pids(parent: int) -> list[int]:
    """PIDs whose parent is `parent` (read from /proc; workers run in their own session)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 is the parent PID; the command name (field 2) may contain spaces.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent:
            children.append(int(entry.name))
    return children


def _read_serving_url(process: subprocess.Popen[bytes], timeout: float) -> str:
    """Wait for the "conclave serving at URL" line that `serve` prints once it listens."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    buffer = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buffer += chunk
            for line in buffer.decode(errors="replace").splitlines():
                if line.startswith("conclave serving at "):
                    return line.split()[3]
        elif process.poll() is not None:
            break
    raise RuntimeError(f"conclave serve did not start (exit code {process.poll()}); stdout: {buffer!r}")


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
                "logging": {"level": "info"},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    log_path = tmp_path / "conclave-serve.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [*_conclave_command(), "serve", "--config", str(config_path)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
        )
    workers: list[int] = []
    try:
        url = _read_serving_url(process, timeout=60.0)
        server = ServerProcess(url, process, log_path)
        workers = server.worker_pids()
        yield server
    finally:
        workers = sorted(set(workers) | set(_child_pids(process.pid)))
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        for pid in workers:
            _kill_if_alive(pid)


def _conclave_command() -> list[str]:
    """The installed `conclave` console script when there is one (pip install -e .),
    else the same entry point through the interpreter."""
    script = Path(sys.executable).parent / "conclave"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "control.cli"]


def _kill_if_alive(pid: int) -> None:
    """SIGKILL a worker we saw, unless it is gone (checks the PID still runs sfu.worker)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"sfu.worker" in cmdline:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
