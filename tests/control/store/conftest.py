"""The store for the store's tests, on a fake clock: every test that takes `store` runs
against SQLite (a file of its own; `unit`) and against a real PostgreSQL (a database of
its own on the run's server, tests/support/postgres.py; `process`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from control.store.postgres import PostgresStore
from control.store.sql import SqlStore
from control.store.sqlite import SqliteStore


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.process)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def store(request: pytest.FixtureRequest, backend: str, tmp_path: Path, clock: Clock) -> AsyncIterator[SqlStore]:
    if backend == "sqlite":
        s: SqlStore = SqliteStore(str(tmp_path / "conclave.db"), clock=clock)
    else:
        s = PostgresStore(request.getfixturevalue("postgres_url"), clock=clock)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
