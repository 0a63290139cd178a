"""Webhooks of meetings and participants (docs/control-plane-reference.md, "Webhooks"), with one
payload shape: `data` starts with {meeting_id, meeting_number}, then what the event adds.

    events.emit(meeting, "participant.joined", participant_id=..., name=..., role=...)
"""

from __future__ import annotations

from typing import Any

from control.meeting import numbers
from control.meeting.model import LiveMeeting
from control.store.base import MeetingRecord
from control.webhooks import WebhookSender


class MeetingEvents:
    def __init__(self, webhooks: WebhookSender) -> None:
        self._webhooks = webhooks

    def emit(self, meeting: LiveMeeting | MeetingRecord, event: str, **data: Any) -> None:
        """Schedule the webhook (never raises)."""
        if isinstance(meeting, LiveMeeting):
            meeting_id, number = meeting.meeting_id, meeting.number
        else:
            meeting_id, number = meeting.id, meeting.meeting_number
        payload = {"meeting_id": meeting_id, "meeting_number": numbers.display(number) if len(number) == 11 else number}
        payload.update(data)
        self._webhooks.emit(meeting.customer_id, event, payload)
