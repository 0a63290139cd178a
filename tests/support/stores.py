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
