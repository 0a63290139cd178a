"""WHIP (RFC 9725): a WebRTC publisher brings a stream into a live meeting with an ingest
token the host made (control.meeting.ingest).

    POST    /whip/{number}                         SDP offer → 201, Location, ETag, answer
    DELETE  /whip/{number}/sessions/{session_id}   ends the session (the same token)
    PATCH   /whip/{number}/sessions/{session_id}   trickle: 204; an ICE restart: 422
    OPTIONS on both                                CORS for browser clients

The server is ICE-lite (RFC 8445 §2.5): its answer carries every candidate it has and
a=end-of-candidates, and it learns the client's address from the client's own checks, so
trickled client candidates change nothing and are answered 204 (RFC 9725 §4.3.1: a
session supporting trickle but not ICE restarts answers a restart 422). DTLS: the worker
answers `a=setup:passive` to an `actpass` offer (webrtcbin's, browsers'), so the client
is the DTLS client with whatever certificate it has (webrtcbin's RSA included).

Errors are JSON (`{"error": {"code", "message"}}`): 415 not application/sdp (PATCH: not
application/trickle-ice-sdpfrag), 400 not an SDP offer or refused by the media server,
401 no token or a bad, expired or unknown one, 403 a revoked or ended ingest or a
suspended account, 404 no such meeting or session, 409 the meeting is not live, 403 full,
412 a PATCH whose If-Match is not the session's ETag, 429 too many attempts.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from aiohttp import web

from config import AuthConfig
from control.errors import ApiError
from control.http.auth import bearer_token, client_address
from control.http.limiter import FailureLimits, RateLimit, RateLimited, SharedWindows, client_key
from control.http.middleware import json_error
from control.meeting import numbers
from control.meeting.conference import Conference
from control.meeting.ingest import Ingests, IngestSession
from control.metrics.exporter import LabeledCounter
from control.store.base import MeetingRecord, Store

log = logging.getLogger(__name__)

SDP_TYPE = "application/sdp"
TRICKLE_TYPE = "application/trickle-ice-sdpfrag"
MAX_OFFER_CHARS = 60_000
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "OPTIONS, POST, PATCH, DELETE",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, ETag",
    "Access-Control-Max-Age": "600",
}


def _cors(response: web.StreamResponse) -> web.StreamResponse:
    response.headers.update(CORS_HEADERS)
    return response


def _error(exc: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    if exc.status == 401:  # RFC 6750 §3: how to authenticate
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="whip"'}
    response = json_error(exc.status, exc.code, exc.message, headers)
    _cors(response)
    return response


def ice_server_links(servers: list[dict[str, Any]]) -> list[str]:
    """RFC 9725 §4.6: one `Link: <url>; rel="ice-server"` per STUN/TURN URL, with its
    credentials (RFC 8829's RTCIceServer)."""
    links = []
    for server in servers:
        urls = server.get("urls") or []
        for url in [urls] if isinstance(urls, str) else urls:
            link = f'<{url}>; rel="ice-server"'
            if server.get("username"):
                link += f'; username="{server["username"]}"; credential="{server.get("credential", "")}"'
                link += '; credential-type="password"'
            links.append(link)
    return links


def is_ice_restart(fragment: str, session: IngestSession) -> bool:
    """A trickle fragment with other ICE credentials than the offer's asks for a restart."""
    for line in fragment.splitlines():
        if line.startswith("a=ice-ufrag:") and line[len("a=ice-ufrag:"):].strip() != session.ice_ufrag:
            return True
    return False


class WhipRoutes:
    def __init__(
        self, *, store: Store, ingests: Ingests, conference: Conference, settings: AuthConfig,
        rate_limited: LabeledCounter, shared_limits: SharedWindows | None = None,
    ) -> None:  # fmt: skip
        self._store = store
        self._ingests = ingests
        self._conference = conference  # TURN credentials for the Link headers
        # A token is a guessable secret only in theory (signed), but every refusal costs a
        # store lookup: wrong tokens are limited like passcodes, posts like joins.
        self._token_failures = FailureLimits(
            settings.passcode_attempts_per_minute, settings.passcode_attempts_per_address_per_minute,
            names=("ingest_token_per_meeting", "ingest_token_per_client"), shared=shared_limits,
        )  # fmt: skip
        self._posts = RateLimit(settings.joins_per_address_per_minute, "whip_posts_per_client", shared=shared_limits)
        self._rate_limited = rate_limited

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_route("OPTIONS", "/whip/{number}", self.options)
        router.add_post("/whip/{number}", self.publish)
        session = "/whip/{number}/sessions/{session_id}"
        router.add_route("OPTIONS", session, self.options)
        router.add_delete(session, self.end)
        router.add_patch(session, self.patch)

    async def options(self, request: web.Request) -> web.StreamResponse:
        headers = {"Accept-Post": SDP_TYPE, "Accept-Patch": TRICKLE_TYPE}
        return _cors(web.Response(status=204, headers=headers))

    async def _meeting(self, request: web.Request) -> MeetingRecord:
        digits = numbers.parse(request.match_info["number"])
        record = await self._store.get_meeting_by_number(digits) if digits else None
        if record is None:
            raise ApiError(404, "not_found", "no such meeting")
        return record

    async def publish(self, request: web.Request) -> web.StreamResponse:
        address = client_address(request)
        wait = await self._posts.hit(client_key(address))
        if wait is not None:
            return self._too_many(RateLimited(wait, self._posts.name))
        try:
            offer = await self._read(request, SDP_TYPE)
            if not offer.startswith("v=0"):
                raise ApiError(400, "bad_sdp", "the body is not an SDP offer (it must start with v=0)")
            record = await self._meeting(request)
            session, answer = await self._checked(request, record, lambda token: self._ingests.whip_publish(
                record, token, offer))  # fmt: skip
        except ApiError as exc:
            return _error(exc)
        except RateLimited as exc:
            return self._too_many(exc)
        location = f"/whip/{quote(request.match_info['number'])}/sessions/{session.session_id}"
        response = web.Response(status=201, text=answer, content_type=SDP_TYPE)
        response.headers["Location"] = location
        response.headers["ETag"] = session.etag
        for link in ice_server_links(self._conference.ice_servers_for(session.meeting, session.participant)):
            response.headers.add("Link", link)
        return _cors(response)

    async def end(self, request: web.Request) -> web.StreamResponse:
        try:
            record = await self._meeting(request)
            session_id = request.match_info["session_id"]
            await self._checked(request, record, lambda token: self._ingests.whip_end(record, token, session_id))
        except ApiError as exc:
            return _error(exc)
        except RateLimited as exc:
            return self._too_many(exc)
        return _cors(web.Response(status=200))

    async def patch(self, request: web.Request) -> web.StreamResponse:
        try:
            fragment = await self._read(request, TRICKLE_TYPE)
            record = await self._meeting(request)
            session_id = request.match_info["session_id"]
            session = await self._checked(
                request, record, lambda token: self._ingests.whip_session(record, token, session_id)
            )
            match = request.headers.get("If-Match")
            if match is not None and match not in ("*", session.etag):
                raise ApiError(412, "precondition_failed", "If-Match is not this session's ETag")
            if is_ice_restart(fragment, session):
                raise ApiError(422, "ice_restart_unsupported", "this server does not restart ICE; POST a new offer")
        except ApiError as exc:
            return _error(exc)
        except RateLimited as exc:
            return self._too_many(exc)
        return _cors(web.Response(status=204))  # ICE-lite: the client's candidates change nothing

    async def _checked(self, request: web.Request, record: MeetingRecord, action: Any) -> Any:
        """Run `action(token)` under the token-failure limits: a 401 counts, anything
        else is given back."""
        with await self._token_failures.reserve(record.id, client_address(request)) as attempt:
            try:
                return await action(bearer_token(request))
            except ApiError as exc:
                if exc.status == 401:
                    attempt.failed()
                raise

    @staticmethod
    async def _read(request: web.Request, content_type: str) -> str:
        if request.content_type != content_type:
            raise ApiError(415, "unsupported_media_type", f"the body must be {content_type}")
        raw = await request.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "bad_request", "the body is not UTF-8 text") from None
        if len(text) > MAX_OFFER_CHARS:
            raise ApiError(413, "too_large", f"the body has more than {MAX_OFFER_CHARS} characters")
        return text

    def _too_many(self, exc: RateLimited) -> web.Response:
        self._rate_limited.inc(exc.limit)
        return _error(ApiError(429, "rate_limited", "too many attempts; try again later"),
                      {"Retry-After": str(exc.retry_after_s)})  # fmt: skip
