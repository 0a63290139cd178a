"""The embedded store: one SQLite file (WAL, foreign keys), stdlib `sqlite3`; the
single-machine default, no service to run.

Every call runs on one dedicated thread (a single-worker executor owns the connection),
so calls of this process never interleave. Each call that writes is one transaction
opened with `BEGIN IMMEDIATE`: it takes the write lock before reading, so the checks
inside it also hold against another process on the same file. At open the schema is
brought to this code's (`control.store.schema`), after a copy of the file is kept.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy as sa

from control.store import schema
from control.store.base import StoreError
from control.store.sql import SqlStore
from control.store.sqlite_legacy import LEGACY_MIGRATIONS

T = TypeVar("T")
BUSY_TIMEOUT_MS = 10_000


def backup_to(source: sqlite3.Connection, path: str) -> None:
    """A consistent copy of `source` at `path` (0600), taken with SQLite's online backup
    while others may go on writing."""
    partial = f"{path}.partial"
    fd = os.open(partial, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    os.close(fd)
    target = sqlite3.connect(partial)
    try:
        source.backup(target)
    finally:
        target.close()
    os.replace(partial, path)


def connect(path: str) -> sqlite3.Connection:
    """A connection as the store uses it: autocommit (transactions are explicit), rows by
    name, WAL, foreign keys on."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def schema_version_of(conn: sqlite3.Connection) -> int | None:
    """The schema version of a Conclave file: Alembic's revision, or the legacy
    `schema_version` table's; None for a file with neither (a new one)."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "alembic_version" in tables:
        return schema.version_of(conn.execute("SELECT MAX(version_num) FROM alembic_version").fetchone()[0])
    if "schema_version" in tables:
        return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)
    return None


class SqliteStore(SqlStore):
    IntegrityError = sqlite3.IntegrityError
    BACKEND = "sqlite"

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the store is not open")
        return self._conn

    def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn in one write transaction (BEGIN IMMEDIATE: the write lock is taken first)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(*args)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conclave-store")
        try:
            await self._run(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _open_sync(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        created = not os.path.exists(self.path)
        conn = connect(self.path)
        if created:
            os.chmod(self.path, 0o600)  # password hashes and secrets live here
        self._conn = conn
        try:
            self._migrate()
        except BaseException:
            conn.close()
            self._conn = None
            raise

    def _migrate(self) -> None:
        """Bring the file to this code's schema. A file of an older release is copied
        first (SQLite's online backup) to PATH.before-vN, N its version now: an upgrade
        that goes wrong can be undone with `conclave restore`."""
        version = schema_version_of(self._db)
        if version == schema.SCHEMA_VERSION:
            return  # the common case: no SQLAlchemy, no Alembic
        if version is None:
            self._create_schema()
            return
        schema.refuse_newer(version, self.path)
        backup_to(self._db, f"{self.path}.before-v{version}")
        if version <= schema.BASELINE and self._has_legacy_table():
            self._write(self._finish_legacy, version)
        self._run_revisions()

    def _create_schema(self) -> None:
        """A new file: every revision, as the one script they make (in one transaction)."""
        db = self._db
        try:
            db.executescript(f"BEGIN IMMEDIATE;\n{schema.new_database_script('sqlite')}\nCOMMIT;")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _has_legacy_table(self) -> bool:
        return self._row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'") is not None

    def _finish_legacy(self, version: int) -> None:
        """A file of the hand-rolled migrations: the ones it lacks, then the baseline
        stamped where they recorded themselves (in this one transaction)."""
        for statements in LEGACY_MIGRATIONS[version:]:
            for statement in statements:
                self._db.execute(statement)
        self._db.execute("DROP TABLE schema_version")
        schema.stamp_baseline(self._db)

    def _run_revisions(self) -> None:
        """Alembic's revisions on a second connection to the file, in one BEGIN IMMEDIATE
        transaction (SQLAlchemy's pysqlite would otherwise leave DDL outside it)."""
        engine = sa.create_engine("sqlite://", creator=lambda: connect(self.path), poolclass=sa.pool.NullPool)

        @sa.event.listens_for(engine, "begin")
        def begin_immediately(connection: sa.Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        try:
            with engine.begin() as connection:
                schema.upgrade(connection, self.path)
        finally:
            engine.dispose()

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_sync)
        finally:
            executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def schema_version(self) -> int:
        return await self._run(lambda: schema_version_of(self._db) or 0)
