"""The rules of live meetings, where the store meets the sockets.

Who is let in and when (waiting room, "waiting for the host"), what the host's controls do
to the people connected (admit, deny, remove, mute, lock, end), chat kept in the store,
and the live effects the accounts side asks for:

- `end_meeting(state, meeting_id, reason)`: the meeting ends in the store; everyone
  connected to it (waiting room included) gets `{"type": "meeting_ended", "reason"}` and
  their socket closes (4002) at once; its router is closed on its worker.
- `end_meetings_of_host` / `end_meetings_of_customer`: the same for each of their meetings
  (suspension, deletion, meetings disabled).
- `end_host_sessions(state, host_id, reason)`: the host's meeting sockets opened under a
  sign-in that is no longer active in the store get `{"type": "session_ended", "reason"}`
  and close (4001). The caller ends the store sessions first (login replace does it
  atomically); meetings stay live: the host comes back with Start from the new sign-in.

The store is the truth about participants (waiting/admitted/denied/removed/left);
`state.meetings` (control.meeting.model) holds only the sockets and media of this process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from control import webhooks
from control.accounts import service as accounts
from control.recording import service as recording
from control.accounts import tokens
from control.errors import ApiError, SignalingError
from control.meeting.model import LiveMeeting, Participant, Peer
from control.http.rest import display_number
from control.store.base import (
    AlreadyLive,
    CustomerLimitReached,
    HostHasLiveMeeting,
    LiveSession,
    MeetingNotStartable,
    NotFound,
)
from control.store.base import MeetingRecord
from control.store.base import ParticipantRecord

log = logging.getLogger(__name__)

# WebSocket close codes (docs/signaling.md).
CLOSE_SESSION_ENDED = 4001  # also: the same participant connected again elsewhere
CLOSE_MEETING_ENDED = 4002
CLOSE_REMOVED = 4003
CLOSE_DENIED = 4004
MINUTE_S = 60.0  # the duration limit's minute (tests shorten it)
# A join token not used to connect within its lifetime (plus this) frees its place.
PENDING_GRACE_S = 5.0

_background: set[asyncio.Task[Any]] = set()


def _spawn(coro: Any, name: str) -> None:
    task = asyncio.ensure_future(coro)
    task.set_name(name)
    _background.add(task)
    task.add_done_callback(_finished)


def _finished(task: asyncio.Task[Any]) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())


def _number(meeting: MeetingRecord | LiveMeeting) -> str:
    number = meeting.meeting_number if isinstance(meeting, MeetingRecord) else meeting.number
    return display_number(number) if len(number) == 11 else number


def _event(state: Any, meeting: MeetingRecord | LiveMeeting, event: str, **data: Any) -> None:
    payload = {"meeting_id": meeting.meeting_id if isinstance(meeting, LiveMeeting) else meeting.id}
    payload["meeting_number"] = _number(meeting)
    payload.update(data)
    webhooks.emit(state, meeting.customer_id, event, payload)


async def find_meeting(state: Any, ref: str) -> MeetingRecord | None:
    """A meeting by its number (with or without dashes) or by its id."""
    if not isinstance(ref, str) or len(ref) > 64:
        return None
    digits = ref.replace("-", "")
    if len(digits) == 11 and digits.isdigit():
        return await state.store.get_meeting_by_number(digits)
    meeting = await state.store.get_meeting(ref)
    return meeting if meeting is not None and meeting.status != "removed" else None


async def limits_of(state: Any, customer_id: str) -> dict[str, Any]:
    customer = await state.store.get_customer(customer_id)
    if customer is None:
        raise ApiError(404, "not_found", "no such customer")
    return accounts.customer_limits(state, customer)


def live_meeting(state: Any, row: MeetingRecord, live_session: LiveSession | None) -> LiveMeeting:
    """The live side of `row`, made on first use."""
    meeting = state.meetings.get_or_create(
        row.id, title=row.title, number=row.meeting_number, host_id=row.host_id, customer_id=row.customer_id
    )
    if live_session is not None:
        meeting.live_session_id = live_session.id
    meeting.title = row.title
    return meeting


# ---------------------------------------------------------------------- connecting


async def connect(
    state: Any,
    row: MeetingRecord,
    claims: tokens.JoinClaims,
    person: ParticipantRecord,
    peer: Peer,
    message_id: Any = None,
) -> tuple[LiveMeeting, Participant]:
    """A socket presented a valid join token: into the meeting, or its waiting room."""
    store = state.store
    live_session = await store.get_live_session(row.id)
    if person.live_session_id is not None and (live_session is None or live_session.id != person.live_session_id):
        raise SignalingError("meeting_ended", "the meeting this token was for has ended; join again")
    if claims.is_host:
        if live_session is None:
            raise SignalingError("meeting_ended", "the meeting is not live; start it again")
        await _require_host_session(state, claims)
    meeting = live_meeting(state, row, live_session)
    if meeting.max_participants is None:
        try:
            limits = await limits_of(state, row.customer_id)
        except ApiError:
            raise SignalingError("meeting_ended", "this meeting is no longer available") from None
        meeting.max_participants = int(limits["max_participants_per_meeting"])
    _cancel_pending(state, person.id)
    participant = Participant(
        person.id, claims.name, peer, role=claims.role, grants=claims.grants, host_session_id=claims.host_session_id
    )
    try:
        wanted = await _state_on_connect(state, row, meeting, live_session, person)
        if wanted != person.state or person.live_session_id != meeting.live_session_id:
            person = await store.update_participant(person.id, state=wanted, live_session_id=meeting.live_session_id)
        if wanted == "admitted":
            await _admit_connected(state, meeting, participant, message_id)
        else:
            reason = "waiting_room" if live_session is not None else "waiting_for_host"
            await state.conference.wait(meeting, participant, reason, message_id)
            if live_session is not None:
                await notify_waiting_room(state, meeting)
    except BaseException:
        schedule_pending(state, row.id, person.id)  # their place is kept as if they never came
        raise
    return meeting, participant


async def _require_host_session(state: Any, claims: tokens.JoinClaims) -> None:
    if claims.host_session_id is None:
        return
    session = await state.store.get_host_session(claims.host_session_id)
    if session is None or not session.active:
        raise SignalingError("session_ended", "the sign-in that started this meeting has ended; sign in again")


async def _state_on_connect(
    state: Any, row: MeetingRecord, meeting: LiveMeeting, live_session: LiveSession | None, person: ParticipantRecord
) -> str:
    """waiting or admitted, for someone connecting with a valid, unrevoked token."""
    if live_session is None:
        return "waiting"  # for the host
    if person.state == "admitted" or person.role == "host" or person.id in meeting.admitted_ids:
        return "admitted"
    if person.state == "waiting" and person.live_session_id == live_session.id:
        return "waiting"
    # Back after leaving, or waiting since just before the start.
    if person.state == "left" and row.locked:
        raise SignalingError("meeting_locked", "the host locked the meeting")
    return "waiting" if row.waiting_room else "admitted"


async def _admit_connected(state: Any, meeting: LiveMeeting, participant: Participant, message_id: Any = None) -> None:
    chat = await chat_history(state, meeting.meeting_id)
    participant.may_transcribe = await _may_transcribe(state, meeting, participant)
    await state.conference.join(meeting, participant, chat, message_id)
    meeting.admitted_ids.add(participant.participant_id)
    _event(
        state,
        meeting,
        "participant.joined",
        participant_id=participant.participant_id,
        name=participant.name,
        role=participant.role,
    )
    if participant.may("moderate"):
        await notify_waiting_room(state, meeting, only=participant)


async def _may_transcribe(state: Any, meeting: LiveMeeting, participant: Participant) -> bool:
    try:
        limits = await limits_of(state, meeting.customer_id)
    except ApiError:
        return False
    if not limits.get("transcription_allowed", True):
        return False
    return participant.is_host or bool(limits.get("participants_may_transcribe"))


async def disconnected(state: Any, meeting: LiveMeeting, participant: Participant, was_admitted: bool) -> None:
    """A socket is gone; record what it means (per `participant.exit_reason`)."""
    reason = participant.exit_reason
    if reason in (None, "session_ended"):
        try:
            person = await state.store.get_participant(participant.participant_id)
            if person is not None and person.state in ("waiting", "admitted"):
                await state.store.update_participant(person.id, state="left")
        except NotFound:
            pass
        if was_admitted:
            _event(state, meeting, "participant.left", participant_id=participant.participant_id, reason="left")
        elif meeting.live_session_id is not None:
            await notify_waiting_room(state, meeting)
    elif reason == "reset":
        # Told to reconnect (media server restarted): their place is kept for a while.
        schedule_pending(state, meeting.meeting_id, participant.participant_id)
    if meeting.live_session_id is None and not meeting.connected():
        state.meetings.discard(meeting)  # nobody waits for this host any more


def reconnect_token(state: Any, meeting: LiveMeeting, participant: Participant) -> str | None:
    """A fresh join token for someone told to reconnect (same participant, same grants)."""
    try:
        return tokens.make_join_token(
            state,
            participant_id=participant.participant_id,
            meeting_id=meeting.meeting_id,
            live_session_id=meeting.live_session_id,
            name=participant.name,
            role=participant.role,
            ttl_s=state.cfg.auth.join_token_ttl_s,
            host_session_id=participant.host_session_id,
        )
    except Exception:
        log.exception("cannot make a reconnect token")
        return None


# ---------------------------------------------------------------------- tokens not used


def schedule_pending(state: Any, meeting_id: str, participant_id: str) -> None:
    """Free the participant's place if nobody connects as them within a token lifetime."""
    _cancel_pending(state, participant_id)
    delay = state.cfg.auth.join_token_ttl_s + PENDING_GRACE_S
    handle = asyncio.get_running_loop().call_later(
        delay, lambda: _spawn(_never_came(state, meeting_id, participant_id), f"pending-{participant_id}")
    )
    state.meetings.pending[participant_id] = (meeting_id, handle)


def _cancel_pending(state: Any, participant_id: str) -> None:
    entry = state.meetings.pending.pop(participant_id, None)
    if entry is not None:
        entry[1].cancel()


async def _never_came(state: Any, meeting_id: str, participant_id: str) -> None:
    state.meetings.pending.pop(participant_id, None)
    meeting = state.meetings.get(meeting_id)
    if meeting is not None and meeting.find_connected(participant_id) is not None:
        return
    person = await state.store.get_participant(participant_id)
    if person is not None and person.state in ("waiting", "admitted"):
        await state.store.update_participant(participant_id, state="left")
        if meeting is not None:
            await notify_waiting_room(state, meeting)


# ---------------------------------------------------------------------- chat


async def chat_history(state: Any, meeting_id: str) -> list[dict[str, Any]]:
    limit = state.meetings.chat_history
    if limit <= 0:
        return []
    return [_chat_json(m) for m in await state.store.list_chat(meeting_id, limit=limit)]


def _chat_json(message: Any) -> dict[str, Any]:
    return {
        "seq": message.seq,
        "participant_id": message.participant_id,
        "name": message.name,
        "text": message.text,
        "ts": message.ts,
    }


async def chat(state: Any, meeting: LiveMeeting, participant: Participant, text: str) -> None:
    """Store the message (the store numbers it) and send it to everyone admitted, in seq
    order: appends and broadcasts of one meeting are serialized."""
    if not participant.may("chat"):
        raise SignalingError("forbidden", "you may not chat in this meeting")
    async with meeting.chat_lock:
        stored = await state.store.append_chat(
            meeting.meeting_id, participant.participant_id, participant.name, text, int(time.time() * 1000)
        )
        state.conference.chat(meeting, _chat_json(stored))


# ---------------------------------------------------------------------- the host's view


async def waiting_list(state: Any, meeting_id: str, live_session_id: str | None) -> list[ParticipantRecord]:
    rows = await state.store.list_participants(meeting_id, states=["waiting"])
    return [r for r in rows if r.live_session_id == live_session_id]


async def notify_waiting_room(state: Any, meeting: LiveMeeting, only: Participant | None = None) -> None:
    """Send the waiting-room list to the meeting's moderators (or one of them)."""
    targets = [only] if only is not None else meeting.moderators()
    if not targets or meeting.live_session_id is None:
        return
    rows = await waiting_list(state, meeting.meeting_id, meeting.live_session_id)
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


# ---------------------------------------------------------------------- start


async def start_meeting(
    state: Any, row: MeetingRecord, host_id: str, host_name: str, host_session_id: str | None
) -> tuple[LiveSession, ParticipantRecord, str, bool]:
    """Start `row` for its host (or hand the host back into it when it is live already):
    (live session, host participant, host join token, whether it started now)."""
    store = state.store
    limits = await limits_of(state, row.customer_id)
    if limits["meetings_disabled"]:
        raise ApiError(403, "meetings_disabled", "meetings are disabled for this account")
    started = True
    try:
        session = await store.start_live_session(
            row.id, host_id, int(limits["max_live_meetings_per_host"]), int(limits["max_concurrent_meetings"])
        )
    except AlreadyLive as exc:
        if exc.live_session.host_id != host_id:
            raise ApiError(409, "already_live", "the meeting is live already") from None
        session, started = exc.live_session, False
    except HostHasLiveMeeting as exc:
        number = display_number(exc.meeting_number)
        raise ApiError(
            409, "host_has_live_meeting", f"you already have a live meeting: {number} ({exc.title}); end it first"
        ) from None
    except CustomerLimitReached as exc:
        raise ApiError(
            409, "customer_limit_reached", f"your account has {exc.limit} live meeting(s) already, its limit"
        ) from None
    except (MeetingNotStartable, NotFound):
        raise ApiError(404, "not_found", "no such meeting") from None
    host = await store.add_participant(
        row.id, name=host_name, role="host", state="admitted", live_session_id=session.id
    )
    token = tokens.make_join_token(
        state,
        participant_id=host.id,
        meeting_id=row.id,
        live_session_id=session.id,
        name=host_name,
        role="host",
        ttl_s=state.cfg.auth.join_token_ttl_s,
        host_session_id=host_session_id,
    )
    meeting = live_meeting(state, row, session)
    meeting.max_participants = int(limits["max_participants_per_meeting"])
    if started:
        await _went_live(state, row, meeting, session, limits)
    schedule_pending(state, row.id, host.id)
    return session, host, token, started


async def _went_live(
    state: Any, row: MeetingRecord, meeting: LiveMeeting, session: LiveSession, limits: dict[str, Any]
) -> None:
    """Everyone who was waiting for the host: into the waiting room, or in."""
    meeting.admitted_ids.clear()
    minutes = float(limits["max_meeting_minutes"])
    meeting.end_timer = asyncio.get_running_loop().call_later(
        minutes * MINUTE_S,
        lambda: _spawn(_duration_reached(state, row.id, session.id), f"duration-{row.id}"),
    )
    _event(state, row, "meeting.started", live_session_id=session.id, host_id=row.host_id, title=row.title)
    if limits.get("auto_record") and limits.get("recording_allowed"):
        _spawn(recording.auto_record(state, row), f"auto-record-{row.id}")
    new_state = "waiting" if row.waiting_room else "admitted"
    for person in await state.store.list_participants(row.id, states=["waiting"]):
        if person.live_session_id is None:
            await state.store.update_participant(person.id, live_session_id=session.id, state=new_state)
    for participant in list(meeting.waiting.values()):
        if new_state == "admitted":
            try:
                await _admit_waiting(state, meeting, participant)
            except ApiError:
                pass  # logged; they stay in the waiting room
        else:
            participant.send({"type": "waiting", "reason": "waiting_room", "participant_id": participant.participant_id})


async def _duration_reached(state: Any, meeting_id: str, live_session_id: str) -> None:
    current = await state.store.get_live_session(meeting_id)
    if current is None or current.id != live_session_id:
        return
    await end_meeting(state, meeting_id, "duration_limit")
    await state.store.append_audit(
        actor_kind="system",
        actor_id="limits",
        action="meeting.end",
        target_kind="meeting",
        target_id=meeting_id,
        detail={"reason": "duration_limit", "live_session_id": live_session_id},
    )


# ---------------------------------------------------------------------- moderation


async def _live_participant(state: Any, row: MeetingRecord, participant_id: str) -> tuple[LiveMeeting, ParticipantRecord]:
    """The live meeting of `row` and one of its participants in the current live session."""
    session = await state.store.get_live_session(row.id)
    if session is None:
        raise ApiError(409, "not_live", "the meeting is not live")
    person = await state.store.get_participant(participant_id)
    if person is None or person.meeting_id != row.id or person.live_session_id != session.id:
        raise ApiError(404, "not_found", "no such participant in this meeting")
    return live_meeting(state, row, session), person


async def _admit_waiting(state: Any, meeting: LiveMeeting, participant: Participant) -> None:
    try:
        await _admit_connected(state, meeting, participant)
    except SignalingError as exc:  # e.g. full: they stay in the waiting room
        log.info("meeting %s: admitting %s failed: %s", meeting.meeting_id, participant.participant_id, exc)
        await state.store.update_participant(participant.participant_id, state="waiting")
        meeting.waiting[participant.participant_id] = participant
        raise ApiError(409, exc.code, exc.message) from None


async def admit(state: Any, row: MeetingRecord, participant_id: str) -> ParticipantRecord:
    meeting, person = await _live_participant(state, row, participant_id)
    if person.state != "waiting":
        raise ApiError(409, "not_waiting", f"the participant is not waiting (they are {person.state})")
    person = await state.store.update_participant(person.id, state="admitted")
    meeting.admitted_ids.add(person.id)
    waiting = meeting.waiting.get(person.id)
    if waiting is not None:
        await _admit_waiting(state, meeting, waiting)
    _event(state, meeting, "participant.admitted", participant_id=person.id, name=person.name)
    await notify_waiting_room(state, meeting)
    return person


async def admit_all(state: Any, row: MeetingRecord) -> list[ParticipantRecord]:
    session = await state.store.get_live_session(row.id)
    if session is None:
        raise ApiError(409, "not_live", "the meeting is not live")
    admitted = []
    for person in await waiting_list(state, row.id, session.id):
        try:
            admitted.append(await admit(state, row, person.id))
        except ApiError as exc:
            log.info("admit-all: %s not admitted: %s", person.id, exc)
    return admitted


async def deny(state: Any, row: MeetingRecord, participant_id: str) -> ParticipantRecord:
    meeting, person = await _live_participant(state, row, participant_id)
    if person.state != "waiting":
        raise ApiError(409, "not_waiting", f"the participant is not waiting (they are {person.state})")
    person = await state.store.update_participant(person.id, state="denied")
    _cancel_pending(state, person.id)
    waiting = meeting.waiting.get(person.id)
    if waiting is not None:
        waiting.exit_reason = "denied"
        await state.conference.dismiss(meeting, waiting, {"type": "denied"}, CLOSE_DENIED)
    await notify_waiting_room(state, meeting)
    return person


async def remove(state: Any, row: MeetingRecord, participant_id: str) -> ParticipantRecord:
    """Out for good: their token is revoked (the store marks them removed), the device they
    joined from is refused, a connected socket gets `removed` and closes."""
    meeting, person = await _live_participant(state, row, participant_id)
    if person.role == "host":
        raise ApiError(409, "cannot_remove_host", "the host cannot be removed; end the meeting instead")
    was_waiting = person.state == "waiting"
    person = await state.store.update_participant(person.id, state="removed")
    _cancel_pending(state, person.id)
    _, device = state.meetings.devices.get(person.id, (None, None))
    if device:
        state.meetings.removed_devices.setdefault(row.id, set()).add(device)
    connected = meeting.find_connected(person.id)
    if connected is not None:
        connected.exit_reason = "removed"
        await state.conference.dismiss(meeting, connected, {"type": "removed"}, CLOSE_REMOVED)
        if connected.admitted:
            _event(state, meeting, "participant.left", participant_id=person.id, reason="removed")
    _event(state, meeting, "participant.removed", participant_id=person.id, name=person.name)
    if was_waiting:
        await notify_waiting_room(state, meeting)
    return person


async def mute(state: Any, row: MeetingRecord, participant_id: str, source: str, muted: bool) -> ParticipantRecord:
    meeting, person = await _live_participant(state, row, participant_id)
    connected = meeting.participants.get(person.id)
    if connected is None:
        raise ApiError(409, "not_connected", "the participant is not in the meeting now")
    try:
        await state.conference.host_mute(meeting, connected, source, muted)
    except SignalingError as exc:
        raise ApiError(502, exc.code, exc.message) from None
    return person


async def set_locked(state: Any, row: MeetingRecord, locked: bool) -> MeetingRecord:
    session = await state.store.get_live_session(row.id)
    if session is None:
        raise ApiError(409, "not_live", "only a live meeting can be locked")
    row = await state.store.update_meeting(row.id, locked=locked)
    meeting = live_meeting(state, row, session)
    meeting.broadcast({"type": "meeting_updated", "locked": locked})
    return row


# ---------------------------------------------------------------------- ending (accounts calls these)


async def end_meeting(state: Any, meeting_id: str, reason: str) -> bool:
    """End the meeting for everyone (see the module's doc). True if it was live or
    someone was connected to it."""
    session = await state.store.end_live_session(meeting_id, reason)
    meeting = state.meetings.get(meeting_id)
    for participant_id, (pending_meeting, handle) in list(state.meetings.pending.items()):
        if pending_meeting == meeting_id:
            handle.cancel()
            del state.meetings.pending[participant_id]
    for participant_id, (device_meeting, _) in list(state.meetings.devices.items()):
        if device_meeting == meeting_id:  # a removal can only come while it is live
            del state.meetings.devices[participant_id]
    admitted: list[Participant] = []
    if meeting is not None:
        state.meetings.discard(meeting)
        if meeting.end_timer is not None:
            meeting.end_timer.cancel()
        admitted = list(meeting.participants.values())
        await state.conference.end(meeting, {"type": "meeting_ended", "reason": reason}, CLOSE_MEETING_ENDED)
        await recording.meeting_ended(state, meeting, reason)  # after everyone is out: at once
    if session is not None:
        row = await state.store.get_meeting(meeting_id)
        if row is not None:
            for participant in admitted:
                _event(state, row, "participant.left", participant_id=participant.participant_id, reason=reason)
            _event(state, row, "meeting.ended", live_session_id=session.id, reason=reason)
        log.info("meeting %s ended (%s)", meeting_id, reason)
    return session is not None or meeting is not None


async def end_meetings_of_host(state: Any, host_id: str, reason: str) -> int:
    ids = {s.meeting_id for s in await state.store.list_live_sessions(host_id=host_id)}
    ids |= {m.meeting_id for m in state.meetings if m.host_id == host_id}
    return sum([await end_meeting(state, meeting_id, reason) for meeting_id in sorted(ids)])


async def end_meetings_of_customer(state: Any, customer_id: str, reason: str) -> int:
    ids = {s.meeting_id for s in await state.store.list_live_sessions(customer_id=customer_id)}
    ids |= {m.meeting_id for m in state.meetings if m.customer_id == customer_id}
    return sum([await end_meeting(state, meeting_id, reason) for meeting_id in sorted(ids)])


async def end_host_sessions(state: Any, host_id: str, reason: str) -> int:
    """Close the host's meeting sockets whose sign-in has ended (see the module's doc)."""
    closed = 0
    for meeting in state.meetings:
        if meeting.host_id != host_id:
            continue
        for participant in [p for p in meeting.connected() if p.is_host]:
            session_id = participant.host_session_id
            session = await state.store.get_host_session(session_id) if session_id else None
            if session is not None and session.active:
                continue
            participant.exit_reason = "session_ended"
            message = {"type": "session_ended", "reason": reason}
            await state.conference.dismiss(meeting, participant, message, CLOSE_SESSION_ENDED)
            closed += 1
    return closed
