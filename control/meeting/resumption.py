"""Meetings that outlive a restart of control (issue 13, item 7) and clients that come
back as themselves after it, or after the loss of the node that held their meeting
(item 6): nothing of a live meeting ends because the process serving it did.

- Every admitted participant holds a reconnect credential (control.accounts.tokens:
  signed, expiring, bound to them, the meeting and its live session): sent right after
  `joined` and again every third of `auth.reconnect_ttl_s` while they stay
  (`{"type": "reconnect_credential", "credential": ...}`).
- A client whose socket is lost trades it, through any node (`POST
  /api/v1/meetings/{number}/rejoin`, control.http.rejoin), for a join token marked
  resumed and the socket URL of the node holding the meeting; admission lets a resumed
  token of the current live session in without the waiting room, locked or not
  (control.meeting.admission, rule 4). `rejoin_refusal` is that rule's REST half, pure.
- A single node that starts again does not end what the store says is live
  (`resume_left_live`): each live session gets its live side back at once, with its
  duration timer counting from its start in the store, and everyone it had (admitted or
  waiting) keeps their place for one join-token lifetime, the time they have to come
  back (control.meeting.attendance's pending timers). A meeting adopted without a start
  here (another node held it) gets its duration timer when its router is made.
"""

from __future__ import annotations

import logging

from control.accounts.tokens import ReconnectClaims, TokenError, Tokens
from control.clock import Clock, Timer
from control.errors import ApiError
from control.meeting.attendance import Attendance
from control.meeting.lifecycle import Lifecycle
from control.meeting.listeners import ConferenceListener
from control.meeting.model import LiveMeeting, MeetingRegistry, Participant
from control.store.base import LiveSession, MeetingRecord, ParticipantRecord, Store
from control.tasks import BackgroundTasks

log = logging.getLogger(__name__)

CREDENTIAL_MESSAGE = "reconnect_credential"
REJOIN_OUTCOMES = ("admitted", "expired", "refused")
REFRESHES_PER_LIFETIME = 3  # a credential is renewed after a third of its lifetime

# Why a credential does not let someone back in: (HTTP status, code, message).
REFUSALS = {
    "meeting_ended": (409, "meeting_ended", "the meeting this credential was for has ended; join again"),
    "removed": (403, "removed", "the host removed you from this meeting"),
    "not_admitted": (403, "not_admitted", "you are no longer in this meeting; join again"),
    "invalid_credential": (403, "invalid_credential", "this reconnect credential is not valid"),
}


def rejoin_refusal(claims: ReconnectClaims, person: ParticipantRecord | None, live: LiveSession | None) -> str | None:
    """Why a valid credential's holder may not come back (a REFUSALS key), or None: they
    were admitted to the live session that still runs and have neither left nor been
    removed since. Pure: the store's rows in, a decision out."""
    if live is None or live.id != claims.live_session_id:
        return "meeting_ended"
    if person is None or person.meeting_id != claims.meeting_id or person.role != claims.role:
        return "invalid_credential"
    if person.removed or person.state in ("removed", "denied"):
        return "removed"
    if person.state != "admitted" or person.live_session_id != claims.live_session_id:
        return "not_admitted"
    return None


class Rejoined:
    """What `Resumption.rejoin` hands back: a join token marked resumed, for `person`."""

    __slots__ = ("token", "person")

    def __init__(self, token: str, person: ParticipantRecord) -> None:
        self.token = token
        self.person = person


class Resumption(ConferenceListener):
    def __init__(
        self,
        *,
        store: Store,
        registry: MeetingRegistry,
        attendance: Attendance,
        lifecycle: Lifecycle,
        tokens: Tokens,
        clock: Clock,
        tasks: BackgroundTasks,
        ttl_s: float,
    ) -> None:
        self._store = store
        self._registry = registry
        self._attendance = attendance
        self._lifecycle = lifecycle
        self._tokens = tokens
        self._clock = clock
        self._tasks = tasks
        self.ttl_s = ttl_s
        self._refresh_timer: Timer | None = None
        self.resumed_meetings = 0  # live sessions taken up again at start (control.metrics.resumption)
        self.rejoins = dict.fromkeys(REJOIN_OUTCOMES, 0)  # rejoin requests by outcome (the same)

    # ------------------------------------------------------------------ credentials

    def credential_for(self, meeting: LiveMeeting, participant: Participant) -> str:
        now = int(self._clock.time())
        claims = ReconnectClaims(
            participant_id=participant.participant_id,
            meeting_id=meeting.meeting_id,
            live_session_id=meeting.live_session_id or "",
            name=participant.name,
            role=participant.role,
            issued_at=now,
            expires_at=now + int(self.ttl_s),
            host_session_id=participant.host_session_id,
        )
        return self._tokens.make_reconnect_credential(claims)

    def _send_credential(self, meeting: LiveMeeting, participant: Participant) -> None:
        if meeting.live_session_id is None or participant.closed:
            return
        participant.send({"type": CREDENTIAL_MESSAGE, "credential": self.credential_for(meeting, participant)})

    def participant_joined(self, meeting: LiveMeeting, participant: Participant) -> bool:
        self._send_credential(meeting, participant)
        return False

    def start_refreshing(self) -> None:
        """Renew everyone's credential every third of its lifetime, until `stop_refreshing`."""
        self._refresh_timer = self._clock.call_later(self.ttl_s / REFRESHES_PER_LIFETIME, self._refresh)

    def stop_refreshing(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None

    def _refresh(self) -> None:
        for meeting in list(self._registry):
            for participant in list(meeting.participants.values()):
                self._send_credential(meeting, participant)
        self.start_refreshing()

    # ------------------------------------------------------------------ coming back

    async def rejoin(self, record: MeetingRecord, credential: object) -> Rejoined:
        """A join token marked resumed for the credential's holder. ApiError: 401
        (invalid or expired credential), 403/409 (REFUSALS)."""
        try:
            claims = self._tokens.verify_reconnect_credential(credential, record.id, self._clock.time())
        except TokenError as exc:
            self.rejoins["expired" if exc.code == "token_expired" else "refused"] += 1
            status, code = (403, "wrong_meeting") if exc.code == "wrong_meeting" else (401, exc.code)
            raise ApiError(status, code, exc.message) from None
        person = await self._store.get_participant(claims.participant_id)
        live = await self._store.get_live_session(record.id)
        refusal = rejoin_refusal(claims, person, live)
        if refusal is not None:
            self.rejoins["refused"] += 1
            raise ApiError(*REFUSALS[refusal])
        self.rejoins["admitted"] += 1
        assert person is not None
        token = self._tokens.make_join_token(
            participant_id=person.id, meeting_id=record.id, live_session_id=claims.live_session_id,
            name=person.name, role=person.role, host_session_id=claims.host_session_id, resumed=True,
            now=self._clock.time(),
        )  # fmt: skip
        # Their place is kept as if the token were new: freed if they never connect with it.
        self._attendance.schedule_pending(record.id, person.id)
        return Rejoined(token, person)

    # ------------------------------------------------------------------ after a restart

    async def resume_left_live(self) -> int:
        """One node starting again: every live session the store has is taken up again
        (see the module's doc). Returns how many."""
        count = 0
        for session in await self._store.list_live_sessions():
            record = await self._store.get_meeting(session.meeting_id)
            if record is None:
                continue
            try:
                await self._lifecycle.resume(record, session)
            except ApiError as exc:  # its customer is gone: nothing to take up
                log.warning("meeting %s not resumed: %s", record.id, exc.message)
                continue
            people = await self._store.list_participants(record.id, live_session_id=session.id,
                                                         states=["admitted", "waiting"])  # fmt: skip
            for person in people:
                self._attendance.schedule_pending(record.id, person.id)
            log.info("meeting %s resumed after a restart (%d participant(s) may come back)", record.id, len(people))
            count += 1
        self.resumed_meetings += count
        return count

    def router_created(self, meeting: LiveMeeting) -> None:
        """A meeting this node holds without having started it (another node did, or an
        earlier run of this one) has no duration timer yet: armed from its stored start."""
        if meeting.end_timer is None and meeting.live_session_id is not None and not meeting.ended:
            self._tasks.spawn(self._adopt(meeting.meeting_id), f"adopt-{meeting.meeting_id}")

    async def _adopt(self, meeting_id: str) -> None:
        record = await self._store.get_meeting(meeting_id)
        session = await self._store.get_live_session(meeting_id)
        if record is not None and session is not None:
            await self._lifecycle.resume(record, session)
