"""Accounts: passwords, API keys, host sessions, and who is calling.

Credentials (`Authorization: Bearer <token>`, docs/control-plane.md):
- operator: the operator key (config or DATA_DIR/operator-key), compared in constant time;
- customer admin: `ck_...`, stored as its SHA-256 (a key is 256 random bits, so a plain
  hash is as strong as a slow one, and lookup by hash leaks nothing useful);
- host: `hs_...` from `POST /auth/login`, stored as its SHA-256 (it is the session id).
Join JWTs of participants are not resolved here: `control.accounts.tokens` verifies them where a
participant may act. Any other bearer is 401.

Passwords are hashed with argon2id (argon2-cffi) on a worker thread, at most a few at a
time, so a burst of logins neither blocks the event loop nor exhausts memory. A login with
an unknown email verifies against a dummy hash, so both cost the same.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
import secrets
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from control.errors import ApiError
from control.state import AppState, get_state
from control.store.base import Customer, Host, HostSessionActive

log = logging.getLogger(__name__)

API_KEY_PREFIX = "ck_"
HOST_TOKEN_PREFIX = "hs_"
MAX_PASSWORD_CHARS = 1024
MIN_PASSWORD_CHARS = 8

_hasher = PasswordHasher()
# argon2 takes 64 MiB and ~0.1 s of CPU per call: at most two at once, on worker threads
# (a threading semaphore: an asyncio one would be bound to the first event loop).
_hashing = threading.BoundedSemaphore(2)
_dummy_hash: str | None = None


# ---------------------------------------------------------------------- secrets and hashes


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def new_api_key() -> tuple[str, str]:
    """(the key to hand out once, the hash to store)."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, sha256_hex(key)


def new_host_token() -> tuple[str, str]:
    """(the host session token to hand out, its hash = the session id)."""
    token = HOST_TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, sha256_hex(token)


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets: neither where they differ nor the expected
    length shows in the time taken (both are hashed to 32 bytes first)."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode("utf-8")).digest(), hashlib.sha256(expected.encode("utf-8")).digest()
    )


def _hash_now(password: str) -> str:
    with _hashing:
        return _hasher.hash(password)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hash_now, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches; with no hash (unknown user) does the same work, False."""
    global _dummy_hash
    if password_hash is None:
        if _dummy_hash is None:
            _dummy_hash = await hash_password(secrets.token_urlsafe(16))
        password_hash, password = _dummy_hash, password + "\x00not-it"

    def verify() -> bool:
        with _hashing:
            try:
                return _hasher.verify(password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

    return await asyncio.to_thread(verify)


def check_password_rules(password: object) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise ApiError(
            400,
            "invalid_field",
            f"password: must be a string of {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters",
        )
    return password


# ---------------------------------------------------------------------- who is calling


@dataclass(frozen=True)
class Actor:
    """The author of a request. `id` is what the audit log records."""

    kind: str  # operator | customer | host
    id: str
    customer_id: str | None = None
    host_id: str | None = None
    host_session_id: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"


OPERATOR = Actor(kind="operator", id="operator")
ACTOR_KEY = web.RequestKey("conclave_actor", Actor)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def unauthorized(message: str = "missing or invalid credentials") -> ApiError:
    return ApiError(401, "unauthorized", message)


async def resolve_actor(state: AppState, token: str) -> Actor | None:
    """The actor a bearer token stands for, or None when it stands for nobody."""
    if same_secret(token, state.secrets.operator_key):
        return OPERATOR
    if token.startswith(API_KEY_PREFIX):
        customer = await state.store.get_customer_by_api_key_hash(sha256_hex(token))
        if customer is None:
            return None
        if customer.status != "active":
            raise ApiError(403, "customer_suspended", "this customer is suspended")
        return Actor(kind="customer", id=customer.id, customer_id=customer.id)
    if token.startswith(HOST_TOKEN_PREFIX):
        return await _host_actor(state, sha256_hex(token))
    return None


async def _host_actor(state: AppState, session_id: str) -> Actor | None:
    store = state.store
    session = await store.get_host_session(session_id)
    if session is None:
        return None
    if not session.active:
        reason = session.end_reason or "signed_out"
        raise ApiError(401, "session_ended", f"this sign-in has ended ({reason}); sign in again")
    host = await store.get_host(session.host_id)
    customer = await store.get_customer(host.customer_id) if host else None
    if host is None or customer is None:
        return None
    if host.status != "active" or customer.status != "active":
        raise ApiError(403, "account_suspended", "this account is suspended")
    return Actor(kind="host", id=host.id, customer_id=host.customer_id, host_id=host.id, host_session_id=session_id)


async def authenticate(request: web.Request) -> Actor:
    """The actor of the request (cached on it), or 401 (403 for a suspended account)."""
    cached = request.get(ACTOR_KEY)
    if cached is not None:
        return cached
    token = bearer_token(request)
    if token is None:
        raise unauthorized("this request needs Authorization: Bearer <token>")
    actor = await resolve_actor(get_state(request.app), token)
    if actor is None:
        raise unauthorized("invalid credentials")
    request[ACTOR_KEY] = actor
    return actor


async def require_host(request: web.Request) -> tuple[Actor, Host]:
    """A signed-in host (host session token), and their host record."""
    actor = await authenticate(request)
    if actor.kind != "host" or actor.host_id is None:
        raise ApiError(403, "forbidden", "only a signed-in host may do this")
    host = await get_state(request.app).store.get_host(actor.host_id)
    if host is None:
        raise unauthorized("invalid credentials")
    return actor, host


# ---------------------------------------------------------------------- host sign-in


async def login(state: AppState, email: object, password: object) -> tuple[str, Host]:
    """Sign a host in under the login policy; returns (token, host).

    Wrong email and wrong password give the same 401 after the same work. A suspended
    host (or customer) learns it only with the right password."""
    if not isinstance(email, str) or not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
        raise ApiError(400, "invalid_field", "email and password: must be strings")
    store = state.store
    host = await store.get_host_by_email(email)
    ok = await verify_password(host.password_hash if host else None, password)
    if host is None or not ok:
        raise ApiError(401, "invalid_credentials", "wrong email or password")
    customer = await store.get_customer(host.customer_id)
    if host.status != "active" or customer is None or customer.status != "active":
        raise ApiError(403, "account_suspended", "this account is suspended")
    token, session_id = new_host_token()
    try:
        _, replaced = await store.open_host_session(host.id, session_id, policy=state.cfg.auth.host_login_policy)
    except HostSessionActive:
        raise ApiError(
            409, "host_session_active", "this host is signed in elsewhere; sign out there first"
        ) from None
    if replaced:
        from control.meeting import live

        await live.end_host_sessions(state, host.id, "signed_in_elsewhere")
    return token, host


async def logout(state: AppState, actor: Actor) -> None:
    if actor.host_session_id and actor.host_id:
        await state.store.end_host_session(actor.host_session_id, "signed_out")
        # The signed-out session's meeting sockets go with it (sign-in is personal).
        from control.meeting import live

        await live.end_host_sessions(state, actor.host_id, "signed_out")


# ---------------------------------------------------------------------- limits and audit


def default_limits(state: AppState) -> dict[str, Any]:
    return dataclasses.asdict(state.cfg.limits)


def customer_limits(state: AppState, customer: Customer) -> dict[str, Any]:
    """The customer's limits: config `limits:` with the customer's overrides laid over."""
    limits = default_limits(state)
    limits.update({k: v for k, v in customer.limits.items() if k in limits})
    return limits


def client_address(request: web.Request | None) -> str:
    return (request.remote or "") if request is not None else ""


async def audit(
    state: AppState,
    request: web.Request | None,
    actor: Actor,
    action: str,
    target_kind: str = "",
    target_id: str = "",
    **detail: Any,
) -> None:
    """One audit row: who (actor), what (action, target), when (now), from where."""
    await state.store.append_audit(
        actor_kind=actor.kind,
        actor_id=actor.id,
        action=action,
        target_kind=target_kind,
        target_id=target_id,
        detail=detail,
        source_ip=client_address(request),
    )
