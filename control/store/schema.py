"""The schema's one source of truth: the Alembic revisions in `control/store/migrations/`,
applied at `open()` for SQLite and PostgreSQL alike.

Revisions are numbered ("0007", "0008", ...) and the number is the schema version that
`Store.schema_version()`, the backups' names (`conclave.db.before-vN`) and `conclave
restore` speak of. "0007" is the baseline: the schema the hand-rolled SQLite migrations
1-7 (`control.store.sqlite_legacy`) ended at; a SQLite file of theirs is brought to 7 by
them and stamped, never rebuilt. No env.py: the revisions run on a connection this module
hands Alembic, inside one transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: under an
advisory lock, so nodes starting at once migrate one after the other). A new SQLite file
gets the same revisions as the script Alembic writes of them (`new_database_script`).
"""

from __future__ import annotations

import io
import os
import threading
from functools import cache
from typing import Any

import sqlalchemy as sa
from alembic.config import Config as AlembicConfig
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from control.store.base import StoreError

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
BASELINE = 7
# The newest revision of this code, as a number (a test checks it against the scripts).
SCHEMA_VERSION = 9
# Any 64-bit number unlikely to collide with another application's advisory locks.
MIGRATION_LOCK_KEY = 0x636F6E636C617665  # "conclave"

_scripts: ScriptDirectory | None = None
# Alembic's `context` and `op` are module-level proxies set for the run in progress: two
# runs at once in one process (two stores opening on two threads) would each send the
# other's operations to the wrong connection. One at a time, then.
_one_run_at_a_time = threading.Lock()


def revision_of(version: int) -> str:
    return f"{version:04d}"


def scripts() -> ScriptDirectory:
    """The revisions, read from their files once per process."""
    global _scripts
    if _scripts is None:
        _scripts = ScriptDirectory(MIGRATIONS_DIR, version_locations=[MIGRATIONS_DIR])
    return _scripts


def version_of(revision: str | None) -> int:
    """A revision id as a schema version (0: none)."""
    if revision is None:
        return 0
    try:
        return int(revision)
    except ValueError:
        raise StoreError(f"the database is at revision {revision!r}, which no Conclave wrote") from None


def refuse_newer(version: int, where: str) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{where}: schema version {version} is newer than this Conclave knows ({SCHEMA_VERSION}); "
            "run the newer version"
        )


def current_version(connection: sa.Connection) -> int:
    return version_of(MigrationContext.configure(connection).get_current_revision())


def upgrade(connection: sa.Connection, where: str) -> int:
    """Apply the pending revisions on `connection` (in the caller's transaction); the
    version now. StoreError for a database newer than this code."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    refuse_newer(current_version(connection), where)
    script = scripts()

    def pending(revision: Any, context: MigrationContext) -> Any:
        return script._upgrade_revs("head", revision)

    with _one_run_at_a_time, EnvironmentContext(AlembicConfig(), script, fn=pending, destination_rev="head") as env:
        env.configure(connection=connection, fn=pending, transactional_ddl=True)
        env.run_migrations()
    return current_version(connection)


@cache
def new_database_script(dialect: str) -> str:
    """The SQL the revisions run on an empty database of `dialect` (Alembic's offline
    mode), made once per process: a new SQLite file gets it as one script instead of
    paying SQLAlchemy's DDL compilation at every open (most of a new store's open, and
    tests open many)."""
    script = scripts()
    output = io.StringIO()

    def pending(revision: Any, context: MigrationContext) -> Any:
        return script._upgrade_revs("head", revision)

    with (
        _one_run_at_a_time,
        EnvironmentContext(AlembicConfig(), script, fn=pending, destination_rev="head", as_sql=True) as env,
    ):
        env.configure(dialect_name=dialect, as_sql=True, output_buffer=output, fn=pending)
        env.run_migrations()
    return output.getvalue()


def stamp_baseline(connection: Any) -> None:
    """Record the baseline in Alembic's table on a DB-API connection inside a transaction
    (a SQLite file the legacy migrations have brought to 7)."""
    connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    connection.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (revision_of(BASELINE),))
