"""Upgrades and backups of the SQLite store: a database of the previous release's schema is
migrated (after a backup of itself) and served; `conclave backup` copies a live database,
`conclave restore` puts it back only with the server stopped and never a newer schema."""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import stat

import pytest
import yaml

from control.cli import backup as backup_cli
from control.store.schema import BASELINE, SCHEMA_VERSION
from control.store.sqlite import SqliteStore
from tests.support.stores import write_legacy_sqlite

pytestmark = pytest.mark.unit


async def test_an_older_schema_is_backed_up_then_migrated_and_its_data_served(tmp_path):
    path = str(tmp_path / "conclave.db")
    write_legacy_sqlite(path, customer=True)
    assert backup_cli.schema_version_of(path) == BASELINE == 7

    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        assert (await store.get_customer("c1")).name == "Kept Inc"
    finally:
        await store.close()
    db = sqlite3.connect(path)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    assert "schema_version" not in tables and "alembic_version" in tables  # stamped, then upgraded
    kept = f"{path}.before-v{BASELINE}"
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600
    assert backup_cli.schema_version_of(kept) == BASELINE


async def test_a_current_database_is_not_backed_up_again(tmp_path):
    path = str(tmp_path / "conclave.db")
    for _ in range(2):
        store = SqliteStore(path)
        await store.open()
        await store.close()
    assert [name for name in os.listdir(tmp_path) if ".before-" in name] == []


def args(tmp_path, command: str, port: int = 1, **more) -> argparse.Namespace:
    config = tmp_path / "conclave.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "http": {"port": port}}))
    return argparse.Namespace(config=str(config), command=command, **more)


async def test_backup_and_restore_round_trip_and_refusals(tmp_path, capsys):
    data = tmp_path / "data"
    store = SqliteStore(str(data / "conclave.db"))
    await store.open()
    await store.create_customer("Before Inc", api_key_hash="a" * 64)
    # A backup while the store is open (and could be writing).
    assert backup_cli.backup_command(args(tmp_path, "backup", to=str(tmp_path / "copy.db"))) == 0
    await store.create_customer("After Inc", api_key_hash="b" * 64)
    await store.close()

    assert backup_cli.backup_command(args(tmp_path, "restore", source=str(tmp_path / "copy.db"))) == 0
    store = SqliteStore(str(data / "conclave.db"))
    await store.open()
    names = {c.name for c in await store.list_customers()}
    await store.close()
    assert names == {"Before Inc"}
    assert backup_cli.schema_version_of(str(data / "conclave.db.before-restore")) == SCHEMA_VERSION

    # Not a database; a newer schema: refused, nothing replaced.
    (tmp_path / "junk.db").write_text("not sqlite at all")
    assert backup_cli.backup_command(args(tmp_path, "restore", source=str(tmp_path / "junk.db"))) == 1
    newer = tmp_path / "newer.db"
    db = sqlite3.connect(newer)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    assert backup_cli.backup_command(args(tmp_path, "restore", source=str(newer))) == 1
    # Something answers on the server's port: it may be running; refused.
    with socket.socket() as running:
        running.bind(("127.0.0.1", 0))
        running.listen()
        port = running.getsockname()[1]
        assert backup_cli.backup_command(args(tmp_path, "restore", port=port, source=str(tmp_path / "copy.db"))) == 1
    err = capsys.readouterr().err
    assert "not a Conclave database" in err and "newer than this Conclave knows" in err and "stop it" in err


def test_backup_and_restore_refuse_a_postgresql_store(tmp_path, capsys):
    config = tmp_path / "conclave.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"),
                                      "store": {"url": "postgresql://app:pg-secret@db.example/conclave"}}))  # fmt: skip
    namespace = argparse.Namespace(config=str(config), command="backup", to=str(tmp_path / "copy.db"))
    assert backup_cli.backup_command(namespace) == 1
    error = capsys.readouterr().err
    assert "pg_dump" in error and "pg-secret" not in error
    assert not (tmp_path / "copy.db").exists()
