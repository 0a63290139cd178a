"""`conclave backup` and `conclave restore`: the SQLite database (the embedded default) to
a file and back.

    conclave backup --to /var/backups/conclave-2026-12-07.db    # while it serves: online
    conclave restore --from /var/backups/conclave-2026-12-07.db # with the server stopped

Both read the same settings as `serve` (`--config`, $CONCLAVE_CONFIG, CONCLAVE_* variables)
to find the database (`store.path`, else DATA_DIR/conclave.db). A backup is SQLite's
online backup: consistent while the server writes. A restore refuses while a server
answers on `http.host:http.port`, refuses a file that is not a Conclave database or whose
schema is newer than this Conclave, and keeps the database it replaces as
PATH.before-restore. The server migrates a restored older schema at its next start (after
its own backup, PATH.before-vN). Recordings live in the customers' storage and the spool
(DATA_DIR/spool): back those up with the file system.

Exit codes: 0 done, 1 refused or failed (the reason printed), 2 bad settings or usage.
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import sys

from config import ConfigError, load_config
from control.cli.doctor import local_host
from control.store import StoreError, store_path
from control.store.schema import SCHEMA_VERSION
from control.store.sqlite import backup_to
from control.store.sqlite import schema_version_of as version_in

SERVER_PROBE_TIMEOUT_S = 1.0


class BackupError(Exception):
    pass


def schema_version_of(path: str) -> int:
    """The Conclave schema version of the SQLite file at `path` (BackupError if it is not one)."""
    if not os.path.isfile(path):
        raise BackupError(f"{path}: no such file")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            version = version_in(db)
        finally:
            db.close()
    except (sqlite3.DatabaseError, StoreError) as exc:
        raise BackupError(f"{path}: not a Conclave database ({exc})") from None
    if version is None:
        raise BackupError(f"{path}: not a Conclave database (no schema version)")
    return version


def backup(database: str, target: str) -> int:
    """Copy the live database to `target`; its schema version."""
    version = schema_version_of(database)
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        backup_to(source, target)
    finally:
        source.close()
    return version


def restore(database: str, source_path: str) -> int:
    """Replace the database with the backup at `source_path`; its schema version."""
    version = schema_version_of(source_path)
    if version > SCHEMA_VERSION:
        raise BackupError(f"{source_path}: schema version {version} is newer than this Conclave knows "
                          f"({SCHEMA_VERSION}); restore it with the newer version")  # fmt: skip
    if os.path.exists(database):
        current = sqlite3.connect(database)
        try:
            backup_to(current, f"{database}.before-restore")
        finally:
            current.close()
    os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    target = sqlite3.connect(database)
    try:
        source.backup(target)  # page by page into the database, its WAL included
    finally:
        target.close()
        source.close()
    os.chmod(database, 0o600)
    return version


def server_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((local_host(host), port), SERVER_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def backup_command(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"conclave: bad configuration: {exc}", file=sys.stderr)
        return 2
    if cfg.store.url:
        print(f"conclave: {args.command} is for the SQLite file; store.url names PostgreSQL: "
              "use its own tools (pg_dump, pg_restore)", file=sys.stderr)  # fmt: skip
        return 1
    database = store_path(cfg)
    try:
        if args.command == "backup":
            version = backup(database, args.to)
            print(f"conclave: backed up {database} (schema v{version}) to {args.to}")
            return 0
        if server_answers(cfg.http.host, cfg.http.port):
            raise BackupError(f"a server answers on {cfg.http.host}:{cfg.http.port}: stop it before restoring")
        version = restore(database, args.source)
        print(f"conclave: restored {database} (schema v{version}) from {args.source}; "
              f"the one it replaced is {database}.before-restore")  # fmt: skip
        return 0
    except (BackupError, OSError, sqlite3.Error) as exc:
        print(f"conclave: {args.command} refused: {exc}", file=sys.stderr)
        return 1


def add_commands(commands: argparse._SubParsersAction) -> None:
    settings = {"metavar": "FILE", "help": "the settings `conclave serve` runs with (as for serve)"}
    parser = commands.add_parser("backup", help="copy the database (SQLite) to a file, while the server runs")
    parser.add_argument("--config", **settings)
    parser.add_argument("--to", required=True, metavar="FILE", help="where to write the copy")
    parser.set_defaults(handler=backup_command, command="backup")
    parser = commands.add_parser("restore", help="replace the database with a backup (the server stopped)")
    parser.add_argument("--config", **settings)
    parser.add_argument("--from", dest="source", required=True, metavar="FILE", help="the backup to restore")
    parser.set_defaults(handler=backup_command, command="restore")
