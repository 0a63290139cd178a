"""Who starts or stops a recording (or transcription), and whether they may: a pure
decision over who asks (`by`) and the customer's limits.

`by` is a control.meeting.model.Participant (signaling: checked here: the host, a
moderator, or for transcription anyone when the customer lets participants transcribe), a
name (REST: control.http.recordings checked who it is), a control.accounts.service.Actor
(a host: checked here) or None (the customer's `auto_record`). Refusals are ApiErrors.
"""

from __future__ import annotations

from typing import Any

from config import LimitsConfig
from control.accounts.service import Actor
from control.errors import ApiError
from control.meeting.model import LiveMeeting, Participant
from control.store.base import MeetingRecord


class Starter:
    """Who starts or stops: their name for the notice, their id for the store."""

    __slots__ = ("name", "started_by", "participant", "is_host")

    def __init__(self, name: str, started_by: str, participant: Participant | None, is_host: bool) -> None:
        self.name = name
        self.started_by = started_by
        self.participant = participant
        self.is_host = is_host


def starter_for(
    row: MeetingRecord, meeting: LiveMeeting, kind: str, by: Any, host_name: str, limits: LimitsConfig | None
) -> Starter:
    """Who asks, if they may (see the module's doc)."""
    participants_may = kind == "transcription" and limits is not None and limits.participants_may_transcribe
    if by is None:
        return Starter(host_name, "auto", None, True)
    if isinstance(by, Participant):
        if meeting.participants.get(by.participant_id) is not by:
            raise ApiError(409, "not_joined", "you are not in the meeting")
        if not (by.is_host or by.may("moderate") or participants_may):
            raise ApiError(403, "forbidden", f"only the host may start or stop {kind}")
        return Starter(by.name, by.participant_id, by, by.is_host)
    if isinstance(by, str):  # REST: control.http.recordings checked who it is; their name
        present = next((p for p in meeting.participants.values() if p.is_host and p.name == by), None)
        return Starter(by, present.participant_id if present else by, present, present is not None)
    if isinstance(by, Actor) and by.kind == "host" and by.host_id == row.host_id:
        present = next((p for p in meeting.participants.values() if p.is_host), None)
        started_by = present.participant_id if present else f"host:{row.host_id}"
        return Starter(host_name, started_by, present, True)
    raise ApiError(403, "forbidden", f"only the meeting's host may start or stop {kind}")
