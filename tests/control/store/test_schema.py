"""control/store/schema.py: one source of truth for the schema. The Alembic revisions are
a numbered chain ending at SCHEMA_VERSION; a new SQLite file (the revisions' offline
script) gets exactly what running them online gives; a file of the hand-rolled
migrations, stamped and upgraded, ends with the same tables, columns, keys, indexes and
triggers as a new one; PostgreSQL gets the same tables, columns and indexes."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from control.store import schema
from control.store.postgres import PostgresStore
from control.store.sqlite import SqliteStore
from control.store.sqlite_legacy import LEGACY_MIGRATIONS
from tests.support.stores import write_legacy_sqlite

pytestmark = pytest.mark.timeout(60)


def test_the_revisions_are_one_numbered_chain_ending_at_the_schema_version():
    scripts = schema.scripts()
    assert scripts.get_heads() == [schema.revision_of(schema.SCHEMA_VERSION)]
    chain = [revision.revision for revision in scripts.walk_revisions()]  # head first
    assert chain == [schema.revision_of(v) for v in range(schema.SCHEMA_VERSION, schema.BASELINE - 1, -1)]
    assert len(LEGACY_MIGRATIONS) == schema.BASELINE


def sqlite_schema(path: Path) -> dict[str, object]:
    """What a SQLite file's schema says, in a form that ignores how the DDL was spelled."""
    db = sqlite3.connect(path)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        described: dict[str, object] = {}
        for table in tables:
            # (name, type, not null, default, primary key); a primary key's "not null" is left
            # out: the hand-rolled DDL let SQLite's quirk stand (a nullable TEXT key), new
            # files say NOT NULL; no row ever had a NULL id.
            columns = sorted(
                (name, kind, None if key else notnull, default, key)
                for _, name, kind, notnull, default, key in db.execute(f"PRAGMA table_info({table})")
            )
            keys = sorted((r[2], r[3], r[4], r[6]) for r in db.execute(f"PRAGMA foreign_key_list({table})"))
            indexes = sorted(
                (r[1], r[2], r[4], tuple(c[2] for c in db.execute(f"PRAGMA index_info({r[1]})")))
                for r in db.execute(f"PRAGMA index_list({table})")
                if not r[1].startswith("sqlite_autoindex")
            )
            described[table] = (columns, keys, indexes)
        described["triggers"] = sorted(
            r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        )
        described["version"] = db.execute("SELECT version_num FROM alembic_version").fetchall()
        return described
    finally:
        db.close()


async def test_a_new_file_gets_what_running_the_revisions_online_gives(tmp_path):
    store = SqliteStore(str(tmp_path / "new.db"))
    await store.open()
    await store.close()
    online = tmp_path / "online.db"
    engine = sa.create_engine(f"sqlite:///{online}")
    with engine.begin() as connection:
        assert schema.upgrade(connection, str(online)) == schema.SCHEMA_VERSION
    engine.dispose()
    assert sqlite_schema(tmp_path / "new.db") == sqlite_schema(online)


async def test_a_file_of_the_hand_rolled_migrations_ends_with_the_schema_of_a_new_one(tmp_path):
    old = tmp_path / "old.db"
    write_legacy_sqlite(str(old))
    for path in (old, tmp_path / "new.db"):
        store = SqliteStore(str(path))
        await store.open()
        assert await store.schema_version() == schema.SCHEMA_VERSION
        await store.close()
    upgraded, new = sqlite_schema(old), sqlite_schema(tmp_path / "new.db")
    assert upgraded.keys() == new.keys()
    for table in new:
        assert upgraded[table] == new[table], table




async def test_stores_opening_at_once_on_several_threads_each_get_their_own_schema(tmp_path):
    """Alembic's `op` and `context` are process-wide: runs on several threads at once (new
    files and upgrades) must not mix (each store has a thread of its own)."""
    schema.new_database_script.cache_clear()
    old = [tmp_path / f"old{i}.db" for i in range(3)]
    for path in old:
        write_legacy_sqlite(str(path))
    stores = [SqliteStore(str(path)) for path in [*old, *(tmp_path / f"new{i}.db" for i in range(3))]]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        assert [await store.schema_version() for store in stores] == [schema.SCHEMA_VERSION] * len(stores)
    finally:
        for store in stores:
            await store.close()
    schemas = [sqlite_schema(Path(store.path)) for store in stores]
    assert all(described == schemas[-1] for described in schemas)


@pytest.mark.process
async def test_postgresql_gets_the_same_tables_columns_and_indexes(tmp_path, postgres_url):
    sqlite_path = tmp_path / "new.db"
    store = SqliteStore(str(sqlite_path))
    await store.open()
    await store.close()
    pg = PostgresStore(postgres_url)
    await pg.open()
    try:
        assert await pg.schema_version() == schema.SCHEMA_VERSION
    finally:
        await pg.close()
    lite = sqlite_schema(sqlite_path)
    with psycopg.connect(postgres_url) as conn:
        for table, described in lite.items():
            if table in ("triggers", "version", "alembic_version"):
                continue
            columns, _keys, indexes = described
            found = conn.execute(
                "SELECT column_name, is_nullable FROM information_schema.columns WHERE table_name = %s", (table,)
            ).fetchall()
            # SQLite's notnull flag per column; PostgreSQL adds the `rowid` identity.
            expected = [(c[0], "YES" if c[2] == 0 else "NO") for c in columns] + [("rowid", "NO")]
            assert sorted(found) == sorted(expected), table
            names = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", (table,))}
            assert {index[0] for index in indexes} <= names, table
        triggers = {r[0] for r in conn.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")}
        assert triggers == set(lite["triggers"])
