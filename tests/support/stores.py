"""Reaching under a store in tests: a connection of the test's own to the same database
(SQLite file or PostgreSQL database), to check what the schema itself enforces."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg

from control.store.postgres import PostgresStore
from control.store.sql import SqlStore
from control.store.sqlite import SqliteStore
from control.store.sqlite_legacy import LEGACY_MIGRATIONS


@contextlib.contextmanager
def direct_connection(store: SqlStore) -> Iterator[tuple[Any, type[Exception]]]:
    """An autocommit connection to `store`'s database, and the exception class its
    refusals raise (sqlite3.DatabaseError, psycopg.Error)."""
    if isinstance(store, SqliteStore):
        conn: Any = sqlite3.connect(store.path, isolation_level=None)
        error: type[Exception] = sqlite3.DatabaseError
    elif isinstance(store, PostgresStore):
        conn, error = psycopg.connect(store.url, autocommit=True), psycopg.Error
    else:
        raise TypeError(f"no direct connection to {type(store).__name__}")
    try:
        yield conn, error
    finally:
        conn.close()


def count_rows(store: SqlStore, table: str) -> int:
    with direct_connection(store) as (conn, _):
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def write_legacy_sqlite(path: str, *, customer: bool = False) -> None:
    """A file as the last release before Alembic left it: the hand-rolled migrations 1-7
    recorded in `schema_version` (and, with `customer`, one customer row to find again)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for version, statements in enumerate(LEGACY_MIGRATIONS, start=1):
        for statement in statements:
            db.execute(statement)
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    if customer:
        db.execute("INSERT INTO customer (id, name, api_key_hash, created_at) VALUES ('c1', 'Kept Inc', ?, 1)",
                   ("h" * 64,))  # fmt: skip
    db.close()
