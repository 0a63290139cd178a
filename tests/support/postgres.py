"""A real PostgreSQL for tests: Debian's `postgresql` package (scripts/test installs it),
a cluster made with initdb in a temporary directory and run as an unprivileged user
(`postgres` when the tests run as root: PostgreSQL refuses to run as root), on a free
loopback port; stopped by PID and its directory removed.

`PostgresServer.new_database()` gives each test a database of its own, copied from a
template migrated once per run (so a test does not pay for the migrations)."""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import pytest

from control.cli.local_servers import LocalPostgres, postgres_bin

TEMPLATE = "conclave_template"


def require_postgres() -> Path:
    found = postgres_bin()
    if found is None:
        pytest.skip("PostgreSQL is not installed (scripts/test installs Debian's postgresql)")
    return found


class PostgresServer(LocalPostgres):
    """control.cli.local_servers.LocalPostgres in a temporary directory, with a migrated
    template each test's database is copied from."""

    def __init__(self) -> None:
        require_postgres()
        super().__init__(Path(tempfile.mkdtemp(prefix="conclave-pg-")))
        self._names = itertools.count(1)

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
