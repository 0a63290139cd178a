"""REST of live meetings (docs/control-plane-reference.md): start, end, lock, join, the host's
controls over participants (`SessionRoutes`).

Host controls accept only the meeting's own host: the host's session token (`hs_...`) or
the host's join token (role host, grant `moderate`) of the current live session, from a
sign-in that is still active. Anything else is 401/403 (`/end` also accepts the operator
and the meeting's customer admin); every control is audited.

Joining (`POST /meetings/{number}/join`) needs no account: the meeting number and its
passcode, or a signed link token, and a display name. An unknown number, a wrong passcode
and a bad link give the same 403 after the same work (a dummy meeting stands in for a
missing one; passcodes are compared as keyed digests with `hmac.compare_digest`). Failed
attempts are counted per meeting number and per source address; past
`auth.passcode_attempts_per_minute` (per meeting) or
`auth.passcode_attempts_per_address_per_minute` every attempt gets 429 with Retry-After.

A participant the host removed cannot join that meeting again: their token is revoked
(the store marks them removed), and a new join is refused when it comes from the same
device (the `conclave_device` cookie set by the first join) or presents the old token.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from aiohttp import web

from config import AuthConfig
from control.accounts.tokens import TokenError, Tokens
from control.errors import ApiError
from control.http.auth import Auth, bearer_token, client_address, looks_like_jwt
from control.metrics.exporter import LabeledCounter
from control.http.limiter import FailureLimits, RateLimit, RateLimited, SharedWindows, client_key
from control.http.middleware import json_error
from control.http.permissions import require_meeting_access
from control.http.rest import json_body
from control.http.urls import PublicUrls
from control.meeting import admission, numbers
from control.meeting.admission import full_meeting
from control.meeting.attendance import Attendance
from control.meeting.call_quality import CallQuality
from control.meeting.lifecycle import Lifecycle
from control.meeting.limits import LimitsPolicy
from control.meeting.model import LiveMeeting, MeetingRegistry
from control.meeting.moderation import Moderation
from control.meeting.protocol import clean_name
from control.store.base import MeetingFull, MeetingRecord, ParticipantRecord, Store, WaitingRoomFull

DEVICE_COOKIE = "conclave_device"
DEVICE_COOKIE_MAX_AGE_S = 365 * 24 * 3600
MUTE_SOURCES = ("microphone", "camera")
_DUMMY_MEETING = MeetingRecord(
    id="0" * 12, meeting_number="0" * 11, host_id="", customer_id="", title="", passcode=secrets.token_hex(8)
)


def participant_json(person: ParticipantRecord, meeting: LiveMeeting | None) -> dict[str, Any]:
    connected = meeting.find_connected(person.id) if meeting is not None else None
    body = {
        "participant_id": person.id,
        "name": person.name,
        "role": person.role,
        "state": person.state,
        "connected": connected is not None,
        "joined_at": person.joined_at,
    }
    if connected is not None and connected.admitted:
        body["muted"] = dict(connected.muted)
        body["muted_by_host"] = sorted(connected.host_muted)
        assert meeting is not None
        body["stage_role"] = meeting.stage.role_of(connected)  # host, participant, speaker or attendee
        body["hand_raised"] = connected.participant_id in meeting.stage.hands
    return body


def _too_many(message: str, exc: RateLimited, counter: LabeledCounter) -> web.Response:
    counter.inc(exc.limit)
    return json_error(429, "rate_limited", message, {"Retry-After": str(exc.retry_after_s)})


def _credentials_refused() -> ApiError:
    return ApiError(403, "invalid_credentials", "wrong meeting ID or passcode")


class SessionRoutes:
    def __init__(
        self,
        *,
        store: Store,
        auth: Auth,
        tokens: Tokens,
        registry: MeetingRegistry,
        attendance: Attendance,
        moderation: Moderation,
        lifecycle: Lifecycle,
        limits: LimitsPolicy,
        urls: PublicUrls,
        settings: AuthConfig,
        max_waiting: int,
        rate_limited: LabeledCounter,
        quality: CallQuality | None = None,
        shared_limits: SharedWindows | None = None,
    ) -> None:
        self._store = store
        self._quality = quality  # each admitted participant's measured connection, for the host
        self._auth = auth
        self._tokens = tokens
        self._registry = registry
        self._attendance = attendance
        self._moderation = moderation
        self._lifecycle = lifecycle
        self._limits = limits
        self._urls = urls
        self._join_failures = FailureLimits(
            settings.passcode_attempts_per_minute, settings.passcode_attempts_per_address_per_minute,
            names=("passcode_per_meeting", "passcode_per_client"), shared=shared_limits,
        )  # fmt: skip
        self._rate_limited = rate_limited
        self._joins = RateLimit(settings.joins_per_address_per_minute, "joins_per_client", shared=shared_limits)
        self._max_waiting = max_waiting

    def register(self, router: web.UrlDispatcher) -> None:
        prefix = "/api/v1/meetings/{number}"
        router.add_post(f"{prefix}/start", self.start_meeting)
        router.add_post(f"{prefix}/end", self.end_meeting)
        router.add_post(f"{prefix}/lock", self.lock_meeting)
        router.add_post(f"{prefix}/join", self.join_meeting)
        router.add_get(f"{prefix}/public", self.public_info)
        router.add_get(f"{prefix}/participants", self.list_participants)
        router.add_post(f"{prefix}/admit-all", self.admit_all)
        for action in ("admit", "deny", "remove", "mute", "promote", "demote"):
            router.add_post(f"{prefix}/participants/{{participant_id}}/{action}", self._participant_action(action))

    # ------------------------------------------------------------------ start / end / lock

    async def start_meeting(self, request: web.Request) -> web.Response:
        token = bearer_token(request)
        if token is not None and looks_like_jwt(token):
            raise ApiError(403, "forbidden", "starting a meeting needs the host's sign-in, not a join token")
        actor, host = await self._auth.require_host(request)
        record = require_meeting_access(actor, await self._auth.meeting_in_path(request), host_only=True)
        route = await self._urls.route(request, record)  # placed first: no start without a node
        holder = None if route.here else route.node_id
        started = await self._lifecycle.start(record, host.id, host.name, actor.host_session_id, holder=holder)
        if started.started_now:
            await self._auth.audit(request, actor, "meeting.start", "meeting", record.id,
                                   live_session_id=started.live_session.id)  # fmt: skip
        return web.json_response(
            {
                "meeting_number": numbers.display(record.meeting_number),
                "live_session_id": started.live_session.id,
                "participant_id": started.host.id,
                "host_token": started.token,
                "ws_url": route.ws_url,
                "status": "live",
                "started": started.started_now,
            }
        )

    async def end_meeting(self, request: web.Request) -> web.Response:
        """The host ends it for everyone; so may the operator and the customer's admin."""
        actor, record = await self._auth.moderator(request, admins_too=True)
        reason = {"host": "ended_by_host", "operator": "ended_by_operator"}.get(actor.kind, "ended_by_admin")
        if not await self._lifecycle.end(record.id, reason):
            raise ApiError(409, "not_live", "the meeting is not live")
        await self._auth.audit(request, actor, "meeting.end", "meeting", record.id, reason=reason)
        return web.json_response({"meeting_number": numbers.display(record.meeting_number), "status": "ended"})

    async def lock_meeting(self, request: web.Request) -> web.Response:
        actor, record = await self._auth.moderator(request)
        body = await json_body(request)
        locked = body.get("locked", True)
        if not isinstance(locked, bool):
            raise ApiError(400, "invalid_field", "locked: must be true or false")
        record = await self._moderation.set_locked(record, locked)
        action = "meeting.lock" if locked else "meeting.unlock"
        await self._auth.audit(request, actor, action, "meeting", record.id)
        return web.json_response({"meeting_number": numbers.display(record.meeting_number), "locked": record.locked})

    # ------------------------------------------------------------------ participants (host)

    async def list_participants(self, request: web.Request) -> web.Response:
        _, record = await self._auth.moderator(request)
        session = await self._store.get_live_session(record.id)
        lsn = session.id if session else None
        meeting = self._registry.get(record.id)
        present = await self._store.list_participants(record.id, states=["waiting", "admitted"])
        people = [p for p in present if p.live_session_id == lsn]
        return web.json_response(
            {
                "meeting_number": numbers.display(record.meeting_number),
                "status": "live" if session else "waiting_for_host",
                "waiting": [participant_json(p, meeting) for p in people if p.state == "waiting"],
                "admitted": [self._with_quality(participant_json(p, meeting), record.id) for p in people
                             if p.state == "admitted"],  # fmt: skip
            }
        )

    def _with_quality(self, body: dict[str, Any], meeting_id: str) -> dict[str, Any]:
        details = self._quality.details(meeting_id, body["participant_id"]) if self._quality is not None else None
        if details is not None:
            body["connection_quality"] = details
        return body

    def _participant_action(self, action: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return await self._act_on_participant(request, action)

        handler.__name__ = f"{action}_participant"
        return handler

    async def _act_on_participant(self, request: web.Request, action: str) -> web.Response:
        actor, record = await self._auth.moderator(request)
        participant_id = request.match_info["participant_id"]
        detail: dict[str, Any] = {}
        if action == "admit":
            person = await self._moderation.admit(record, participant_id)
        elif action == "deny":
            person = await self._moderation.deny(record, participant_id)
        elif action == "remove":
            person = await self._moderation.remove(record, participant_id)
        elif action in ("promote", "demote"):
            person = await self._moderation.set_speaker(record, participant_id, action == "promote")
        else:
            body = await json_body(request)
            source, muted = body.get("source"), body.get("muted", True)
            if source not in MUTE_SOURCES:
                raise ApiError(400, "invalid_field", f"source: must be one of {', '.join(MUTE_SOURCES)}")
            if not isinstance(muted, bool):
                raise ApiError(400, "invalid_field", "muted: must be true or false")
            person = await self._moderation.mute(record, participant_id, source, muted)
            action = "mute" if muted else "unmute"
            detail = {"source": source}
        await self._auth.audit(
            request, actor, f"participant.{action}", "participant", person.id,
            meeting_id=record.id, name=person.name, **detail,
        )  # fmt: skip
        return web.json_response(participant_json(person, self._registry.get(record.id)))

    async def admit_all(self, request: web.Request) -> web.Response:
        actor, record = await self._auth.moderator(request)
        admitted = await self._moderation.admit_all(record)
        await self._auth.audit(request, actor, "participant.admit_all", "meeting", record.id,
                               participant_ids=[p.id for p in admitted])  # fmt: skip
        meeting = self._registry.get(record.id)
        return web.json_response({"admitted": [participant_json(p, meeting) for p in admitted]})

    # ------------------------------------------------------------------ join (anyone)

    async def join_meeting(self, request: web.Request) -> web.Response:
        address = client_address(request) or "unknown"
        number_key = request.match_info.get("number", "").replace("-", "")[:32]
        try:  # reserved before anything is awaited: concurrent guesses count (limiter's doc)
            attempt = await self._join_failures.reserve(number_key, address)
        except RateLimited as exc:
            return _too_many("too many attempts; try again later", exc, self._rate_limited)
        with attempt:  # given back unless marked failed (a right passcode, a 400)
            body = await json_body(request)
            try:
                name = clean_name(body.get("name"))
            except ValueError as exc:
                raise ApiError(400, "invalid_field", f"name: {exc}") from None
            link_token, passcode = body.get("link_token"), body.get("passcode")
            if link_token is None and not isinstance(passcode, str):
                raise ApiError(400, "invalid_field", "passcode: required (or link_token)")
            if link_token is not None and not isinstance(link_token, str):
                raise ApiError(400, "invalid_field", "link_token: must be a string")
            digits = numbers.parse(request.match_info.get("number", ""))
            record = await self._check_credentials(digits, passcode, link_token)
            if record is None:
                attempt.failed()
                raise _credentials_refused()
        wait = await self._joins.hit(client_key(address))
        if wait is not None:
            refused = RateLimited(wait, self._joins.name)
            return _too_many("too many joins from this address; try again later", refused, self._rate_limited)
        return await self._admit_joiner(request, record, name, body.get("token"))

    async def _check_credentials(self, digits: str | None, passcode: object, link_token: object) -> MeetingRecord | None:
        """The meeting when the credential fits it, else None; the same work either way."""
        found = await self._store.get_meeting_by_number(digits or _DUMMY_MEETING.meeting_number)
        meeting = found or _DUMMY_MEETING
        if link_token is not None:
            ok = self._tokens.verify_link_token(link_token, meeting)
        else:
            given = self._tokens.passcode_digest(meeting.id, str(passcode)[:256])
            expected = self._tokens.passcode_digest(meeting.id, meeting.passcode)
            ok = hmac.compare_digest(given, expected)
        return found if ok and found is not None else None

    async def _admit_joiner(self, request: web.Request, record: MeetingRecord, name: str, old_token: object) -> web.Response:
        """The credential was right: the meeting's own rules decide (control.meeting.admission)."""
        device = request.cookies.get(DEVICE_COOKIE, "")
        if not (0 < len(device) <= 64) or not device.replace("-", "").replace("_", "").isalnum():
            device = secrets.token_urlsafe(16)
        session = await self._store.get_live_session(record.id)
        live = self._registry.get(record.id)
        situation = admission.Situation(
            live=session is not None,
            locked=record.locked,
            waiting_room=record.waiting_room,
            hold_newcomers=live is not None and live.hold_newcomers and live.live_session_id == (session and session.id),
            account_available=await self._attendance.account_available(record),
            removed=self._moderation.device_removed(record.id, device) or await self._was_removed(record, old_token),
        )
        decision = admission.decide(situation)
        if decision.outcome == admission.REFUSED:
            raise ApiError(403, decision.reason, decision.message)
        ws_url = (await self._urls.route(request, record)).ws_url  # placed before anything is written
        customer = await self._store.get_customer(record.customer_id)
        assert customer is not None  # the account is available
        try:
            person = await self._store.add_participant(
                record.id,
                name=name,
                role="participant",
                state=decision.outcome,
                live_session_id=session.id if session else None,
                max_present=(capacity := self._limits.for_meeting(customer).capacity),
                max_waiting=self._max_waiting,
            )
        except MeetingFull:
            raise ApiError(403, "meeting_full", full_meeting(capacity)) from None
        except WaitingRoomFull:
            raise ApiError(403, "waiting_room_full", "the waiting room is full; try again later") from None
        token = self._tokens.make_join_token(
            participant_id=person.id,
            meeting_id=record.id,
            live_session_id=person.live_session_id,
            name=name,
            role="participant",
        )
        self._moderation.joined_from(record.id, person.id, device)
        self._attendance.schedule_pending(record.id, person.id)
        if session is not None and decision.outcome == admission.WAITING:
            await self._attendance.notify_waiting_room(await self._attendance.live_meeting(record, session))
        status = "admitted" if decision.outcome == admission.ADMITTED else decision.reason
        response = web.json_response(
            {
                "token": token,
                "participant_id": person.id,
                "ws_url": ws_url,
                "meeting": {"title": record.title, "meeting_number": numbers.display(record.meeting_number)},
                "status": status,
                # A webinar's newcomer is an attendee: the page asks for no camera or microphone.
                "may_publish": record.attendees_publish,
            }
        )
        response.set_cookie(
            DEVICE_COOKIE,
            device,
            max_age=DEVICE_COOKIE_MAX_AGE_S,
            path="/api/v1/meetings",
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
        return response

    async def _was_removed(self, record: MeetingRecord, old_token: object) -> bool:
        """The join presents an earlier token of someone removed from this meeting."""
        if not isinstance(old_token, str):
            return False
        try:
            claims = self._tokens.verify_join_token(old_token, meeting_id=record.id, verify_exp=False)
        except TokenError:
            return False
        person = await self._store.get_participant(claims.participant_id)
        return person is not None and person.removed

    async def public_info(self, request: web.Request) -> web.Response:
        """Title and status for the join page, only to holders of the meeting's link token
        (`?t=`): anyone else gets the same 404, known number or not."""
        link = request.query.get("t")
        digits = numbers.parse(request.match_info.get("number", ""))
        found = await self._check_credentials(digits, None, link if link else "")
        if found is None:
            raise ApiError(404, "not_found", "no such meeting")
        session = await self._store.get_live_session(found.id)
        return web.json_response(
            {
                "meeting_number": numbers.display(found.meeting_number),
                "title": found.title,
                "status": "live" if session else "waiting_for_host",
                "attendees_publish": found.attendees_publish,
            }
        )
