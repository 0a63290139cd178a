"""Webhook events of recording and transcription, with one payload shape for all callers.

    events.emit(customer_id, "recording.started", meeting_id=..., meeting_number=...,
                recording_id=..., kind="recording", started_by="Ann", ...)

`data` always starts with {meeting_id, meeting_number} (as every webhook of
docs/control-plane-reference.md), then `recording_id`, then what the event adds:
- recording.started: kind, live_session_id, started_by, started_at
- recording.stopped: kind, stopped_at, (stopped_by)
- recording.uploaded: file_id, key, file_kind, size, sha256, content_type
- recording.failed: kind, reason
- transcript.ready: keys, transcript_url (the page `/t/<recording_id>`)
Times given as epoch seconds are sent as ISO 8601 (control.clock.iso_time).
"""

from __future__ import annotations

import logging
from typing import Any

from control.clock import iso_time
from control.meeting import numbers
from control.webhooks import WebhookSender

log = logging.getLogger(__name__)

RECORDING_EVENTS = (
    "recording.started",
    "recording.stopped",
    "recording.uploaded",
    "recording.failed",
    "transcript.ready",
)
TIME_FIELDS = ("started_at", "stopped_at")


def transcript_path(recording_id: str) -> str:
    return f"/t/{recording_id}"


def recording_payload(event: str, **data: Any) -> dict[str, Any]:
    """The webhook `data` of a recording event (see the module doc); ValueError for an
    event that is not one of RECORDING_EVENTS or data without the ids."""
    if event not in RECORDING_EVENTS:
        raise ValueError(f"not a recording event: {event!r}")
    for name in ("meeting_id", "meeting_number", "recording_id"):
        if not data.get(name):
            raise ValueError(f"{event}: {name} is required")
    number = str(data.pop("meeting_number"))
    payload: dict[str, Any] = {
        "meeting_id": data.pop("meeting_id"),
        "meeting_number": numbers.display(number) if len(number) == 11 and number.isdigit() else number,
        "recording_id": data.pop("recording_id"),
    }
    for name in TIME_FIELDS:
        if isinstance(data.get(name), (int, float)) and not isinstance(data[name], bool):
            data[name] = iso_time(float(data[name]))
    if event == "transcript.ready":
        data.setdefault("transcript_url", transcript_path(payload["recording_id"]))
    payload.update(data)
    return payload


class RecordingEvents:
    def __init__(self, webhooks: WebhookSender) -> None:
        self._webhooks = webhooks

    def emit(self, customer_id: str, event: str, **data: Any) -> None:
        """Schedule the webhook (never raises, like WebhookSender.emit)."""
        try:
            payload = recording_payload(event, **data)
        except ValueError:
            log.exception("recording webhook %s not sent", event)
            return
        self._webhooks.emit(customer_id, event, payload)
