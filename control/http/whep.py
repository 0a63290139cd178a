"""WHEP playback (draft-ietf-wish-whep) and the host's viewer tokens (issue 12, item 5).

The player's side, `/whep/{number}` (the meeting number, spaces or dashes allowed):

- `POST` with the player's SDP offer (`Content-Type: application/sdp`) and
  `Authorization: Bearer <viewer token>`: `201 Created`, the answer (ICE-lite, the
  worker's host candidates, `a=setup:passive` to an actpass offer) and `Location:` the
  session's resource. Refusals are JSON (`{"error": {"code", "message"}}`): 415 not SDP,
  400 a malformed offer, 401 no or an invalid/expired token, 403 a revoked token, one
  for another meeting, or a suspended customer or host, 404 no such meeting, 409 the
  meeting is not live, 503 `viewers_full` (the per-meeting cap; WHEP players, like
  WHIP clients, treat 503 as "try later": it carries `Retry-After`).
- `DELETE` on the resource (same bearer) ends the session; `PATCH` with a trickle-ICE
  fragment is accepted and ignored (204): the server is ICE-lite and learns the
  player's address from its checks; `OPTIONS` answers CORS preflights (any origin: the
  bearer token, never a cookie, is the credential).

The host's side, under `/api/v1/meetings/{number}/`: `viewer-tokens` (POST a labelled,
expiring token; GET the list, tokens themselves never shown again; DELETE one revokes it
and ends its viewers), `viewers` (who watches now) and `viewers/featured` (PUT whose
camera viewers see when nobody shares a screen). Tokens are never logged.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from control.accounts.tokens import TokenError, Tokens
from control.clock import Clock, iso_time
from control.errors import ApiError
from control.http.auth import Auth, bearer_token
from control.http.middleware import json_error
from control.http.rest import int_field, invalid, json_body, text_field
from control.meeting.model import MeetingRegistry
from control.meeting.viewers import Viewer, ViewerRefused, Viewers
from control.store.base import MeetingRecord, NotFound, Store, ViewerToken

SDP_TYPE = "application/sdp"
TRICKLE_TYPE = "application/trickle-ice-sdpfrag"
DEFAULT_TOKEN_TTL_S = 24 * 3600
MAX_TOKEN_TTL_S = 30 * 24 * 3600
RETRY_FULL_S = 30
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, DELETE, PATCH, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, Retry-After",
}
# Token problems as the player sees them: present but unusable is 401, except a token the
# host revoked or made for another meeting (403: the credentials are real, not for this).
_TOKEN_STATUS = {"revoked": 403, "wrong_meeting": 403}


def _error(exc: ApiError, extra: dict[str, str] | None = None) -> web.Response:
    return json_error(exc.status, exc.code, exc.message, {**CORS, **(extra or {})})


class WhepRoutes:
    def __init__(
        self, *, store: Store, auth: Auth, tokens: Tokens, registry: MeetingRegistry, viewers: Viewers, clock: Clock
    ) -> None:
        self._store = store
        self._auth = auth
        self._tokens = tokens
        self._registry = registry
        self._viewers = viewers
        self._clock = clock

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_route("OPTIONS", "/whep/{number}", self.preflight)
        router.add_post("/whep/{number}", self.start_session)
        router.add_route("OPTIONS", "/whep/{number}/{viewer_id}", self.preflight)
        router.add_delete("/whep/{number}/{viewer_id}", self.end_session)
        router.add_patch("/whep/{number}/{viewer_id}", self.trickle)
        router.add_post("/api/v1/meetings/{number}/viewer-tokens", self.create_token)
        router.add_get("/api/v1/meetings/{number}/viewer-tokens", self.list_tokens)
        router.add_delete("/api/v1/meetings/{number}/viewer-tokens/{token_id}", self.revoke_token)
        router.add_get("/api/v1/meetings/{number}/viewers", self.list_viewers)
        router.add_put("/api/v1/meetings/{number}/viewers/featured", self.set_featured)

    # ------------------------------------------------------------------ the player

    async def preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={**CORS, "Accept-Post": SDP_TYPE})

    async def start_session(self, request: web.Request) -> web.Response:
        try:
            return await self._start(request)
        except ViewerRefused as exc:
            self._viewers.counted(exc.outcome)
            return _error(exc, {"Retry-After": str(RETRY_FULL_S)} if exc.status == 503 else None)
        except ApiError as exc:
            self._viewers.counted({401: "unauthorized", 403: "forbidden", 400: "bad_offer"}.get(exc.status, "failed"))
            return _error(exc)

    async def _start(self, request: web.Request) -> web.Response:
        if request.content_type != SDP_TYPE:
            raise ApiError(415, "unsupported_media_type", f"the offer must be sent as {SDP_TYPE}")
        record = await self._meeting(request)
        token = await self._viewer_token(request, record)
        await self._check_accounts(record)
        offer = await request.text()
        if not offer.lstrip().startswith("v=0"):
            raise ApiError(400, "bad_offer", "the body is not an SDP offer (it must start with v=0)")
        viewer, answer = await self._viewers.start(record, token, offer)
        location = f"/whep/{record.meeting_number}/{viewer.viewer_id}"
        return web.Response(status=201, text=answer, content_type=SDP_TYPE, headers={**CORS, "Location": location})

    async def end_session(self, request: web.Request) -> web.Response:
        try:
            viewer = await self._own_viewer(request)
        except ApiError as exc:
            return _error(exc)
        await self._viewers.stop(viewer, "player ended it")
        return web.Response(status=200, headers=CORS)

    async def trickle(self, request: web.Request) -> web.Response:
        try:
            await self._own_viewer(request)
            if request.content_type != TRICKLE_TYPE:
                raise ApiError(415, "unsupported_media_type", f"trickle ICE is sent as {TRICKLE_TYPE}")
        except ApiError as exc:
            return _error(exc)
        await request.read()  # ICE-lite: the player's checks tell us its address
        return web.Response(status=204, headers=CORS)

    async def _own_viewer(self, request: web.Request) -> Viewer:
        record = await self._meeting(request)
        token = await self._viewer_token(request, record)
        viewer = self._viewers.find(record.id, request.match_info["viewer_id"])
        if viewer is None:
            raise ApiError(404, "not_found", "no such WHEP session")
        if viewer.token_id != token.id:
            raise ApiError(403, "forbidden", "this session was started with another token")
        return viewer

    async def _meeting(self, request: web.Request) -> MeetingRecord:
        record = await self._auth.meeting_in_path(request)
        if record is None:
            raise ApiError(404, "not_found", "no such meeting")
        return record

    async def _viewer_token(self, request: web.Request, record: MeetingRecord) -> ViewerToken:
        token = bearer_token(request)
        if token is None:
            raise ApiError(401, "unauthorized", "this request needs Authorization: Bearer <viewer token>")
        try:
            return await self._tokens.check_viewer_token(token, record.id)
        except TokenError as exc:
            status = _TOKEN_STATUS.get(exc.code, 401)
            raise ApiError(status, "forbidden" if status == 403 else "unauthorized", exc.message) from None

    async def _check_accounts(self, record: MeetingRecord) -> None:
        customer = await self._store.get_customer(record.customer_id)
        host = await self._store.get_host(record.host_id)
        if customer is None or customer.status != "active" or host is None or host.status != "active":
            raise ApiError(403, "forbidden", "the meeting's account is suspended")

    # ------------------------------------------------------------------ the host

    async def create_token(self, request: web.Request) -> web.Response:
        actor, record = await self._auth.moderator(request)
        body = await json_body(request)
        label = text_field(body, "label", required=True, min_chars=1, max_chars=100) or ""
        ttl = int_field(body, "ttl_s", 60, MAX_TOKEN_TTL_S) or DEFAULT_TOKEN_TTL_S
        try:
            row = await self._store.create_viewer_token(record.id, label, self._clock.time() + ttl)
        except NotFound:
            raise ApiError(404, "not_found", "no such meeting") from None
        await self._auth.audit(request, actor, "viewer_token.create", "meeting", record.id, token_id=row.id, label=label)
        reply = self._token_json(row)
        reply["token"] = self._tokens.make_viewer_token(row)  # shown once, here
        reply["whep_url"] = f"/whep/{record.meeting_number}"
        return web.json_response(reply, status=201)

    async def list_tokens(self, request: web.Request) -> web.Response:
        _, record = await self._auth.moderator(request)
        rows = await self._store.list_viewer_tokens(record.id)
        return web.json_response({"viewer_tokens": [self._token_json(row) for row in rows]})

    async def revoke_token(self, request: web.Request) -> web.Response:
        actor, record = await self._auth.moderator(request)
        row = await self._store.get_viewer_token(request.match_info["token_id"])
        if row is None or row.meeting_id != record.id:
            raise ApiError(404, "not_found", "no such viewer token")
        row = await self._store.revoke_viewer_token(row.id)
        ended = await self._viewers.revoke(record.id, row.id)
        await self._auth.audit(request, actor, "viewer_token.revoke", "meeting", record.id, token_id=row.id)
        return web.json_response({**self._token_json(row), "viewers_ended": ended})

    async def list_viewers(self, request: web.Request) -> web.Response:
        _, record = await self._auth.moderator(request)
        return web.json_response({**self._viewers.viewers_message(record.id),
                                  "featured": self._viewers.featured(record.id)})  # fmt: skip

    async def set_featured(self, request: web.Request) -> web.Response:
        _, record = await self._auth.moderator(request)
        body = await json_body(request)
        participant_id = body.get("participant_id")
        if participant_id is not None and not isinstance(participant_id, str):
            raise invalid("participant_id", "must be a participant id or null")
        meeting = self._registry.get(record.id)
        if meeting is None or meeting.live_session_id is None:
            raise ApiError(409, "meeting_not_live", "the meeting is not live")
        if participant_id is not None and participant_id not in meeting.participants:
            raise invalid("participant_id", "is not in the meeting")
        await self._viewers.feature(meeting, participant_id)
        return web.json_response({"featured": participant_id})

    def _token_json(self, row: ViewerToken) -> dict[str, Any]:
        return {
            "id": row.id,
            "label": row.label,
            "created_at": iso_time(row.created_at),
            "expires_at": iso_time(row.expires_at),
            "revoked_at": iso_time(row.revoked_at),
        }
