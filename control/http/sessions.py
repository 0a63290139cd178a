"""REST of live meetings (docs/control-plane.md): start, end, lock, join, the host's
controls over participants. `register(app)` adds the routes.

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

import collections
import hmac
import math
import secrets
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from control.accounts import service as accounts
from control.meeting import live
from control.accounts import tokens
from control.accounts.service import Actor
from control.errors import ApiError, json_error
from control.http.permissions import require_meeting_access
from control.meeting.protocol import clean_name
from control.http.rest import display_number, json_body, public_base
from control.state import get_state
from control.store.base import MeetingRecord
from control.store.base import MeetingFull

DEVICE_COOKIE = "conclave_device"
DEVICE_COOKIE_MAX_AGE_S = 365 * 24 * 3600
WINDOW_S = 60.0
MAX_TRACKED_KEYS = 50_000
MUTE_SOURCES = ("microphone", "camera")
_DUMMY_MEETING = MeetingRecord(
    id="0" * 12, meeting_number="0" * 11, host_id="", customer_id="", title="", passcode=secrets.token_hex(8)
)


# ---------------------------------------------------------------------- brute-force limits


class AttemptLimiter:
    """Failed attempts per key in a sliding window; pure (the clock is injected)."""

    def __init__(self, limit: int, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, collections.deque[float]] = {}

    def retry_after(self, key: str) -> float | None:
        """Seconds until the next attempt may be made, or None when it may be made now."""
        failures = self._prune(key)
        if failures is None or len(failures) < self.limit:
            return None
        return max(failures[0] + self.window_s - self._clock(), 0.001)

    def failed(self, key: str) -> None:
        if len(self._failures) >= MAX_TRACKED_KEYS:
            self._forget_old()
        failures = self._failures.setdefault(key, collections.deque())
        failures.append(self._clock())
        while len(failures) > self.limit:
            failures.popleft()

    def _prune(self, key: str) -> collections.deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        horizon = self._clock() - self.window_s
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def _forget_old(self) -> None:
        for key in list(self._failures):
            self._prune(key)


class JoinLimits:
    def __init__(self, per_meeting: int, per_address: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.meetings = AttemptLimiter(per_meeting, clock=clock)
        self.addresses = AttemptLimiter(per_address, clock=clock)

    def check(self, number_key: str, address: str) -> None:
        waits = [w for w in (self.meetings.retry_after(number_key), self.addresses.retry_after(address)) if w]
        if waits:
            seconds = math.ceil(max(waits))
            raise RateLimited(seconds)

    def failed(self, number_key: str, address: str) -> None:
        self.meetings.failed(number_key)
        self.addresses.failed(address)


class RateLimited(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


JOIN_LIMITS_KEY = web.AppKey("conclave_join_limits", JoinLimits)


# ---------------------------------------------------------------------- helpers


def ws_url(request: web.Request, row: MeetingRecord) -> str:
    base = public_base(request)
    scheme, rest = base.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/api/v1/meetings/{display_number(row.meeting_number)}/ws"


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith((accounts.API_KEY_PREFIX, accounts.HOST_TOKEN_PREFIX))


def _digits(request: web.Request) -> str | None:
    text = request.match_info.get("number", "")
    if len(text) > 16:
        return None
    digits = text.replace("-", "")
    return digits if len(digits) == 11 and digits.isdigit() else None


async def _meeting_or_404(request: web.Request) -> MeetingRecord:
    digits = _digits(request)
    row = await get_state(request.app).store.get_meeting_by_number(digits) if digits else None
    if row is None:
        raise ApiError(404, "not_found", "no such meeting")
    return row


async def moderator(request: web.Request, *, admins_too: bool = False) -> tuple[Actor, MeetingRecord]:
    """The meeting's host acting on it (see the module's doc), and the meeting. With
    `admins_too`, also the operator and the admin of the meeting's customer."""
    state = get_state(request.app)
    token = accounts.bearer_token(request)
    if token is None:
        raise accounts.unauthorized("this request needs Authorization: Bearer <token>")
    if not looks_like_jwt(token):
        actor = await accounts.authenticate(request)
        digits = _digits(request)
        row = await state.store.get_meeting_by_number(digits) if digits else None
        return actor, require_meeting_access(actor, row, host_only=not admins_too)
    try:
        claims = tokens.verify_join_token(state, token)
    except tokens.TokenError as exc:
        raise accounts.unauthorized(exc.message) from None
    if not (claims.is_host and claims.may("moderate")):
        raise ApiError(403, "forbidden", "only the meeting's host may do this")
    row = await _meeting_or_404(request)
    if claims.meeting_id != row.id:
        raise ApiError(403, "forbidden", "this token is for another meeting")
    live_session = await state.store.get_live_session(row.id)
    if live_session is None or live_session.id != claims.live_session_id:
        raise ApiError(403, "forbidden", "this token is for a meeting session that has ended")
    if claims.host_session_id is not None:
        session = await state.store.get_host_session(claims.host_session_id)
        if session is None or not session.active:
            raise ApiError(401, "session_ended", "the sign-in that started this meeting has ended")
    try:
        await tokens.check_join_token(state, token, row.id)
    except tokens.TokenError as exc:
        raise ApiError(403, "forbidden", exc.message) from None
    actor = Actor(kind="host", id=row.host_id, customer_id=row.customer_id, host_id=row.host_id)
    return actor, row


def _participant_json(person: Any, meeting: Any) -> dict[str, Any]:
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
    return body


# ---------------------------------------------------------------------- start / end / lock


async def start_meeting(request: web.Request) -> web.Response:
    token = accounts.bearer_token(request)
    if token is not None and looks_like_jwt(token):
        raise ApiError(403, "forbidden", "starting a meeting needs the host's sign-in, not a join token")
    actor, host = await accounts.require_host(request)
    state = get_state(request.app)
    digits = _digits(request)
    row = await state.store.get_meeting_by_number(digits) if digits else None
    row = require_meeting_access(actor, row, host_only=True)
    session, host_person, token, started = await live.start_meeting(
        state, row, host.id, host.name, actor.host_session_id
    )
    if started:
        await accounts.audit(
            state, request, actor, "meeting.start", "meeting", row.id, live_session_id=session.id
        )
    return web.json_response(
        {
            "meeting_number": display_number(row.meeting_number),
            "live_session_id": session.id,
            "participant_id": host_person.id,
            "host_token": token,
            "ws_url": ws_url(request, row),
            "status": "live",
            "started": started,
        }
    )


async def end_meeting(request: web.Request) -> web.Response:
    """The host ends it for everyone; so may the operator and the customer's admin."""
    actor, row = await moderator(request, admins_too=True)
    state = get_state(request.app)
    reason = {"host": "ended_by_host", "operator": "ended_by_operator"}.get(actor.kind, "ended_by_admin")
    if not await live.end_meeting(state, row.id, reason):
        raise ApiError(409, "not_live", "the meeting is not live")
    await accounts.audit(state, request, actor, "meeting.end", "meeting", row.id, reason=reason)
    return web.json_response({"meeting_number": display_number(row.meeting_number), "status": "ended"})


async def lock_meeting(request: web.Request) -> web.Response:
    actor, row = await moderator(request)
    body = await json_body(request)
    locked = body.get("locked", True)
    if not isinstance(locked, bool):
        raise ApiError(400, "invalid_field", "locked: must be true or false")
    state = get_state(request.app)
    row = await live.set_locked(state, row, locked)
    action = "meeting.lock" if locked else "meeting.unlock"
    await accounts.audit(state, request, actor, action, "meeting", row.id)
    return web.json_response({"meeting_number": display_number(row.meeting_number), "locked": row.locked})


# ---------------------------------------------------------------------- participants (host)


async def list_participants(request: web.Request) -> web.Response:
    _, row = await moderator(request)
    state = get_state(request.app)
    session = await state.store.get_live_session(row.id)
    lsn = session.id if session else None
    meeting = state.meetings.get(row.id)
    people = [
        p for p in await state.store.list_participants(row.id, states=["waiting", "admitted"]) if p.live_session_id == lsn
    ]
    return web.json_response(
        {
            "meeting_number": display_number(row.meeting_number),
            "status": "live" if session else "waiting_for_host",
            "waiting": [_participant_json(p, meeting) for p in people if p.state == "waiting"],
            "admitted": [_participant_json(p, meeting) for p in people if p.state == "admitted"],
        }
    )


async def _act_on_participant(request: web.Request, action: str) -> web.Response:
    actor, row = await moderator(request)
    state = get_state(request.app)
    participant_id = request.match_info["participant_id"]
    detail: dict[str, Any] = {}
    if action == "admit":
        person = await live.admit(state, row, participant_id)
    elif action == "deny":
        person = await live.deny(state, row, participant_id)
    elif action == "remove":
        person = await live.remove(state, row, participant_id)
    else:
        body = await json_body(request)
        source, muted = body.get("source"), body.get("muted", True)
        if source not in MUTE_SOURCES:
            raise ApiError(400, "invalid_field", f"source: must be one of {', '.join(MUTE_SOURCES)}")
        if not isinstance(muted, bool):
            raise ApiError(400, "invalid_field", "muted: must be true or false")
        person = await live.mute(state, row, participant_id, source, muted)
        action = "mute" if muted else "unmute"
        detail = {"source": source}
    await accounts.audit(
        state, request, actor, f"participant.{action}", "participant", person.id,
        meeting_id=row.id, name=person.name, **detail,
    )  # fmt: skip
    return web.json_response(_participant_json(person, state.meetings.get(row.id)))


async def admit_participant(request: web.Request) -> web.Response:
    return await _act_on_participant(request, "admit")


async def deny_participant(request: web.Request) -> web.Response:
    return await _act_on_participant(request, "deny")


async def remove_participant(request: web.Request) -> web.Response:
    return await _act_on_participant(request, "remove")


async def mute_participant(request: web.Request) -> web.Response:
    return await _act_on_participant(request, "mute")


async def admit_all(request: web.Request) -> web.Response:
    actor, row = await moderator(request)
    state = get_state(request.app)
    admitted = await live.admit_all(state, row)
    await accounts.audit(
        state, request, actor, "participant.admit_all", "meeting", row.id, participant_ids=[p.id for p in admitted]
    )
    meeting = state.meetings.get(row.id)
    return web.json_response({"admitted": [_participant_json(p, meeting) for p in admitted]})


# ---------------------------------------------------------------------- join (anyone)


def _credentials_refused() -> ApiError:
    return ApiError(403, "invalid_credentials", "wrong meeting ID or passcode")


async def join_meeting(request: web.Request) -> web.Response:
    state = get_state(request.app)
    limits: JoinLimits = request.app[JOIN_LIMITS_KEY]
    address = accounts.client_address(request) or "unknown"
    number_key = request.match_info.get("number", "").replace("-", "")[:32]
    try:
        limits.check(number_key, address)
    except RateLimited as exc:
        return json_error(429, "rate_limited", "too many attempts; try again later",
                          {"Retry-After": str(exc.retry_after_s)})  # fmt: skip
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
    row = await _check_credentials(state, _digits(request), passcode, link_token)
    if row is None:
        limits.failed(number_key, address)
        raise _credentials_refused()
    return await _admit_joiner(request, row, name, body.get("token"))


async def _check_credentials(
    state: Any, digits: str | None, passcode: object, link_token: object
) -> MeetingRecord | None:
    """The meeting when the credential fits it, else None; the same work either way."""
    found = await state.store.get_meeting_by_number(digits or _DUMMY_MEETING.meeting_number)
    meeting = found or _DUMMY_MEETING
    if link_token is not None:
        ok = tokens.verify_link_token(state, link_token, meeting)
    else:
        given = tokens.passcode_digest(state, meeting.id, str(passcode)[:256])
        expected = tokens.passcode_digest(state, meeting.id, meeting.passcode)
        ok = hmac.compare_digest(given, expected)
    return found if ok and found is not None else None


async def _admit_joiner(request: web.Request, row: MeetingRecord, name: str, old_token: object) -> web.Response:
    """The credential was right: the meeting's own rules decide (removed, locked, full)."""
    state = get_state(request.app)
    store = state.store
    customer = await store.get_customer(row.customer_id)
    host = await store.get_host(row.host_id)
    limits = accounts.customer_limits(state, customer) if customer else None
    if (
        customer is None
        or host is None
        or limits is None
        or customer.status != "active"
        or host.status != "active"
        or limits["meetings_disabled"]
    ):
        raise ApiError(403, "meeting_unavailable", "this meeting is not available")
    device = request.cookies.get(DEVICE_COOKIE, "")
    if not (0 < len(device) <= 64) or not device.replace("-", "").replace("_", "").isalnum():
        device = secrets.token_urlsafe(16)
    if device in state.meetings.removed_devices.get(row.id, ()) or await _was_removed(state, row, old_token):
        raise ApiError(403, "removed", "the host removed you from this meeting")
    session = await store.get_live_session(row.id)
    if session is not None and row.locked:
        raise ApiError(403, "meeting_locked", "the host locked this meeting")
    waiting = session is None or row.waiting_room
    capacity = min(int(limits["max_participants_per_meeting"]), state.cfg.signaling.max_participants_per_meeting)
    try:
        person = await store.add_participant(
            row.id,
            name=name,
            role="participant",
            state="waiting" if waiting else "admitted",
            live_session_id=session.id if session else None,
            max_present=capacity,
        )
    except MeetingFull:
        raise ApiError(403, "meeting_full", "this meeting is full") from None
    token = tokens.make_join_token(
        state,
        participant_id=person.id,
        meeting_id=row.id,
        live_session_id=person.live_session_id,
        name=name,
        role="participant",
        ttl_s=state.cfg.auth.join_token_ttl_s,
    )
    state.meetings.devices[person.id] = (row.id, device)
    live.schedule_pending(state, row.id, person.id)
    if session is not None and waiting:
        await live.notify_waiting_room(state, live.live_meeting(state, row, session))
    status = "waiting_for_host" if session is None else ("waiting_room" if waiting else "admitted")
    response = web.json_response(
        {
            "token": token,
            "participant_id": person.id,
            "ws_url": ws_url(request, row),
            "meeting": {"title": row.title, "meeting_number": display_number(row.meeting_number)},
            "status": status,
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


async def _was_removed(state: Any, row: MeetingRecord, old_token: object) -> bool:
    """The join presents an earlier token of someone removed from this meeting."""
    if not isinstance(old_token, str):
        return False
    try:
        claims = tokens.verify_join_token(state, old_token, meeting_id=row.id, verify_exp=False)
    except tokens.TokenError:
        return False
    person = await state.store.get_participant(claims.participant_id)
    return person is not None and person.removed


async def public_info(request: web.Request) -> web.Response:
    """Title and status for the join page, only to holders of the meeting's link token
    (`?t=`): anyone else gets the same 404, known number or not."""
    state = get_state(request.app)
    link = request.query.get("t")
    found = await _check_credentials(state, _digits(request), None, link if link else "")
    if found is None:
        raise ApiError(404, "not_found", "no such meeting")
    session = await state.store.get_live_session(found.id)
    return web.json_response(
        {
            "meeting_number": display_number(found.meeting_number),
            "title": found.title,
            "status": "live" if session else "waiting_for_host",
        }
    )


# ---------------------------------------------------------------------- routes


def register(app: web.Application) -> None:
    state = get_state(app)
    auth = state.cfg.auth
    app[JOIN_LIMITS_KEY] = JoinLimits(auth.passcode_attempts_per_minute, auth.passcode_attempts_per_address_per_minute)
    state.conference.reconnect_token = lambda meeting, participant: live.reconnect_token(state, meeting, participant)
    add = app.router
    prefix = "/api/v1/meetings/{number}"
    add.add_post(f"{prefix}/start", start_meeting)
    add.add_post(f"{prefix}/end", end_meeting)
    add.add_post(f"{prefix}/lock", lock_meeting)
    add.add_post(f"{prefix}/join", join_meeting)
    add.add_get(f"{prefix}/public", public_info)
    add.add_get(f"{prefix}/participants", list_participants)
    add.add_post(f"{prefix}/admit-all", admit_all)
    add.add_post(f"{prefix}/participants/{{participant_id}}/admit", admit_participant)
    add.add_post(f"{prefix}/participants/{{participant_id}}/deny", deny_participant)
    add.add_post(f"{prefix}/participants/{{participant_id}}/remove", remove_participant)
    add.add_post(f"{prefix}/participants/{{participant_id}}/mute", mute_participant)

