"""A real PostgreSQL for tests: Debian's `postgresql` package (scripts/test installs it),
a cluster made with initdb in a temporary directory and run as an unprivileged user
(`postgres` when the tests run as root: PostgreSQL refuses to run as root), on a free
loopback port; stopped by PID and its directory removed.

`PostgresServer.new_database()` gives each test a database of its own, copied from a
template migrated once per run (so a test does not pay for the migrations)."""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from tests.support.seaweed import free_ports

READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
SUPERUSER = "conclave"
TEMPLATE = "conclave_template"


def postgres_bin() -> Path | None:
    """The newest installed server's bin directory (/usr/lib/postgresql/N/bin), or None."""
    root = Path("/usr/lib/postgresql")
    versions = sorted((p for p in root.glob("*/bin/postgres")), key=lambda p: int(p.parts[-3]), reverse=True)
    return versions[0].parent if versions else None


def require_postgres() -> Path:
    found = postgres_bin()
    if found is None:
        pytest.skip("PostgreSQL is not installed (scripts/test installs Debian's postgresql)")
    return found


def _run_as() -> str | None:
    """The user to run the server as: `postgres` when we are root, else ourselves."""
    return "postgres" if os.geteuid() == 0 else None


class PostgresServer:
    def __init__(self) -> None:
        self.bin = require_postgres()
        self.user = _run_as()
        self.directory = Path(tempfile.mkdtemp(prefix="conclave-pg-"))
        self.port = free_ports(1)[0]
        self.process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        data = self.directory / "data"
        subprocess.run(
            [self.bin / "initdb", "-D", data, "-U", SUPERUSER, "-A", "trust", "--no-sync", "-E", "UTF8"],
            user=self.user, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self.log = open(self.directory / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.directory),
            "max_connections": "300",
            # A test database: nothing needs to survive a crash of the machine.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        arguments = [item for name, value in settings.items() for item in ("-c", f"{name}={value}")]
        self.process = subprocess.Popen(
            [self.bin / "postgres", "-D", data, *arguments], user=self.user, stdout=self.log, stderr=self.log
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

    def prepare_template(self, migrate: callable) -> None:
        """Make the template every test's database is copied from: `migrate(url)` brings it
        to the schema."""
        self.admin(f"CREATE DATABASE {TEMPLATE}")
        migrate(self.url(TEMPLATE))

    def new_database(self, *, empty: bool = False) -> str:
        """A database of its own (a copy of the migrated template, or `empty`); its URL."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {'template0' if empty else TEMPLATE}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown
            try:
                self.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(AttributeError):
            self.log.close()
        shutil.rmtree(self.directory, ignore_errors=True)
