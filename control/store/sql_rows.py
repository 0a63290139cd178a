"""Rows (SQLite's or PostgreSQL's) to the store's records, and the columns each update may change."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, Protocol, TypeVar

from control.store.base import (
    AuditEntry,
    ChatMessage,
    ConsentEntry,
    Customer,
    Host,
    HostSession,
    LiveSession,
    MeetingRecord,
    ParticipantRecord,
    Recording,
    RecordingFile,
    StorageDeletion,
    WebhookDelivery,
)

R = TypeVar("R")


class Row(Protocol):
    """A row of either backend: its columns by name or by position."""

    def __getitem__(self, key: str | int) -> Any: ...

# Columns each update_* may change, and how a Python value is stored.
CUSTOMER_FIELDS = {"name", "status", "api_key_hash", "limits", "webhook_url", "webhook_secret"}
HOST_FIELDS = {"email", "name", "password_hash", "status"}
MEETING_FIELDS = {
    "title", "passcode", "start_time", "duration_minutes", "waiting_room", "locked", "last_n", "attendees_publish",
}
PARTICIPANT_FIELDS = {"state", "live_session_id", "name", "left_at", "removed"}
ENDED_STATES = ("left", "denied", "removed")
RECORDING_FIELDS = {"state", "stopped_at", "error", "key_prefix", "live_session_id"}
CONSENT_FIELDS = {"channels", "decision", "decided_at", "recording_id", "name"}
STORAGE_DELETION_FIELDS = {"state", "attempts", "last_error", "keys", "updated_at"}


def column_value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    return value


def placeholders(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


def is_in(column: str, values: Sequence[Any]) -> str:
    """`column IN (?, ...)` for the values (true of no row when there are none)."""
    return f"{column} IN ({placeholders(values) or 'NULL'})"


def add_equal(where: list[str], params: list[Any], **columns: Any) -> None:
    """Append `column = ?` to `where` and the value to `params`, for each value not None."""
    for name, value in columns.items():
        if value is not None:
            where.append(f"{name} = ?")
            params.append(value)


def _record(cls: type[R], row: Row, **converted: Any) -> R:
    """The record `cls` of a row: every field from its column (the record's fields are the
    table's columns, see `SqlStore._insert`), but those given `converted`."""
    return cls(**{f.name: row[f.name] for f in fields(cls) if f.name not in converted}, **converted)


def customer(row: Row) -> Customer:
    return _record(Customer, row, limits=json.loads(row["limits"]))


def host(row: Row) -> Host:
    return _record(Host, row)


def host_session(row: Row) -> HostSession:
    return _record(HostSession, row)


def meeting(row: Row) -> MeetingRecord:
    return _record(
        MeetingRecord, row, waiting_room=bool(row["waiting_room"]), locked=bool(row["locked"]),
        attendees_publish=bool(row["attendees_publish"]),
    )


def live_session(row: Row) -> LiveSession:
    return _record(LiveSession, row)


def participant(row: Row) -> ParticipantRecord:
    return _record(ParticipantRecord, row, removed=bool(row["removed"]))


def chat(row: Row) -> ChatMessage:
    return _record(ChatMessage, row)


def audit(row: Row) -> AuditEntry:
    return _record(AuditEntry, row, detail=json.loads(row["detail"]))


def delivery(row: Row) -> WebhookDelivery:
    return _record(WebhookDelivery, row)


def recording(row: Row) -> Recording:
    return _record(Recording, row)


def recording_file(row: Row) -> RecordingFile:
    return _record(RecordingFile, row)


def consent(row: Row) -> ConsentEntry:
    return _record(ConsentEntry, row, channels=list(json.loads(row["channels"])))


def storage_deletion(row: Row) -> StorageDeletion:
    settings = row["storage"]
    return _record(
        StorageDeletion, row, keys=list(json.loads(row["keys"])), storage=json.loads(settings) if settings else None
    )
