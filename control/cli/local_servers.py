"""Redis and PostgreSQL run from Debian's packages in a directory of ours, on a loopback
port: what `conclave cluster dev` starts for a trial cluster, and what the tests start
(tests/support/redis_server.py, tests/support/postgres.py build on these).

Nothing here is for production (those servers are the operator's, managed as they manage
them): Redis keeps nothing on disk, PostgreSQL runs without fsync. Both are stopped by PID.
PostgreSQL refuses to run as root: as root, it runs as the `postgres` user the package
creates.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psycopg

READY_TIMEOUT_S = 60.0
REDIS_STOP_GRACE_S = 3.0
POSTGRES_STOP_GRACE_S = 10.0
POSTGRES_SUPERUSER = "conclave"


class MissingServer(RuntimeError):
    """The Debian package that provides a server is not installed."""


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (free when asked: bind soon)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise MissingServer("needs redis-server (apt-get install -y redis-server)")
    return binary


def postgres_bin() -> Path | None:
    """The newest installed server's bin directory (/usr/lib/postgresql/N/bin), or None."""
    root = Path("/usr/lib/postgresql")
    versions = sorted((p for p in root.glob("*/bin/postgres")), key=lambda p: int(p.parts[-3]), reverse=True)
    return versions[0].parent if versions else None


class LocalRedis:
    """redis-server in memory only (no RDB, no AOF). `stop()` then `start()` keeps the port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.binary = redis_binary()
        self.directory = Path(directory)
        self.port = port or free_ports(1)[0]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            raise RuntimeError("redis-server is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(self.directory), "--daemonize", "no"]  # fmt: skip
        with open(self.directory / "redis.log", "ab") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.directory / 'redis.log').read_text()[-2000:]}")
            if self.answers():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(REDIS_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class LocalPostgres:
    """A cluster made with initdb in `directory` (created), on a loopback port; its
    superuser POSTGRES_SUPERUSER is trusted from loopback (a trial, never exposed)."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        found = postgres_bin()
        if found is None:
            raise MissingServer("needs PostgreSQL (apt-get install -y postgresql)")
        self.bin = found
        self.user = "postgres" if os.geteuid() == 0 else None
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_ports(1)[0]
        self.process: subprocess.Popen[bytes] | None = None
        self._log = None
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{POSTGRES_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        data = self.directory / "data"
        subprocess.run(
            [self.bin / "initdb", "-D", data, "-U", POSTGRES_SUPERUSER, "-A", "trust", "--no-sync", "-E", "UTF8"],
            user=self.user, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self._log = open(self.directory / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.directory),
            "max_connections": "300",
            # A trial's database: nothing needs to survive a crash of the machine.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        arguments = [item for name, value in settings.items() for item in ("-c", f"{name}={value}")]
        self.process = subprocess.Popen(
            [self.bin / "postgres", "-D", data, *arguments], user=self.user, stdout=self._log, stderr=self._log
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.directory / 'server.log').read_text()[-2000:]}")
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def admin(self, sql: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def stop(self, remove: bool = True) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown
            try:
                self.process.wait(timeout=POSTGRES_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
        if remove:
            shutil.rmtree(self.directory, ignore_errors=True)
