"""Who calls a REST endpoint, and the audit row of what they did.

- `authenticate(request)`: the bearer's `Actor` (operator, customer admin, host; see
  control.accounts.service), cached on the request; 401 for no or unknown credentials.
- `require_host(request)`: a signed-in host and their record.
- `customer_in_path` / `meeting_in_path`: what the path names (its administrators only).
- `moderator(request)`: the host acting on the meeting in the path, with their sign-in
  token or the host's join token of the current live session from a sign-in that is still
  active (or, with `admins_too`, the operator and the meeting's customer admin).
- `audit(request, actor, action, ...)`: one audit row, with the caller's address.
"""

from __future__ import annotations

from aiohttp import web

from control.accounts.service import API_KEY_PREFIX, HOST_TOKEN_PREFIX, Accounts, Actor
from control.accounts.tokens import TokenError, Tokens
from control.errors import ApiError
from control.http.permissions import require_customer_admin, require_meeting_access
from control.meeting import numbers
from control.store.base import Customer, Host, MeetingRecord, Store

ACTOR_KEY = web.RequestKey("conclave_actor", Actor)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def unauthorized(message: str = "missing or invalid credentials") -> ApiError:
    return ApiError(401, "unauthorized", message)


def client_address(request: web.Request | None) -> str:
    return (request.remote or "") if request is not None else ""


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith((API_KEY_PREFIX, HOST_TOKEN_PREFIX))


class Auth:
    def __init__(self, accounts: Accounts, tokens: Tokens, store: Store) -> None:
        self._accounts = accounts
        self._tokens = tokens
        self._store = store

    async def authenticate(self, request: web.Request) -> Actor:
        """The actor of the request (cached on it), or 401 (403 for a suspended account)."""
        cached = request.get(ACTOR_KEY)
        if cached is not None:
            return cached
        token = bearer_token(request)
        if token is None:
            raise unauthorized("this request needs Authorization: Bearer <token>")
        actor = await self._accounts.resolve_actor(token)
        if actor is None:
            raise unauthorized("invalid credentials")
        request[ACTOR_KEY] = actor
        return actor

    async def require_host(self, request: web.Request) -> tuple[Actor, Host]:
        """A signed-in host (host session token), and their host record."""
        actor = await self.authenticate(request)
        if actor.kind != "host" or actor.host_id is None:
            raise ApiError(403, "forbidden", "only a signed-in host may do this")
        host = await self._store.get_host(actor.host_id)
        if host is None:
            raise unauthorized("invalid credentials")
        return actor, host

    async def customer_in_path(self, request: web.Request, actor: Actor) -> Customer:
        """The customer named in the path, if the actor administers it (403 otherwise)."""
        customer_id = request.match_info["customer_id"]
        require_customer_admin(actor, customer_id)
        customer = await self._store.get_customer(customer_id)
        if customer is None:
            raise ApiError(404, "not_found", "no such customer")
        return customer

    async def meeting_in_path(self, request: web.Request) -> MeetingRecord | None:
        """The meeting whose number is in the path (numbers.parse's grammar), if it exists."""
        digits = numbers.parse(request.match_info.get("number", ""))
        return await self._store.get_meeting_by_number(digits) if digits else None

    async def moderator(self, request: web.Request, *, admins_too: bool = False) -> tuple[Actor, MeetingRecord]:
        """The meeting's host acting on it (see the module's doc), and the meeting."""
        token = bearer_token(request)
        if token is None:
            raise unauthorized("this request needs Authorization: Bearer <token>")
        if not looks_like_jwt(token):
            actor = await self.authenticate(request)
            record = await self.meeting_in_path(request)
            return actor, require_meeting_access(actor, record, host_only=not admins_too)
        try:
            claims = self._tokens.verify_join_token(token)
        except TokenError as exc:
            raise unauthorized(exc.message) from None
        if not (claims.is_host and claims.may("moderate")):
            raise ApiError(403, "forbidden", "only the meeting's host may do this")
        record = await self.meeting_in_path(request)
        if record is None:
            raise ApiError(404, "not_found", "no such meeting")
        if claims.meeting_id != record.id:
            raise ApiError(403, "forbidden", "this token is for another meeting")
        live_session = await self._store.get_live_session(record.id)
        if live_session is None or live_session.id != claims.live_session_id:
            raise ApiError(403, "forbidden", "this token is for a meeting session that has ended")
        if claims.host_session_id is not None:
            session = await self._accounts.host_session_in_use(claims.host_session_id)
            if session is None or not session.active:
                raise ApiError(401, "session_ended", "the sign-in that started this meeting has ended")
        try:
            await self._tokens.check_join_token(token, record.id)
        except TokenError as exc:
            raise ApiError(403, "forbidden", exc.message) from None
        actor = Actor(kind="host", id=record.host_id, customer_id=record.customer_id, host_id=record.host_id)
        return actor, record

    async def audit(
        self, request: web.Request, actor: Actor, action: str, target_kind: str = "", target_id: str = "",
        **detail: object,
    ) -> None:  # fmt: skip
        await self._accounts.audit(
            actor, action, target_kind, target_id, source_ip=client_address(request), **detail
        )
