"""Who is in a live meeting: people connecting with a join token, waiting, let in, gone.

The store is the truth about participants (waiting/admitted/denied/removed/left); the
registry (control.meeting.model) holds only the sockets and media of this process. A
socket that presents a valid join token is let in, held in the waiting room or refused by
control.meeting.admission; someone let in gets transports and `joined` from the
conference. A join token nobody connects with frees its place after its lifetime (plus a
grace), so unused tokens never fill a meeting.
"""

from __future__ import annotations

import logging
from typing import Any

from control.accounts.tokens import JoinClaims, Tokens
from control.clock import Clock, Timer
from control.errors import SignalingError
from control.meeting import admission, numbers
from control.meeting.chat import Chat
from control.meeting.conference import Conference
from control.meeting.events import MeetingEvents
from control.meeting.limits import LimitsPolicy
from control.meeting.model import (
    LiveMeeting,
    MeetingRegistry,
    Participant,
    Peer,
    is_valid_id,
)
from control.store.base import (
    LiveSession,
    MeetingRecord,
    NotFound,
    ParticipantRecord,
    Store,
)
from control.tasks import BackgroundTasks

log = logging.getLogger(__name__)

# A join token not used to connect within its lifetime (plus this) frees its place.
PENDING_GRACE_S = 5.0


class Attendance:
    def __init__(
        self,
        *,
        store: Store,
        registry: MeetingRegistry,
        conference: Conference,
        chat: Chat,
        tokens: Tokens,
        limits: LimitsPolicy,
        events: MeetingEvents,
        clock: Clock,
        tasks: BackgroundTasks,
    ) -> None:
        self._store = store
        self._registry = registry
        self._conference = conference
        self._chat = chat
        self._tokens = tokens
        self._limits = limits
        self._events = events
        self._clock = clock
        self._tasks = tasks
        # Participants holding a join token who have not connected (yet): the timer that
        # marks them gone if they never do, so they stop holding a place in the meeting.
        self._pending: dict[str, tuple[str, Timer]] = {}

    # ------------------------------------------------------------------ finding meetings

    async def find_meeting(self, ref: str) -> MeetingRecord | None:
        """A meeting by its number (numbers.parse's grammar) or by its id."""
        digits = numbers.parse(ref)
        if digits is not None:
            return await self._store.get_meeting_by_number(digits)
        if not is_valid_id(ref):
            return None
        meeting = await self._store.get_meeting(ref)
        return meeting if meeting is not None and meeting.status != "removed" else None

    async def live_meeting(self, record: MeetingRecord, live_session: LiveSession | None) -> LiveMeeting:
        """The live side of `record`, with its limits (taken once, from the customer)."""
        meeting = self._registry.live(record, live_session)
        if meeting.limits is None:
            customer = await self._store.get_customer(record.customer_id)
            if customer is None:
                raise SignalingError("meeting_ended", "this meeting is no longer available")
            meeting.limits = self._limits.for_meeting(customer)
        return meeting

    # ------------------------------------------------------------------ connecting

    async def _ended_refusal(self, live_session_id: str) -> SignalingError:
        """The refusal for a token of a live session that has ended, with why it ended: a
        page that was reconnecting when the meeting ended words it as those inside heard it."""
        ended = await self._store.get_live_session_by_id(live_session_id)
        reason = ended.end_reason if ended is not None and ended.end_reason else None
        extra = {"reason": reason} if reason else {}
        return SignalingError("meeting_ended", "the meeting this token was for has ended; join again", **extra)

    async def connect(
        self,
        record: MeetingRecord,
        claims: JoinClaims,
        person: ParticipantRecord,
        peer: Peer,
        message_id: Any = None,
    ) -> tuple[LiveMeeting, Participant]:
        """A socket presented a valid join token: into the meeting, or its waiting room."""
        live_session = await self._store.get_live_session(record.id)
        if person.live_session_id is not None and (live_session is None or live_session.id != person.live_session_id):
            raise await self._ended_refusal(person.live_session_id)
        if claims.is_host:
            if live_session is None:
                raise SignalingError("meeting_ended", "the meeting is not live; start it again")
            await self._require_host_session(claims)
        available = await self.account_available(record)
        meeting = await self.live_meeting(record, live_session)
        self.cancel_pending(person.id)
        participant = Participant(
            person.id, claims.name, peer, role=claims.role, grants=claims.grants, host_session_id=claims.host_session_id
        )
        try:
            decision = self._decide_on_connect(record, meeting, live_session, person, available, claims)
            if decision.outcome == admission.REFUSED:
                raise SignalingError(decision.reason, decision.message)
            wanted = decision.outcome
            if wanted != person.state or person.live_session_id != meeting.live_session_id:
                await self._store.update_participant(person.id, state=wanted, live_session_id=meeting.live_session_id)
            if wanted == admission.ADMITTED:
                await self.admit_connected(meeting, participant, message_id)
            else:
                await self._conference.wait(meeting, participant, decision.reason, message_id)
                if live_session is not None:
                    await self.notify_waiting_room(meeting)
        except BaseException:
            self.schedule_pending(record.id, person.id)  # their place is kept as if they never came
            raise
        return meeting, participant

    async def account_available(self, record: MeetingRecord) -> bool:
        """The meeting's customer and host are active and meetings are not disabled (asked
        again when a token is used: it may have been given out before the operator acted)."""
        customer = await self._store.get_customer(record.customer_id)
        host = await self._store.get_host(record.host_id)
        if customer is None or host is None or customer.status != "active" or host.status != "active":
            return False
        return not self._limits.account(customer).meetings_disabled

    def _decide_on_connect(
        self, record: MeetingRecord, meeting: LiveMeeting, live_session: LiveSession | None, person: ParticipantRecord,
        account_available: bool, claims: JoinClaims,
    ) -> admission.Admission:  # fmt: skip
        same_session = live_session is not None and person.live_session_id == live_session.id
        return admission.decide(
            admission.Situation(
                live=live_session is not None,
                locked=record.locked,
                waiting_room=record.waiting_room,
                account_available=account_available,
                hold_newcomers=meeting.hold_newcomers,
                removed=person.removed,
                is_host=person.role == "host",
                previous=person.state,
                same_session=same_session,
                admitted_before=person.id in meeting.admitted_ids,
                resumed=claims.resumed and same_session and claims.live_session_id == person.live_session_id,
            )
        )

    async def _require_host_session(self, claims: JoinClaims) -> None:
        if claims.host_session_id is None:
            return
        session = await self._store.get_host_session(claims.host_session_id)
        if session is None or not session.active:
            raise SignalingError("session_ended", "the sign-in that started this meeting has ended; sign in again")

    async def admit_connected(self, meeting: LiveMeeting, participant: Participant, message_id: Any = None) -> None:
        """Someone connected is let in: transports and `joined` (the conference), the webhook,
        and the waiting room for a moderator."""
        history = await self._chat.history(meeting.meeting_id)
        limits = meeting.limits
        participant.may_transcribe = limits is not None and limits.may_transcribe(participant.is_host)
        await self._conference.join(meeting, participant, history, message_id)
        meeting.admitted_ids.add(participant.participant_id)
        self._events.emit(
            meeting,
            "participant.joined",
            participant_id=participant.participant_id,
            name=participant.name,
            role=participant.role,
        )
        if participant.may("moderate"):
            await self.notify_waiting_room(meeting, only=participant)

    async def disconnected(self, meeting: LiveMeeting, participant: Participant, was_admitted: bool) -> None:
        """A socket is gone; record what it means (per `participant.exit_reason`)."""
        reason = participant.exit_reason
        if reason in (None, "session_ended"):
            try:
                person = await self._store.get_participant(participant.participant_id)
                if person is not None and person.state in ("waiting", "admitted"):
                    await self._store.update_participant(person.id, state="left")
            except NotFound:
                pass
            if was_admitted:
                self._events.emit(meeting, "participant.left", participant_id=participant.participant_id, reason="left")
            elif meeting.live_session_id is not None:
                await self.notify_waiting_room(meeting)
        elif reason == "reset":
            # Told to reconnect (media server restarted): their place is kept for a while.
            self.schedule_pending(meeting.meeting_id, participant.participant_id)
        if meeting.live_session_id is None and not meeting.connected():
            self._registry.discard(meeting)  # nobody waits for this host any more

    # ------------------------------------------------------------------ tokens not used

    def schedule_pending(self, meeting_id: str, participant_id: str) -> None:
        """Free the participant's place if nobody connects as them within a token lifetime."""
        self.cancel_pending(participant_id)
        delay = self._tokens.join_ttl_s + PENDING_GRACE_S
        timer = self._clock.call_later(
            delay, lambda: self._tasks.spawn(self._never_came(meeting_id, participant_id), f"pending-{participant_id}")
        )
        self._pending[participant_id] = (meeting_id, timer)

    def cancel_pending(self, participant_id: str) -> None:
        entry = self._pending.pop(participant_id, None)
        if entry is not None:
            entry[1].cancel()

    def forget_pending_of(self, meeting_id: str) -> None:
        """The meeting ended: nobody's place in it needs freeing any more."""
        for participant_id, (pending_meeting, _) in list(self._pending.items()):
            if pending_meeting == meeting_id:
                self.cancel_pending(participant_id)

    async def _never_came(self, meeting_id: str, participant_id: str) -> None:
        self._pending.pop(participant_id, None)
        meeting = self._registry.get(meeting_id)
        if meeting is not None and meeting.find_connected(participant_id) is not None:
            return
        person = await self._store.get_participant(participant_id)
        if person is not None and person.state in ("waiting", "admitted"):
            await self._store.update_participant(participant_id, state="left")
            if meeting is not None:
                await self.notify_waiting_room(meeting)

    # ------------------------------------------------------------------ the host's view

    async def waiting_list(self, meeting_id: str, live_session_id: str | None) -> list[ParticipantRecord]:
        rows = await self._store.list_participants(meeting_id, states=["waiting"])
        return [r for r in rows if r.live_session_id == live_session_id]

    async def notify_waiting_room(self, meeting: LiveMeeting, only: Participant | None = None) -> None:
        """Send the waiting-room list to the meeting's moderators (or one of them)."""
        targets = [only] if only is not None else meeting.moderators()
        if not targets or meeting.live_session_id is None:
            return
        rows = await self.waiting_list(meeting.meeting_id, meeting.live_session_id)
        message = {
            "type": "waiting_room",
            "participants": [
                {
                    "participant_id": r.id,
                    "name": r.name,
                    "joined_at": int(r.joined_at * 1000),
                    "connected": r.id in meeting.waiting,
                }
                for r in rows
            ],
        }
        for target in targets:
            target.send(message)
