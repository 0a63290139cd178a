"""The host's controls over the people of a live meeting: admit, deny, remove, mute, lock,
promote and demote (a webinar's speakers: control.meeting.webinar).

Each acts on the store first (the truth about participants), then on whoever is connected:
an admitted person gets transports (control.meeting.attendance), a denied or removed one
is told why and their socket closes, a muted source is paused on the media server.
"""

from __future__ import annotations

import logging

from control.errors import ApiError, SignalingError
from control.meeting import closecodes
from control.meeting.attendance import Attendance
from control.meeting.conference import Conference
from control.meeting.events import MeetingEvents
from control.meeting.model import LiveMeeting, MeetingRegistry, Participant
from control.meeting.webinar import Webinar
from control.store.base import MeetingRecord, ParticipantRecord, Store

log = logging.getLogger(__name__)


class Moderation:
    def __init__(
        self,
        *,
        store: Store,
        registry: MeetingRegistry,
        conference: Conference,
        attendance: Attendance,
        events: MeetingEvents,
        webinar: Webinar,
    ) -> None:
        self._store = store
        self._webinar = webinar  # promote and demote (control.meeting.roles)
        self._registry = registry
        self._conference = conference
        self._attendance = attendance
        self._events = events
        # Devices (the join cookie) removed from a meeting: refused for as long as this
        # process runs (the store marks the removed participants themselves for good).
        self._removed_devices: dict[str, set[str]] = {}
        # participant id -> (meeting id, the device it joined from), to refuse that device
        # once the participant is removed; forgotten when the meeting ends.
        self._devices: dict[str, tuple[str, str]] = {}

    # ------------------------------------------------------------------ devices

    def joined_from(self, meeting_id: str, participant_id: str, device: str) -> None:
        self._devices[participant_id] = (meeting_id, device)

    def device_removed(self, meeting_id: str, device: str) -> bool:
        return device in self._removed_devices.get(meeting_id, ())

    def forget_devices_of(self, meeting_id: str) -> None:
        """The meeting ended: a removal can only come while it is live."""
        for participant_id, (device_meeting, _) in list(self._devices.items()):
            if device_meeting == meeting_id:
                del self._devices[participant_id]

    # ------------------------------------------------------------------ the controls

    async def _live_participant(self, record: MeetingRecord, participant_id: str) -> tuple[LiveMeeting, ParticipantRecord]:
        """The live meeting of `record` and one of its participants in the current live session."""
        session = await self._store.get_live_session(record.id)
        if session is None:
            raise ApiError(409, "not_live", "the meeting is not live")
        person = await self._store.get_participant(participant_id)
        if person is None or person.meeting_id != record.id or person.live_session_id != session.id:
            raise ApiError(404, "not_found", "no such participant in this meeting")
        return await self._attendance.live_meeting(record, session), person

    async def admit_waiting(self, meeting: LiveMeeting, participant: Participant) -> None:
        """Let someone connected in from the waiting room; if that fails (e.g. the meeting
        is full) they stay in the waiting room and the caller gets a 409."""
        try:
            await self._attendance.admit_connected(meeting, participant)
        except SignalingError as exc:
            log.info("meeting %s: admitting %s failed: %s", meeting.meeting_id, participant.participant_id, exc)
            await self._store.update_participant(participant.participant_id, state="waiting")
            meeting.waiting[participant.participant_id] = participant
            raise ApiError(409, exc.code, exc.message) from None

    async def _waiting_participant(
        self, record: MeetingRecord, participant_id: str
    ) -> tuple[LiveMeeting, ParticipantRecord]:
        meeting, person = await self._live_participant(record, participant_id)
        if person.state != "waiting":
            raise ApiError(409, "not_waiting", f"the participant is not waiting (they are {person.state})")
        return meeting, person

    async def admit(self, record: MeetingRecord, participant_id: str) -> ParticipantRecord:
        meeting, person = await self._waiting_participant(record, participant_id)
        person = await self._store.update_participant(person.id, state="admitted")
        meeting.admitted_ids.add(person.id)
        waiting = meeting.waiting.get(person.id)
        if waiting is not None:
            await self.admit_waiting(meeting, waiting)
        self._events.emit(meeting, "participant.admitted", participant_id=person.id, name=person.name)
        await self._attendance.notify_waiting_room(meeting)
        return person

    async def admit_all(self, record: MeetingRecord) -> list[ParticipantRecord]:
        session = await self._store.get_live_session(record.id)
        if session is None:
            raise ApiError(409, "not_live", "the meeting is not live")
        admitted = []
        for person in await self._attendance.waiting_list(record.id, session.id):
            try:
                admitted.append(await self.admit(record, person.id))
            except ApiError as exc:
                log.info("admit-all: %s not admitted: %s", person.id, exc)
        return admitted

    async def deny(self, record: MeetingRecord, participant_id: str) -> ParticipantRecord:
        meeting, person = await self._waiting_participant(record, participant_id)
        person = await self._store.update_participant(person.id, state="denied")
        self._attendance.cancel_pending(person.id)
        waiting = meeting.waiting.get(person.id)
        if waiting is not None:
            waiting.exit_reason = "denied"
            await self._conference.dismiss(meeting, waiting, {"type": "denied"}, closecodes.DENIED)
        await self._attendance.notify_waiting_room(meeting)
        return person

    async def remove(self, record: MeetingRecord, participant_id: str) -> ParticipantRecord:
        """Out for good: their token is revoked (the store marks them removed), the device
        they joined from is refused, a connected socket gets `removed` and closes."""
        meeting, person = await self._live_participant(record, participant_id)
        if person.role == "host":
            raise ApiError(409, "cannot_remove_host", "the host cannot be removed; end the meeting instead")
        was_waiting = person.state == "waiting"
        person = await self._store.update_participant(person.id, state="removed")
        meeting.hold_newcomers = True  # from a fresh browser they would be a stranger: newcomers wait
        self._attendance.cancel_pending(person.id)
        _, device = self._devices.get(person.id, (None, None))
        if device:
            self._removed_devices.setdefault(record.id, set()).add(device)
        connected = meeting.find_connected(person.id)
        if connected is not None:
            connected.exit_reason = "removed"
            await self._conference.dismiss(meeting, connected, {"type": "removed"}, closecodes.REMOVED)
            if connected.admitted:
                self._events.emit(meeting, "participant.left", participant_id=person.id, reason="removed")
        self._events.emit(meeting, "participant.removed", participant_id=person.id, name=person.name)
        if was_waiting:
            await self._attendance.notify_waiting_room(meeting)
        return person

    async def mute(self, record: MeetingRecord, participant_id: str, source: str, muted: bool) -> ParticipantRecord:
        meeting, person = await self._live_participant(record, participant_id)
        connected = meeting.participants.get(person.id)
        if connected is None:
            raise ApiError(409, "not_connected", "the participant is not in the meeting now")
        try:
            await self._conference.host_mute(meeting, connected, source, muted)
        except SignalingError as exc:
            raise ApiError(502, exc.code, exc.message) from None
        return person

    async def set_speaker(self, record: MeetingRecord, participant_id: str, speaker: bool) -> ParticipantRecord:
        """The host promotes an attendee of a webinar to speaker, or demotes a speaker."""
        meeting, person = await self._live_participant(record, participant_id)
        try:
            if speaker:
                await self._webinar.promote(meeting, None, person.id)
            else:
                await self._webinar.demote(meeting, None, person.id)
        except SignalingError as exc:
            status = 502 if exc.code == "media_error" else 409
            raise ApiError(status, exc.code, exc.message) from None
        return person

    async def set_locked(self, record: MeetingRecord, locked: bool) -> MeetingRecord:
        session = await self._store.get_live_session(record.id)
        if session is None:
            raise ApiError(409, "not_live", "only a live meeting can be locked")
        record = await self._store.update_meeting(record.id, locked=locked)
        meeting = await self._attendance.live_meeting(record, session)
        meeting.broadcast({"type": "meeting_updated", "locked": locked})
        return record
