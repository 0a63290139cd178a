"""Persistence of the control plane: the interface (`base`) and its implementations.

    store = open_store(cfg)      # not connected yet
    await store.open()           # migrations applied
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
    WebhookDelivery,
)
from control.store.ingests import IngestRecord
from control.store.sqlite import SqliteStore

DB_FILE_NAME = "conclave.db"


def store_path(cfg: Config) -> str:
    """`store.path`, or DATA_DIR/conclave.db when it is empty."""
    return cfg.store.path or os.path.join(cfg.data_dir, DB_FILE_NAME)


def open_store(cfg: Config) -> Store:
    """The store the settings name (sqlite: the only driver so far); call `await .open()`."""
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
    "MeetingRecord",
    "MeetingFull",
    "MeetingNotStartable",
    "NotFound",
    "ParticipantRecord",
    "Recording",
    "RecordingActive",
    "RecordingFile",
    "StorageDeletion",
    "Store",
    "StoreError",
    "WebhookDelivery",
    "open_store",
    "store_path",
]
