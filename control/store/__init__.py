"""Persistence of the control plane: the interface (`base`) and its implementations.

    store = open_store(cfg)      # not connected yet
    await store.open()           # migrations applied

`store.url` empty: SQLite (`control.store.sqlite.SqliteStore`, the file at `store.path`);
a postgresql:// URL: PostgreSQL (`control.store.postgres.PostgresStore`). Both run the
same queries (`control.store.sql.SqlStore`) on the schema of `control.store.schema`.
"""

from __future__ import annotations

import os

from config import Config
from control.store.base import (
    AlreadyLive,
    AuditEntry,
    ChatMessage,
    Conflict,
    ConsentEntry,
    Customer,
    CustomerLimitReached,
    Host,
    HostHasLiveMeeting,
    HostSession,
    HostSessionActive,
    LiveSession,
    MeetingFull,
    MeetingNotStartable,
    MeetingRecord,
    NotFound,
    ParticipantRecord,
    Recording,
    RecordingActive,
    RecordingFile,
    StorageDeletion,
    Store,
    StoreError,
    StoreStats,
    WebhookDelivery,
)
from control.store.ingests import IngestRecord
from control.store.postgres import PostgresStore, redacted
from control.store.sqlite import SqliteStore

DB_FILE_NAME = "conclave.db"


def store_path(cfg: Config) -> str:
    """`store.path`, or DATA_DIR/conclave.db when it is empty."""
    return cfg.store.path or os.path.join(cfg.data_dir, DB_FILE_NAME)


def store_location(cfg: Config) -> str:
    """Which database the settings name, for the log (a PostgreSQL password left out)."""
    return f"PostgreSQL {redacted(cfg.store.url)}" if cfg.store.url else f"SQLite {store_path(cfg)}"


def open_store(cfg: Config) -> Store:
    """The store the settings name (PostgreSQL when `store.url` is set, else the SQLite
    file); call `await .open()`."""
    if cfg.store.url:
        return PostgresStore(cfg.store.url)
    return SqliteStore(store_path(cfg))


__all__ = [
    "AlreadyLive",
    "AuditEntry",
    "ChatMessage",
    "Conflict",
    "ConsentEntry",
    "Customer",
    "CustomerLimitReached",
    "Host",
    "HostHasLiveMeeting",
    "HostSession",
    "HostSessionActive",
    "IngestRecord",
    "LiveSession",
    "MeetingFull",
    "MeetingNotStartable",
    "MeetingRecord",
    "NotFound",
    "ParticipantRecord",
    "PostgresStore",
    "Recording",
    "RecordingActive",
    "RecordingFile",
    "SqliteStore",
    "StorageDeletion",
    "Store",
    "StoreError",
    "StoreStats",
    "WebhookDelivery",
    "open_store",
    "store_location",
    "store_path",
]
