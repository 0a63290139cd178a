"""SQLite rows to the store's records, and the columns each update may change."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from control.store.base import (
    AuditEntry,
    ChatMessage,
    Customer,
    Host,
    HostSession,
    LiveSession,
    Meeting,
    ConsentEntry,
    Participant,
    Recording,
    RecordingFile,
    WebhookDelivery,
)

# Columns each update_* may change, and how a Python value is stored.
CUSTOMER_FIELDS = {"name", "status", "api_key_hash", "limits", "webhook_url", "webhook_secret"}
HOST_FIELDS = {"email", "name", "password_hash", "status"}
MEETING_FIELDS = {"title", "passcode", "start_time", "duration_minutes", "waiting_room", "locked"}
PARTICIPANT_FIELDS = {"state", "live_session_id", "name", "left_at", "removed"}
ENDED_STATES = ("left", "denied", "removed")
RECORDING_FIELDS = {"state", "stopped_at", "error", "key_prefix", "live_session_id"}
CONSENT_FIELDS = {"channels", "decision", "decided_at", "recording_id", "name"}


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




def customer(row: sqlite3.Row) -> Customer:
    return Customer(
        id=row["id"],
        name=row["name"],
        status=row["status"],
        api_key_hash=row["api_key_hash"],
        limits=json.loads(row["limits"]),
        webhook_url=row["webhook_url"],
        webhook_secret=row["webhook_secret"],
        created_at=row["created_at"],
    )


def host(row: sqlite3.Row) -> Host:
    return Host(**{k: row[k] for k in ("id", "customer_id", "email", "name", "password_hash", "status", "created_at")})


def host_session(row: sqlite3.Row) -> HostSession:
    return HostSession(**{k: row[k] for k in ("id", "host_id", "created_at", "ended_at", "end_reason")})


def meeting(row: sqlite3.Row) -> Meeting:
    return Meeting(
        id=row["id"],
        meeting_number=row["meeting_number"],
        host_id=row["host_id"],
        customer_id=row["customer_id"],
        title=row["title"],
        passcode=row["passcode"],
        start_time=row["start_time"],
        duration_minutes=row["duration_minutes"],
        waiting_room=bool(row["waiting_room"]),
        status=row["status"],
        locked=bool(row["locked"]),
        created_at=row["created_at"],
    )


def live_session(row: sqlite3.Row) -> LiveSession:
    keys = ("id", "meeting_id", "host_id", "customer_id", "started_at", "ended_at", "end_reason")
    return LiveSession(**{k: row[k] for k in keys})


def participant(row: sqlite3.Row) -> Participant:
    keys = ("id", "meeting_id", "live_session_id", "name", "role", "state", "joined_at", "left_at")
    return Participant(**{k: row[k] for k in keys}, removed=bool(row["removed"]))


def chat(row: sqlite3.Row) -> ChatMessage:
    return ChatMessage(**{k: row[k] for k in ("id", "meeting_id", "seq", "participant_id", "name", "text", "ts")})


def audit(row: sqlite3.Row) -> AuditEntry:
    keys = ("id", "ts", "actor_kind", "actor_id", "action", "target_kind", "target_id", "source_ip")
    return AuditEntry(**{k: row[k] for k in keys}, detail=json.loads(row["detail"]))


def delivery(row: sqlite3.Row) -> WebhookDelivery:
    keys = ("id", "customer_id", "event", "payload", "attempt", "status", "response_code", "ts", "error")
    return WebhookDelivery(**{k: row[k] for k in keys})


def recording(row: sqlite3.Row) -> Recording:
    keys = (
        "id", "meeting_id", "live_session_id", "customer_id", "kind", "state",
        "started_at", "stopped_at", "started_by", "error", "key_prefix",
    )  # fmt: skip
    return Recording(**{k: row[k] for k in keys})


def recording_file(row: sqlite3.Row) -> RecordingFile:
    keys = (
        "id", "recording_id", "key", "kind", "track_id", "size", "sha256", "content_type",
        "start", "end", "uploaded_at",
    )  # fmt: skip
    return RecordingFile(**{k: row[k] for k in keys})


def consent(row: sqlite3.Row) -> ConsentEntry:
    keys = (
        "id", "meeting_id", "live_session_id", "participant_id", "name", "notified_at",
        "decision", "decided_at", "recording_id",
    )  # fmt: skip
    return ConsentEntry(**{k: row[k] for k in keys}, channels=list(json.loads(row["channels"])))
