"""Conclave servers as the tests see them (the fixtures of tests/conftest.py start them).

- `ConclaveServer`: URLs and REST helpers that go through the real API (operator key ->
  customer -> host -> login -> meeting -> start); `ServerProcess` is one run as
  `conclave serve` in a subprocess (`spawn_serve`, `stop_serve`).
- `conclave_test_config(tmp_path, **sections)`: the settings the fixtures use.
- `start_in_process(cfg)` / `stop_in_process(server, runner)`: control and its real SFU
  workers on this test's event loop.
- `SignalingSocket`: a bare signaling WebSocket for protocol tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import select
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from config import AuthConfig, Config, HttpConfig, OutboundConfig, SfuConfig, TurnConfig
from control.app import SERVICES, Services
from tests.support.paths import REPO_ROOT

OPERATOR_KEY = "test-operator-key-0123456789abcdef"
HOST_PASSWORD = "correct horse battery staple"
# The fixtures' own customer may hold many live meetings at once (most tests make several);
# tests of the limits make customers with the defaults (`new_customer`).
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
FIXTURE_LIMITS = {"max_live_meetings_per_host": 100, "max_concurrent_meetings": 100}


class ApiFailed(AssertionError):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class SocketUrl(str):
    """A signaling URL that knows how to get a join token for a name (REST join), so
    `signaling_socket(server.ws_url(id))` + `socket.join(name)` join as before."""

    token_source: Callable[[str], Awaitable[str]] | None = None


class ConclaveServer:
    """A running server as tests see it: URLs and REST helpers that go through the real
    API (operator key -> customer -> host -> login -> meeting -> start)."""

    def __init__(self, base_url: str, app: web.Application | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.app = app  # None for a subprocess server
        self.operator_key = OPERATOR_KEY
        self.meetings: dict[str, dict[str, Any]] = {}  # meeting id and number digits -> create_meeting()
        self._host: dict[str, Any] | None = None
        self._hosts = 0
        # HTTPS with a certificate the default trust store does not know (self-signed):
        # the context that trusts it, used by every REST call.
        self.ssl: ssl.SSLContext | None = None

    # -- REST ---------------------------------------------------------------

    async def api(
        self, method: str, path: str, *, token: str | None = None, json_body: Any = None, **kwargs: Any
    ) -> tuple[int, Any, Any]:
        """One request to `/api/v1{path}`: (status, parsed JSON or text, headers)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        connector = aiohttp.TCPConnector(ssl=self.ssl) if self.ssl is not None else None
        async with aiohttp.ClientSession(connector=connector) as session:
            url = f"{self.base_url}/api/v1{path}"
            async with session.request(method, url, json=json_body, headers=headers, **kwargs) as response:
                text = await response.text()
                try:
                    body = json.loads(text) if text else None
                except ValueError:
                    body = text
                return response.status, body, response.headers

    async def call(self, method: str, path: str, *, token: str | None = None, json_body: Any = None,
                   expect: int = 200) -> Any:  # fmt: skip
        status, body, _ = await self.api(method, path, token=token, json_body=json_body)
        if status != expect:
            raise ApiFailed(status, body)
        return body

    async def new_customer(self, limits: dict[str, Any] | None = None, name: str = "Test customer") -> dict[str, Any]:
        """POST /customers (operator): {"customer", "api_key"}."""
        body = {"name": name, **({"limits": limits} if limits else {})}
        return await self.call("POST", "/customers", token=self.operator_key, json_body=body, expect=201)

    async def new_host(
        self, customer_id: str | None = None, *, limits: dict[str, Any] | None = None, login: bool = True
    ) -> dict[str, Any]:
        """A host of `customer_id` (or of a new customer with `limits`), signed in:
        {"host_id", "customer_id", "email", "password", "token"}."""
        if customer_id is None:
            customer_id = (await self.new_customer(limits))["customer"]["id"]
        self._hosts += 1
        email = f"host{self._hosts}-{secrets.token_hex(4)}@example.com"
        body = {"email": email, "name": f"Host {self._hosts}", "password": HOST_PASSWORD}
        host = await self.call("POST", f"/customers/{customer_id}/hosts", token=self.operator_key, json_body=body,
                               expect=201)  # fmt: skip
        result = {"host_id": host["id"], "customer_id": customer_id, "email": email, "password": HOST_PASSWORD}
        if login:
            result["token"] = await self.login(email, HOST_PASSWORD)
        return result

    async def login(self, email: str, password: str = HOST_PASSWORD) -> str:
        reply = await self.call("POST", "/auth/login", json_body={"email": email, "password": password})
        return reply["token"]

    async def fixture_host(self) -> dict[str, Any]:
        """The host the fixtures create meetings with (made on first use)."""
        if self._host is None:
            self._host = await self.new_host(limits=FIXTURE_LIMITS)
        return self._host

    async def create_meeting(
        self,
        title: str = "test meeting",
        *,
        waiting_room: bool = False,
        start: bool = True,
        host: dict[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Schedule a meeting as a host (the fixture host unless `host`) and start it.

        Returns {"meeting_id" (store id), "meeting_number" ("XXX-XXXX-XXXX"), "number"
        (11 digits), "passcode", "join_url" (with its link token), "link_token", "title",
        "host_session" (the host's hs_ token)} and, once started, "host_token" (the host's
        join JWT), "host_participant_id", "live_session_id"."""
        host = host or await self.fixture_host()
        body = {"title": title, "waiting_room": waiting_room, **fields}
        created = await self.call("POST", "/meetings", token=host["token"], json_body=body, expect=201)
        number = created["meeting_number"].replace("-", "")
        query = urllib.parse.urlsplit(created["join_url"]).query
        meeting = {
            "meeting_id": created["id"],
            "meeting_number": created["meeting_number"],
            "number": number,
            "passcode": created["passcode"],
            "join_url": created["join_url"],
            "link_token": urllib.parse.parse_qs(query).get("t", [""])[0],
            "title": created["title"],
            "host_session": host["token"],
            "host_id": host["host_id"],
            "customer_id": host["customer_id"],
        }
        self.meetings[meeting["meeting_id"]] = self.meetings[number] = meeting
        if start:
            await self.start_meeting(meeting)
        return meeting

    async def start_meeting(self, meeting: dict[str, Any]) -> dict[str, Any]:
        started = await self.call("POST", f"/meetings/{meeting['number']}/start", token=meeting["host_session"])
        meeting.update(
            host_token=started["host_token"],
            host_participant_id=started["participant_id"],
            live_session_id=started["live_session_id"],
        )
        return started

    def _meeting(self, ref: str | dict[str, Any]) -> dict[str, Any]:
        if isinstance(ref, dict):
            return ref
        return self.meetings[ref.replace("-", "")] if ref.replace("-", "") in self.meetings else self.meetings[ref]

    async def join(self, ref: str | dict[str, Any], name: str, *, passcode: str | None = None,
                   link_token: str | None = None, expect: int = 200) -> Any:  # fmt: skip
        """POST /meetings/{number}/join with the meeting's passcode (or the given
        credential); returns the reply ({token, participant_id, ws_url, status, ...})."""
        meeting = self._meeting(ref)
        body: dict[str, Any] = {"name": name}
        if link_token is not None:
            body["link_token"] = link_token
        else:
            body["passcode"] = meeting["passcode"] if passcode is None else passcode
        return await self.call("POST", f"/meetings/{meeting['number']}/join", json_body=body, expect=expect)

    def bot(self, ref: str | dict[str, Any], name: str, **kwargs: Any) -> Any:
        """A client.bot.Bot for a meeting created here, joining with its passcode."""
        from client.bot import Bot

        meeting = self._meeting(ref)
        kwargs.setdefault("passcode", meeting["passcode"])
        return Bot(self.base_url, meeting["meeting_number"], name, **kwargs)

    def ws_url(self, ref: str | dict[str, Any], token: str | None = None) -> SocketUrl:
        """The signaling URL of a meeting created here (by id or number); `socket.join(name)`
        on it gets a join token first (POST .../join with the passcode)."""
        meeting = self._meeting(ref)
        url = self.base_url.replace("http", "ws", 1) + f"/api/v1/meetings/{meeting['meeting_number']}/ws"
        if token is not None:
            url += f"?token={token}"
        result = SocketUrl(url)

        async def token_source(name: str) -> str:
            return (await self.join(meeting, name))["token"]

        result.token_source = token_source
        return result

    @property
    def services(self) -> Services:
        """control.app.Services of an in-process server (store, registry, workers, ...)."""
        assert self.app is not None, "only in-process servers expose their services"
        return self.app[SERVICES]


def conclave_test_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """Defaults for tests (127.0.0.1, port 0, one worker on an ephemeral UDP port, a known
    operator key), then `sections` ({"signaling": {"messages_per_second": 5}}) laid over."""
    base = Config(
        data_dir=str(tmp_path / "data"),
        http=HttpConfig(host="127.0.0.1", port=0),
        sfu=SfuConfig(workers=1, port_base=0, listen_ip="127.0.0.1"),
        auth=AuthConfig(operator_key=OPERATOR_KEY),
        # The tests' webhook receivers and SeaweedFS listen on loopback, which the default
        # refuses (tests/control/test_webhooks.py proves it): allowed here.
        outbound=OutboundConfig(allowed_networks=LOOPBACK_NETWORKS),
        # No coturn unless a test asks for it (turn.mode auto would start one when installed).
        turn=TurnConfig(mode="off"),
    )
    changes = {name: dataclasses.replace(getattr(base, name), **values) for name, values in sections.items()}
    return dataclasses.replace(base, **changes)


async def start_in_process(cfg: Config) -> tuple[ConclaveServer, web.AppRunner]:
    from control.app import create_app

    runner = web.AppRunner(create_app(cfg), handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()  # starts the workers and waits until they are ready
    site = web.TCPSite(runner, cfg.http.host, cfg.http.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    return ConclaveServer(f"http://{host}:{port}", runner.app), runner


async def stop_in_process(server: ConclaveServer, runner: web.AppRunner) -> None:
    supervisor = server.services.workers
    await runner.cleanup()  # closes sockets, then stops workers by PID
    for worker in supervisor.workers:  # belt and braces: nothing may outlive the test
        if worker.process is not None and worker.process.returncode is None:
            worker.process.kill()
            await worker.process.wait()


# ------------------------------------------------------------------ raw signaling sockets


CREDENTIAL = "reconnect_credential"  # control.meeting.resumption.CREDENTIAL_MESSAGE


class SignalingSocket:
    """A bare signaling WebSocket for protocol tests (no media): send dicts or text,
    receive parsed messages, optionally skipping until a given type."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, token_source: Callable[[str], Awaitable[str]] | None = None
    ) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []  # every message received, in order
        self.token_source = token_source
        self.token: str | None = None  # the join token the last join used
        # `reconnect_credential` comes after `joined` and again now and then, whatever the
        # test is about: kept here (the latest in `credential`), returned only when asked
        # for with recv_type("reconnect_credential").
        self.credentials: list[dict[str, Any]] = []
        self.credential: str | None = None

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next message, credential renewals aside (see `credentials`)."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self._next(max(0.01, deadline - time.monotonic()))
            if message.get("type") != CREDENTIAL:
                return message

    async def _next(self, timeout: float) -> dict[str, Any]:
        frame = await self.ws.receive(timeout)
        if frame.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"expected a text frame, got {frame.type.name} {frame.data!r}")
        message = json.loads(frame.data)
        self.seen.append(message)
        if message.get("type") == CREDENTIAL:
            self.credentials.append(message)
            self.credential = message.get("credential")
        return message

    async def recv_type(self, message_type: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next message of `message_type`, skipping others (they stay in `seen`)."""
        if message_type == CREDENTIAL and self.credentials:
            return self.credentials.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            message = await self._next(max(0.01, deadline - time.monotonic()))
            if message.get("type") == message_type:
                if message_type == CREDENTIAL:
                    self.credentials.remove(message)
                return message

    async def recv_change(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next `participants_changed` batch with `kind` ("joined", "updated", "left")
        in it, skipping others (docs/signaling.md, "Participants")."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self.recv_type("participants_changed", max(0.01, deadline - time.monotonic()))
            if message.get(kind):
                return message

    async def send_join(self, name: str, **fields: Any) -> None:
        """Send `join`; without a `token` field, get one for `name` first (REST join)."""
        if "token" not in fields and self.token_source is not None:
            fields["token"] = await self.token_source(name)
        self.token = fields.get("token")
        await self.send({"type": "join", "name": name, **fields})

    async def join(self, name: str, **fields: Any) -> dict[str, Any]:
        """Join and return `joined` (use send_join + recv_type("waiting") for the waiting room)."""
        await self.send_join(name, **fields)
        return await self.recv_type("joined")

    async def expect_close(self, timeout: float = 5.0) -> int | None:
        """Skip messages until the server closes the socket; returns the close code."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.ws.receive(max(0.01, deadline - time.monotonic()))
            if frame.type == aiohttp.WSMsgType.TEXT:
                self.seen.append(json.loads(frame.data))
                continue
            if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                return self.ws.close_code if self.ws.close_code is not None else frame.data
            raise AssertionError(f"expected the socket to close, got {frame.type.name}")

    async def close(self) -> None:
        await self.ws.close()


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
        return child_pids(self.pid)

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


def child_pids(parent: int) -> list[int]:
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


def read_serving_url(process: subprocess.Popen[bytes], timeout: float) -> str:
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


def conclave_command() -> list[str]:
    """The installed `conclave` console script when there is one (pip install -e .),
    else the same entry point through the interpreter."""
    script = Path(sys.executable).parent / "conclave"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "control.cli"]


def kill_if_alive(pid: int) -> None:
    """SIGKILL a worker or recorder we saw, unless it is gone (checks what the PID runs)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"sfu.worker" in cmdline or b"-m\0recorder" in cmdline:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def spawn_serve(
    config_path: Path, log_path: Path, timeout: float = 60.0, extra_env: dict[str, str] | None = None
) -> ServerProcess:
    """`conclave serve --config config_path` as a subprocess (stderr to log_path), once it
    prints the URL it serves at; `extra_env` over the test's environment (CONCLAVE_ variables
    of the test run left out). Stop it with `stop_serve`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra_env or {})
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [*conclave_command(), "serve", "--config", str(config_path)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
        )
    try:
        return ServerProcess(read_serving_url(process, timeout), process, log_path)
    except BaseException:
        stop_process(process, [])
        raise


async def wait_ready(server: ConclaveServer, timeout: float = 30.0) -> None:
    """Until the server's /readyz answers 200 (its workers and store are up)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(server.base_url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{server.base_url} never became ready")


def stop_serve(server: ServerProcess, workers: list[int] = ()) -> None:
    """SIGTERM (SIGKILL after 20 s) and reap; then SIGKILL any worker or recorder it left
    behind, of `workers` (PIDs seen earlier) and of its children now."""
    stop_process(server.process, workers)


def stop_process(process: subprocess.Popen[bytes], workers: list[int]) -> None:
    workers = sorted(set(workers) | set(child_pids(process.pid)))
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
        kill_if_alive(pid)
