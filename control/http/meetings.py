"""REST for meetings as records (docs/control-plane-reference.md): a host schedules, lists, changes
and deletes their meetings; a customer admin sees the customer's; the operator sees all
and removes content. Starting, ending, joining and moderating are `control.http.sessions`.

Meeting numbers are 11 random digits (`control.meeting.numbers`), unique among
meetings that exist (the store refuses a duplicate; another number is drawn). A join URL
carries a signed link token (`control.accounts.tokens`), never the passcode.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from aiohttp import web

from config import LimitsConfig
from control.accounts.service import Actor
from control.accounts.tokens import Tokens
from control.clock import iso_time
from control.errors import ApiError
from control.http.auth import Auth, unauthorized
from control.http.permissions import require_meeting_access, require_operator
from control.http.rest import (
    bool_field,
    int_field,
    invalid,
    json_body,
    text_field,
    time_field,
)
from control.http.urls import PublicUrls
from control.meeting import numbers
from control.meeting.adaptive import AdaptiveMedia
from control.meeting.lifecycle import Lifecycle
from control.meeting.limits import LimitsPolicy
from control.meeting.webinar import Webinar
from control.recording.archive import RecordingArchive
from control.store.base import Conflict, MeetingRecord, Store

MAX_TITLE_CHARS = 200
PASSCODE_PATTERN = re.compile(r"^[A-Za-z0-9]{6,32}$")
GENERATED_PASSCODE_DIGITS = 8
NUMBER_ATTEMPTS = 20  # draws before giving up; a clash needs ~1e5 meetings to be likely once
STATUSES = ("scheduled", "live", "ended")


def new_passcode() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(GENERATED_PASSCODE_DIGITS))


class MeetingRoutes:
    def __init__(
        self,
        *,
        store: Store,
        auth: Auth,
        tokens: Tokens,
        lifecycle: Lifecycle,
        archive: RecordingArchive,
        limits: LimitsPolicy,
        urls: PublicUrls,
        adaptive: AdaptiveMedia,
        webinar: Webinar,
    ) -> None:
        self._store = store
        self._auth = auth
        self._tokens = tokens
        self._lifecycle = lifecycle
        self._archive = archive
        self._limits = limits
        self._urls = urls
        self._adaptive = adaptive  # a live meeting's last-N follows its setting
        self._webinar = webinar  # and who may publish, its attendees_publish

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/v1/meetings", self.create_meeting)
        router.add_get("/api/v1/meetings", self.list_meetings)
        router.add_get("/api/v1/meetings/{number}", self.get_meeting)
        router.add_patch("/api/v1/meetings/{number}", self.patch_meeting)
        router.add_delete("/api/v1/meetings/{number}", self.delete_meeting)
        router.add_delete("/api/v1/meetings/{number}/content", self.remove_content)
        router.add_get("/api/v1/customers/{customer_id}/meetings", self.list_customer_meetings)

    def join_url(self, request: web.Request, meeting: MeetingRecord) -> str:
        return self._urls.join(request, meeting, self._tokens.make_link_token(meeting))

    def meeting_json(self, request: web.Request, meeting: MeetingRecord) -> dict[str, Any]:
        return {
            "id": meeting.id,
            "meeting_number": numbers.display(meeting.meeting_number),
            "title": meeting.title,
            "passcode": meeting.passcode,
            "join_url": self.join_url(request, meeting),
            "start_time": iso_time(meeting.start_time),
            "duration_minutes": meeting.duration_minutes,
            "waiting_room": meeting.waiting_room,
            "status": meeting.status,
            "locked": meeting.locked,
            "last_n": meeting.last_n,
            "attendees_publish": meeting.attendees_publish,
            "host_id": meeting.host_id,
            "customer_id": meeting.customer_id,
            "created_at": iso_time(meeting.created_at),
        }

    def _passcode_field(self, body: dict[str, Any]) -> str | None:
        value = body.get("passcode")
        if value is None:
            return None
        if not isinstance(value, str) or not PASSCODE_PATTERN.match(value):
            raise invalid("passcode", "must be 6 to 32 letters or digits")
        return value

    async def _limits_of(self, customer_id: str) -> LimitsConfig:
        customer = await self._store.get_customer(customer_id)
        if customer is None:
            raise unauthorized()
        return self._limits.account(customer)

    def _duration_field(self, body: dict[str, Any], limits: LimitsConfig) -> int | None:
        return int_field(body, "duration_minutes", 1, limits.max_meeting_minutes)

    def _last_n_field(self, body: dict[str, Any], limits: LimitsConfig) -> int | None:
        """Last-N: from 1 to the customer's cap (`limits.max_last_n`)."""
        return int_field(body, "last_n", 1, limits.max_last_n)

    async def meeting_in_path(self, request: web.Request, actor: Actor, *, host_only: bool = False) -> MeetingRecord:
        """The meeting of `{number}` in the path, if the actor may act on it (else 403/404)."""
        return require_meeting_access(actor, await self._auth.meeting_in_path(request), host_only=host_only)

    # ------------------------------------------------------------------ handlers

    async def create_meeting(self, request: web.Request) -> web.Response:
        actor, host = await self._auth.require_host(request)
        limits = await self._limits_of(host.customer_id)
        if limits.meetings_disabled:
            raise ApiError(403, "meetings_disabled", "meetings are disabled for this account")
        body = await json_body(request)
        fields: dict[str, Any] = {
            "title": text_field(body, "title", max_chars=MAX_TITLE_CHARS) or "",
            "passcode": self._passcode_field(body) or new_passcode(),
            "start_time": time_field(body, "start_time"),
            "duration_minutes": self._duration_field(body, limits),
            "waiting_room": True if bool_field(body, "waiting_room") is None else body["waiting_room"],
            "last_n": self._last_n_field(body, limits),
            "attendees_publish": bool_field(body, "attendees_publish") is not False,
        }
        for _ in range(NUMBER_ATTEMPTS):
            try:
                meeting = await self._store.create_meeting(
                    meeting_number=numbers.new_number(), host_id=host.id, customer_id=host.customer_id, **fields
                )
                break
            except Conflict:
                continue
        else:
            raise ApiError(503, "unavailable", "could not draw a free meeting number; try again")
        await self._auth.audit(
            request, actor, "meeting.create", "meeting", meeting.id, meeting_number=meeting.meeting_number
        )
        return web.json_response(self.meeting_json(request, meeting), status=201)

    async def list_meetings(self, request: web.Request) -> web.Response:
        """Host: their own. Customer admin: the customer's. Operator: all, or filtered by
        ?customer_id= and ?host_id=. Any of them: ?status=scheduled|live|ended."""
        actor = await self._auth.authenticate(request)
        store = self._store
        status = request.query.get("status") or None
        if status is not None and status not in STATUSES:
            raise invalid("status", f"must be one of {', '.join(STATUSES)}")
        statuses = [status] if status else None
        if actor.kind == "host":
            meetings = await store.list_meetings(host_id=actor.host_id, statuses=statuses)
        elif actor.kind == "customer":
            meetings = await store.list_meetings(customer_id=actor.customer_id, statuses=statuses)
        else:
            meetings = await store.list_meetings(
                customer_id=request.query.get("customer_id") or None,
                host_id=request.query.get("host_id") or None,
                statuses=statuses,
            )
        return web.json_response({"meetings": [self.meeting_json(request, m) for m in meetings]})

    async def list_customer_meetings(self, request: web.Request) -> web.Response:
        customer = await self._auth.customer_in_path(request, await self._auth.authenticate(request))
        meetings = await self._store.list_meetings(customer_id=customer.id)
        return web.json_response({"meetings": [self.meeting_json(request, m) for m in meetings]})

    async def get_meeting(self, request: web.Request) -> web.Response:
        meeting = await self.meeting_in_path(request, await self._auth.authenticate(request))
        return web.json_response(self.meeting_json(request, meeting))

    async def patch_meeting(self, request: web.Request) -> web.Response:
        actor = await self._auth.authenticate(request)
        meeting = await self.meeting_in_path(request, actor, host_only=True)
        limits = await self._limits_of(meeting.customer_id)
        body = await json_body(request)
        changes: dict[str, Any] = {}
        title = text_field(body, "title", max_chars=MAX_TITLE_CHARS)
        if title is not None:
            changes["title"] = title
        passcode = self._passcode_field(body)
        if passcode is not None:
            changes["passcode"] = passcode
        start_time = time_field(body, "start_time")
        if start_time is not None:
            changes["start_time"] = start_time
        duration = self._duration_field(body, limits)
        if duration is not None:
            changes["duration_minutes"] = duration
        waiting_room = bool_field(body, "waiting_room")
        if waiting_room is not None:
            changes["waiting_room"] = waiting_room
        last_n = self._last_n_field(body, limits)
        if last_n is not None:
            changes["last_n"] = last_n
        attendees_publish = bool_field(body, "attendees_publish")
        if attendees_publish is not None:
            changes["attendees_publish"] = attendees_publish
        meeting = await self._store.update_meeting(meeting.id, **changes)
        if last_n is not None:
            await self._adaptive.setting_changed(meeting)
        if attendees_publish is not None:
            await self._webinar.setting_changed(meeting)
        detail = {k: v for k, v in changes.items() if k != "passcode"}
        if passcode is not None:
            detail["passcode_changed"] = True
        await self._auth.audit(request, actor, "meeting.update", "meeting", meeting.id, **detail)
        return web.json_response(self.meeting_json(request, meeting))

    async def delete_meeting(self, request: web.Request) -> web.Response:
        """Host, customer admin or operator: the meeting ends (if live) and goes, with its chat,
        recordings and transcripts (nothing would list them once the meeting is gone)."""
        actor = await self._auth.authenticate(request)
        meeting = await self.meeting_in_path(request, actor)
        # Live or not, people may be connected (waiting for the host): they are told and let go.
        await self._lifecycle.end(meeting.id, "meeting_deleted")
        # Everything goes from the store whatever the storage says; what it still holds is
        # reported (202) and retried.
        removal = await self._archive.remove_meeting_content(meeting, keep_live_people=False)
        await self._store.remove_meeting(meeting.id)
        await self._auth.audit(
            request, actor, "meeting.delete", "meeting", meeting.id, meeting_number=meeting.meeting_number,
            storage_pending=len(removal.pending),
        )  # fmt: skip
        if removal.pending:
            body = {"meeting_number": numbers.display(meeting.meeting_number), "storage_pending": removal.storage_pending()}
            return web.json_response(body, status=202)
        return web.Response(status=204)

    async def remove_content(self, request: web.Request) -> web.Response:
        """Operator: remove the meeting's content now: recordings and transcripts (their files
        in the storage too; running ones are stopped first), chat, consent ledger, webhook
        deliveries, and participant rows but those of its open live session."""
        actor = await self._auth.authenticate(request)
        require_operator(actor)
        meeting = await self.meeting_in_path(request, actor)
        # The people of a live session that is still open stay (they are in it now).
        removal = await self._archive.remove_meeting_content(meeting, keep_live_people=True)
        removed = removal.removed
        await self._auth.audit(request, actor, "meeting.remove_content", "meeting", meeting.id, **removed,
                               storage_pending=len(removal.pending))  # fmt: skip
        return web.json_response({"meeting_number": numbers.display(meeting.meeting_number), "removed": removed,
                                  "storage_pending": removal.storage_pending()})  # fmt: skip
