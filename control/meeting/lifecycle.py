"""A meeting's life: the host starts it, it ends (host, operator, admin, duration limit,
suspension, deletion), and the host's sockets go with the sign-in that opened them.

- `start(record, host, host_session_id)`: the live session (the store refuses a host's
  second live meeting and the customer's limits atomically), the host's participant and
  join token; whoever waited for the host goes into the waiting room or in.
- `end(meeting_id, reason)`: the meeting ends in the store; everyone connected to it
  (waiting room included) gets `{"type": "meeting_ended", "reason"}` and their socket
  closes (4002) at once; its router is closed on its worker.
- `end_meetings_of(reason, host_id= | customer_id=)`: the same for each of their meetings.
- `end_host_sessions(host_id, reason)`: the host's meeting sockets opened under a sign-in
  that is no longer active in the store get `{"type": "session_ended", "reason"}` and
  close (4001). The caller ends the store sessions first; meetings stay live: the host
  comes back with Start from the new sign-in.

Whoever follows meetings (recording) subscribes a `LifecycleListener`: it hears
`meeting_started` once the meeting is live and `meeting_ended` once everyone is out.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from control.accounts.tokens import Tokens
from control.clock import Clock
from control.cluster.bus import ClusterBus
from control.errors import ApiError
from control.meeting import closecodes, numbers
from control.meeting.attendance import Attendance
from control.meeting.conference import Conference
from control.meeting.events import MeetingEvents
from control.meeting.limits import LimitsPolicy, MeetingLimits
from control.meeting.model import LiveMeeting, MeetingRegistry, Participant
from control.meeting.moderation import Moderation
from control.store.base import (
    AlreadyLive,
    Customer,
    CustomerLimitReached,
    HostHasLiveMeeting,
    LiveSession,
    MeetingNotStartable,
    MeetingRecord,
    NotFound,
    ParticipantRecord,
    Store,
)
from control.tasks import BackgroundTasks

log = logging.getLogger(__name__)

# Cluster events (control.cluster.bus) the lifecycle sends and carries out.
MEETING_STARTED = "meeting_started"  # data: the node that holds it does the live part
MEETING_ENDED = "meeting_ended"
HOST_SESSIONS_ENDED = "host_sessions_ended"

MINUTE_S = 60.0  # the duration limit's minute


class LifecycleListener(Protocol):
    def meeting_started(self, record: MeetingRecord, meeting: LiveMeeting) -> None:
        """Live now (called once per live session, synchronously: schedule your own work)."""

    async def meeting_ended(self, meeting: LiveMeeting, reason: str) -> None:
        """Ended; everyone is out of it already."""

    async def limits_changed(self, meeting: LiveMeeting) -> None:
        """The meeting runs under new limits (`meeting.limits`) from now on."""


class Started:
    """What `Lifecycle.start` hands the host."""

    __slots__ = ("live_session", "host", "token", "started_now")

    def __init__(self, live_session: LiveSession, host: ParticipantRecord, token: str, started_now: bool) -> None:
        self.live_session = live_session
        self.host = host  # the host's participant
        self.token = token  # the host's join token
        self.started_now = started_now  # False: it was live already (the host comes back)


class Lifecycle:
    def __init__(
        self,
        *,
        store: Store,
        registry: MeetingRegistry,
        conference: Conference,
        attendance: Attendance,
        moderation: Moderation,
        tokens: Tokens,
        limits: LimitsPolicy,
        events: MeetingEvents,
        clock: Clock,
        tasks: BackgroundTasks,
        minute_s: float = MINUTE_S,
    ) -> None:
        self._store = store
        self._registry = registry
        self._conference = conference
        self._attendance = attendance
        self._moderation = moderation
        self._tokens = tokens
        self._limits = limits
        self._events = events
        self._clock = clock
        self._tasks = tasks
        self.minute_s = minute_s
        self._listeners: list[LifecycleListener] = []
        self._bus: ClusterBus | None = None

    def join_cluster(self, bus: ClusterBus) -> None:
        """Several nodes: what ends here is told to the others (a meeting may run, a host
        be connected, on another node), and what ends there is carried out here."""
        self._bus = bus
        bus.on_event(self._cluster_event)

    def add_listener(self, listener: LifecycleListener) -> None:
        self._listeners.append(listener)

    # ------------------------------------------------------------------ start

    async def start(self, record: MeetingRecord, host_id: str, host_name: str, host_session_id: str | None,
                    *, holder: str | None = None) -> Started:  # fmt: skip
        """Start `record` for its host (or hand the host back into it when it is live already).
        `holder`: the other node that holds the meeting (control.cluster): the store's part
        is done here, the live part there (told MEETING_STARTED); None: this node."""
        limits = await self._meeting_limits(record.customer_id)
        if limits.account.meetings_disabled:
            raise ApiError(403, "meetings_disabled", "meetings are disabled for this account")
        session, started_now = await self._live_session(record, host_id, limits)
        host = await self._store.add_participant(
            record.id, name=host_name, role="host", state="admitted", live_session_id=session.id
        )
        token = self._tokens.make_join_token(
            participant_id=host.id,
            meeting_id=record.id,
            live_session_id=session.id,
            name=host_name,
            role="host",
            host_session_id=host_session_id,
        )
        if holder is None:
            await self._live_here(record, session, limits, started_now)
        elif started_now:
            await self._tell_cluster(MEETING_STARTED, meeting_id=record.id, live_session_id=session.id, node=holder)
        self._attendance.schedule_pending(record.id, host.id)
        return Started(session, host, token, started_now)

    async def _live_here(self, record: MeetingRecord, session: LiveSession, limits: MeetingLimits,
                         started_now: bool) -> None:  # fmt: skip
        meeting = self._registry.live(record, session)
        meeting.limits = limits
        if started_now:
            await self._went_live(record, meeting, session)

    async def _started_elsewhere(self, meeting_id: str, live_session_id: str) -> None:
        """A node that does not hold the meeting started it: the live part is this node's."""
        record = await self._store.get_meeting(meeting_id)
        session = await self._store.get_live_session(meeting_id)
        if record is None or session is None or session.id != live_session_id:
            return  # ended (or started again) meanwhile
        await self._live_here(record, session, await self._meeting_limits(record.customer_id), True)

    async def _meeting_limits(self, customer_id: str) -> MeetingLimits:
        customer = await self._store.get_customer(customer_id)
        if customer is None:
            raise ApiError(404, "not_found", "no such customer")
        return self._limits.for_meeting(customer)

    async def _live_session(self, record: MeetingRecord, host_id: str, limits: MeetingLimits) -> tuple[LiveSession, bool]:
        """(the live session, whether it started now); the store enforces the host's and
        the customer's limits atomically."""
        account = limits.account
        try:
            session = await self._store.start_live_session(
                record.id, host_id, account.max_live_meetings_per_host, account.max_concurrent_meetings
            )
            return session, True
        except AlreadyLive as exc:
            if exc.live_session.host_id != host_id:
                raise ApiError(409, "already_live", "the meeting is live already") from None
            return exc.live_session, False
        except HostHasLiveMeeting as exc:
            number = numbers.display(exc.meeting_number)
            raise ApiError(
                409, "host_has_live_meeting", f"you already have a live meeting: {number} ({exc.title}); end it first"
            ) from None
        except CustomerLimitReached as exc:
            raise ApiError(
                409, "customer_limit_reached", f"your account has {exc.limit} live meeting(s) already, its limit"
            ) from None
        except (MeetingNotStartable, NotFound):
            raise ApiError(404, "not_found", "no such meeting") from None

    async def _went_live(self, record: MeetingRecord, meeting: LiveMeeting, session: LiveSession) -> None:
        """Everyone who was waiting for the host: into the waiting room, or in."""
        meeting.admitted_ids.clear()
        self._arm_duration(meeting, session, self._clock.time())
        self._events.emit(record, "meeting.started", live_session_id=session.id, host_id=record.host_id,
                          title=record.title)  # fmt: skip
        for listener in self._listeners:
            listener.meeting_started(record, meeting)
        new_state = "waiting" if record.waiting_room else "admitted"
        for person in await self._store.list_participants(record.id, states=["waiting"]):
            if person.live_session_id is None:
                await self._store.update_participant(person.id, live_session_id=session.id, state=new_state)
        meeting.hold_newcomers = False  # a removal holds newcomers for its live session only
        for participant in list(meeting.waiting.values()):
            if new_state == "admitted":
                try:
                    await self._moderation.admit_waiting(meeting, participant)
                except ApiError:
                    pass  # logged; they stay in the waiting room
            else:
                participant.send(
                    {"type": "waiting", "reason": "waiting_room", "participant_id": participant.participant_id}
                )

    def _arm_duration(self, meeting: LiveMeeting, session: LiveSession, started_at: float) -> None:
        """The customer's duration limit, counted from `started_at`: the meeting ends then."""
        assert meeting.limits is not None
        meeting_id, session_id = meeting.meeting_id, session.id
        meeting.ends_at = started_at + float(meeting.limits.account.max_meeting_minutes) * self.minute_s
        meeting.end_timer = self._clock.call_later(
            max(0.0, meeting.ends_at - self._clock.time()),
            lambda: self._tasks.spawn(self._duration_reached(meeting_id, session_id), f"duration-{meeting_id}"),
        )

    async def resume(self, record: MeetingRecord, session: LiveSession) -> LiveMeeting:
        """The live side of a session this node holds without having started it (control
        restarted, or another node held it: control.meeting.resumption), under the
        customer's limits; its duration limit counts from the session's start in the store,
        not from now (a restart does not give a meeting more time)."""
        limits = await self._meeting_limits(record.customer_id)
        meeting = self._registry.live(record, session)
        if meeting.limits is None:
            meeting.limits = limits
        if meeting.end_timer is None:
            self._arm_duration(meeting, session, session.started_at)
        return meeting

    async def _duration_reached(self, meeting_id: str, live_session_id: str) -> None:
        current = await self._store.get_live_session(meeting_id)
        if current is None or current.id != live_session_id:
            return
        await self.end(meeting_id, "duration_limit")
        await self._store.append_audit(
            actor_kind="system",
            actor_id="limits",
            action="meeting.end",
            target_kind="meeting",
            target_id=meeting_id,
            detail={"reason": "duration_limit", "live_session_id": live_session_id},
        )

    async def limits_changed(self, customer: Customer) -> None:
        """An operator changed the customer's limits: its live meetings run under the new
        ones at once. Meetings disabled: they end (`meetings_disabled`; tokens already given
        out are refused when they connect: control.meeting.attendance). The listeners hear
        the rest (recording stops what is no longer allowed)."""
        limits = self._limits.for_meeting(customer)
        if limits.account.meetings_disabled:
            await self.end_meetings_of("meetings_disabled", customer_id=customer.id)
            return
        for meeting in self._registry.of_customer(customer.id):
            meeting.limits = limits
            for listener in self._listeners:
                await listener.limits_changed(meeting)

    # ------------------------------------------------------------------ ending

    async def end(self, meeting_id: str, reason: str, *, tell_cluster: bool = True) -> bool:
        """End the meeting for everyone (see the module's doc). True if it was live or
        someone was connected to it (here; other nodes are told, `tell_cluster`)."""
        session = await self._store.end_live_session(meeting_id, reason)
        if tell_cluster:  # after the store: the node that ends it there finds it ended
            await self._tell_cluster(MEETING_ENDED, meeting_id=meeting_id, reason=reason)
        meeting = self._registry.get(meeting_id)
        self._attendance.forget_pending_of(meeting_id)
        self._moderation.forget_devices_of(meeting_id)
        admitted: list[Participant] = []
        if meeting is not None:
            self._registry.discard(meeting)
            if meeting.end_timer is not None:
                meeting.end_timer.cancel()
            admitted = list(meeting.participants.values())
            await self._conference.end(meeting, {"type": "meeting_ended", "reason": reason}, closecodes.MEETING_ENDED)
            for listener in self._listeners:  # after everyone is out: at once
                await listener.meeting_ended(meeting, reason)
        record = await self._store.get_meeting(meeting_id) if session is not None or admitted else None
        if record is not None:  # (each node tells of the participants it had; the one that ended it, the end)
            for participant in admitted:
                self._events.emit(record, "participant.left", participant_id=participant.participant_id,
                                  reason=reason)  # fmt: skip
            if session is not None:
                self._events.emit(record, "meeting.ended", live_session_id=session.id, reason=reason)
        if session is not None:
            log.info("meeting %s ended (%s)", meeting_id, reason)
        return session is not None or meeting is not None

    async def end_meetings_of(self, reason: str, *, host_id: str | None = None, customer_id: str | None = None) -> int:
        """End every meeting of a host or of a customer (suspension, deletion); how many."""
        sessions = await self._store.list_live_sessions(host_id=host_id, customer_id=customer_id)
        ids = {s.meeting_id for s in sessions}
        live = self._registry.of_host(host_id) if host_id is not None else self._registry.of_customer(customer_id or "")
        ids |= {m.meeting_id for m in live}
        return sum([await self.end(meeting_id, reason) for meeting_id in sorted(ids)])

    async def end_host_sessions(self, host_id: str, reason: str, *, tell_cluster: bool = True) -> int:
        """Close the host's meeting sockets whose sign-in has ended (see the module's doc)."""
        if tell_cluster:
            await self._tell_cluster(HOST_SESSIONS_ENDED, host_id=host_id, reason=reason)
        closed = 0
        for meeting in self._registry.of_host(host_id):
            for participant in [p for p in meeting.connected() if p.is_host]:
                session_id = participant.host_session_id
                session = await self._store.get_host_session(session_id) if session_id else None
                if session is not None and session.active:
                    continue
                participant.exit_reason = "session_ended"
                message = {"type": "session_ended", "reason": reason}
                await self._conference.dismiss(meeting, participant, message, closecodes.SESSION_ENDED)
                closed += 1
        return closed

    # ------------------------------------------------------------------ other nodes

    async def _tell_cluster(self, kind: str, **data: str) -> None:
        if self._bus is not None:
            await self._bus.publish(kind, **data)

    async def _cluster_event(self, kind: str, data: dict[str, Any]) -> None:
        """Another node ended a meeting or a host's sign-in: the same here, told to nobody."""
        if kind == MEETING_STARTED and isinstance(data.get("meeting_id"), str):
            if self._bus is not None and data.get("node") == self._bus.node_id:
                await self._started_elsewhere(data["meeting_id"], str(data.get("live_session_id")))
        elif kind == MEETING_ENDED and isinstance(data.get("meeting_id"), str):
            await self.end(data["meeting_id"], str(data.get("reason", "ended")), tell_cluster=False)
        elif kind == HOST_SESSIONS_ENDED and isinstance(data.get("host_id"), str):
            await self.end_host_sessions(data["host_id"], str(data.get("reason", "ended")), tell_cluster=False)
