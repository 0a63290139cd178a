"""The store on PostgreSQL (`store.url: postgresql://...`), for several nodes sharing one
database: psycopg 3, the same queries as SQLite (`control.store.sql.SqlStore`).

Calls run on a few threads of the store's own, each with its own connection (autocommit:
a read is one statement; a write opens its transaction). Each write is one SERIALIZABLE
transaction: PostgreSQL then guarantees the result of running them one at a time, so the
checks inside one (the host's live-meeting limit, the customer's, the login policy, a
meeting's capacity) hold across every node without a lock of ours; a transaction it
refuses for a conflict (serialization failure, deadlock) is run again from its start.
The constraints of the schema (one open session per meeting, one open sign-in per host,
meeting numbers) hold whatever the code does.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg.errors
import sqlalchemy as sa

from control.store import schema
from control.store.base import StoreError
from control.store.sql import SqlStore

T = TypeVar("T")
# Connections (and threads) per store: concurrent calls of one node.
POOL_SIZE = 4
CONNECT_TIMEOUT_S = 10
# A write refused for a conflict is run again, after a short random pause, this many times.
MAX_ATTEMPTS = 60
RETRY_PAUSE_S = 0.002
RETRYABLE = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
_PLACEHOLDER_OR_LITERAL = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")


class IntegrityViolation(Exception):
    """A constraint PostgreSQL refused, worded like SQLite's message (the constraint or
    its columns, "UNIQUE" or "FOREIGN KEY"), so that one `_conflict` reads both."""


@lru_cache(maxsize=1024)
def to_pyformat(sql: str) -> str:
    """The store's `?` placeholders as psycopg's `%s`, a `?` inside a quoted string or name
    left alone; every `%` doubled, quoted or not (psycopg reads `%` everywhere)."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        return "%s" if token == "?" else token.replace("%", "%%")

    return _PLACEHOLDER_OR_LITERAL.sub(replace, sql)


def integrity_text(exc: psycopg.IntegrityError) -> str:
    """SQLite's wording of a refused constraint: "UNIQUE constraint failed: NAME (COLUMNS)"."""
    diag = exc.diag
    columns = ""
    detail = diag.message_detail or ""
    if detail.startswith("Key (") and ")=" in detail:
        columns = detail[len("Key (") : detail.index(")=")]
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return f"UNIQUE constraint failed: {diag.constraint_name} ({columns})"
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        return f"FOREIGN KEY constraint failed: {diag.constraint_name}"
    return f"constraint failed: {diag.constraint_name}: {diag.message_primary}"


class PgRow:
    """A row by column name or position, like sqlite3.Row."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: str | int) -> Any:
        return self._values[key if isinstance(key, int) else self._index[key]]

    def keys(self) -> list[str]:
        return list(self._index)


def pg_row_factory(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], PgRow]:
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: PgRow(values, index)


class PgConnection:
    """One thread's connection, speaking the store's dialect (`?`, SQLite's error words)."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        try:
            return self.raw.execute(to_pyformat(sql), tuple(params))
        except psycopg.IntegrityError as exc:
            raise IntegrityViolation(integrity_text(exc)) from exc
        except psycopg.OperationalError as exc:
            if not self.raw.closed:
                raise
            # The server went away (restarted, or ended this session): this call fails,
            # the thread's next one connects again.
            raise StoreError(f"the database connection was lost ({_first_line(exc)})") from None


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresStore(SqlStore):
    IntegrityError = IntegrityViolation
    BACKEND = "postgresql"

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self._clock = clock
        self._pool_size = pool_size
        self._executor: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._connections: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()

    @property
    def _db(self) -> PgConnection:
        db: PgConnection | None = getattr(self._local, "db", None)
        if db is None or db.raw.closed:
            db = self._local.db = PgConnection(self._connect())
        return db

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            raw = psycopg.connect(
                self.url, autocommit=True, row_factory=pg_row_factory, connect_timeout=CONNECT_TIMEOUT_S
            )
        except psycopg.OperationalError as exc:
            raise StoreError(f"{redacted(self.url)}: cannot connect ({_first_line(exc)})") from None
        with self._lock:  # the ones a lost server closed are dropped here
            self._connections = [c for c in self._connections if not c.closed] + [raw]
        return raw

    def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn in one SERIALIZABLE transaction, again while PostgreSQL refuses it for a
        conflict with another (it then changed what fn reads)."""
        db = self._db
        for attempt in range(1, MAX_ATTEMPTS + 1):
            db.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
            try:
                result = fn(*args)
                db.execute("COMMIT")  # a conflict may be found only here
                return result
            except BaseException as exc:
                if not db.raw.closed:
                    db.raw.execute("ROLLBACK")
                if not _conflicted(exc) or attempt == MAX_ATTEMPTS:
                    raise
            with self._lock:
                self._transactions_retried += 1
            time.sleep(random.uniform(0, RETRY_PAUSE_S * attempt))
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=self._pool_size, thread_name_prefix="conclave-store")
        try:
            await self._run(self._migrate)
        except BaseException:
            await self.close()
            raise

    def _migrate(self) -> None:
        """Alembic's revisions in one transaction (PostgreSQL's DDL is transactional)."""
        engine = sa.create_engine(
            "postgresql+psycopg://", creator=lambda: psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S),
            poolclass=sa.pool.NullPool,
        )  # fmt: skip
        try:
            with engine.begin() as connection:
                schema.upgrade(connection, redacted(self.url))
        except sa.exc.OperationalError as exc:
            raise StoreError(f"{redacted(self.url)}: cannot migrate ({_first_line(exc.orig or exc)})") from None
        finally:
            engine.dispose()

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        await asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)
        with self._lock:
            connections, self._connections = self._connections, []
        for raw in connections:
            raw.close()
        self._local = threading.local()

    async def schema_version(self) -> int:
        return await self._run(
            lambda: schema.version_of(self._row("SELECT MAX(version_num) FROM alembic_version", ())[0])
        )


def _conflicted(exc: BaseException) -> bool:
    """Refused for a conflict with a concurrent transaction (worth running again)."""
    return isinstance(exc, RETRYABLE) or isinstance(exc.__cause__, RETRYABLE)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
