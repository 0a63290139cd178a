"""Accounts: passwords, API keys, host sessions, and who is calling.

Credentials (`Authorization: Bearer <token>`, docs/control-plane-reference.md):
- operator: the operator key (config or DATA_DIR/operator-key), compared in constant time;
- customer admin: `ck_...`, stored as its SHA-256 (a key is 256 random bits, so a plain
  hash is as strong as a slow one, and lookup by hash leaks nothing useful);
- host: `hs_...` from `POST /auth/login`, stored as its SHA-256 (it is the session id).
Join JWTs of participants are not resolved here: `control.accounts.tokens` verifies them where a
participant may act. Any other bearer stands for nobody (the HTTP side answers 401).

A host sign-in ends when unused for `auth.host_session_idle_s` or `auth.host_session_max_s`
after it began (reason `expired`); signing out, a new password and (policy `replace`) a new
sign-in end it too. Signing in under the `replace` policy and signing out end host sessions; the caller learns
which (`SignIn.replaced`, `logout`'s result) and closes the sockets opened under them
(control.meeting.lifecycle): accounts know nothing of meetings.

Passwords are hashed with argon2id (argon2-cffi) on a worker thread, at most a few at a
time, so a burst of logins neither blocks the event loop nor exhausts memory. A login with
an unknown email verifies against a dummy hash, so both cost the same.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from control.errors import ApiError
from control.store.base import Host, HostSession, HostSessionActive, Store

log = logging.getLogger(__name__)

API_KEY_PREFIX = "ck_"
HOST_TOKEN_PREFIX = "hs_"
MAX_PASSWORD_CHARS = 1024
MIN_PASSWORD_CHARS = 8
HOST_SESSION_TOUCH_S = 60.0  # how often a sign-in's last use is written to the store

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


@dataclass(frozen=True)
class SignIn:
    token: str  # the host session token, shown once
    host: Host
    replaced: bool  # an earlier sign-in of this host was ended (login policy `replace`)


class Accounts:
    """Who is calling, host sign-in and sign-out, and the audit log."""

    def __init__(
        self, store: Store, operator_key: str, host_login_policy: str, *, idle_s: float = 12 * 3600,
        max_s: float = 7 * 24 * 3600, clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self._store = store
        self._operator_key = operator_key
        self._login_policy = host_login_policy
        self._idle_s = idle_s
        self._max_s = max_s
        self._clock = clock

    async def resolve_actor(self, token: str) -> Actor | None:
        """The actor a bearer token stands for, or None when it stands for nobody."""
        if same_secret(token, self._operator_key):
            return OPERATOR
        if token.startswith(API_KEY_PREFIX):
            customer = await self._store.get_customer_by_api_key_hash(sha256_hex(token))
            if customer is None:
                return None
            if customer.status != "active":
                raise ApiError(403, "customer_suspended", "this customer is suspended")
            return Actor(kind="customer", id=customer.id, customer_id=customer.id)
        if token.startswith(HOST_TOKEN_PREFIX):
            return await self._host_actor(sha256_hex(token))
        return None

    async def host_session_in_use(self, session_id: str) -> HostSession | None:
        """The host sign-in `session_id` if it is active and has not expired (idle longer
        than `auth.host_session_idle_s`, or older than `auth.host_session_max_s`: then it is
        ended in the store, reason `expired`); counts as a use of it."""
        session = await self._store.get_host_session(session_id)
        if session is None or not session.active:
            return session
        now = self._clock()
        last = session.last_used_at if session.last_used_at is not None else session.created_at
        if now - session.created_at > self._max_s or now - last > self._idle_s:
            await self._store.end_host_session(session_id, "expired")
            return await self._store.get_host_session(session_id)
        # Stored (so a restart or another node knows), but not on every request: idle
        # expiry is then exact to HOST_SESSION_TOUCH_S.
        if now - last >= HOST_SESSION_TOUCH_S:
            await self._store.touch_host_session(session_id, now)
        return session

    async def _host_actor(self, session_id: str) -> Actor | None:
        store = self._store
        session = await self.host_session_in_use(session_id)
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

    async def login(self, email: object, password: object) -> SignIn:
        """Sign a host in under the login policy.

        Wrong email and wrong password give the same 401 after the same work. A suspended
        host (or customer) learns it only with the right password."""
        if not isinstance(email, str) or not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
            raise ApiError(400, "invalid_field", "email and password: must be strings")
        store = self._store
        host = await store.get_host_by_email(email)
        ok = await verify_password(host.password_hash if host else None, password)
        if host is None or not ok:
            raise ApiError(401, "invalid_credentials", "wrong email or password")
        customer = await store.get_customer(host.customer_id)
        if host.status != "active" or customer is None or customer.status != "active":
            raise ApiError(403, "account_suspended", "this account is suspended")
        token, session_id = new_host_token()
        try:
            _, replaced = await store.open_host_session(host.id, session_id, policy=self._login_policy)
        except HostSessionActive:
            raise ApiError(
                409, "host_session_active", "this host is signed in elsewhere; sign out there first"
            ) from None
        return SignIn(token, host, bool(replaced))

    async def logout(self, actor: Actor) -> bool:
        """End the actor's host sign-in; True when one was ended."""
        if not (actor.host_session_id and actor.host_id):
            return False
        await self._store.end_host_session(actor.host_session_id, "signed_out")
        return True

    async def audit(
        self, actor: Actor, action: str, target_kind: str = "", target_id: str = "", *, source_ip: str = "",
        **detail: Any,
    ) -> None:  # fmt: skip
        """One audit row: who (actor), what (action, target), when (now), from where."""
        await self._store.append_audit(
            actor_kind=actor.kind,
            actor_id=actor.id,
            action=action,
            target_kind=target_kind,
            target_id=target_id,
            detail=detail,
            source_ip=source_ip,
        )
