"""REST for accounts (docs/control-plane-reference.md): customers, hosts, host sign-in, webhooks of
a customer, the audit log. Every change made by the operator or a customer admin appends
an audit row. Suspending or deleting a customer or host ends its live meetings and its
hosts' sessions (control.meeting.lifecycle) before anything else."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from config import AuthConfig, LimitsConfig
from config.schema import BadValue
from control import webhooks
from control.accounts.service import (
    Accounts,
    Actor,
    check_password_rules,
    hash_password,
    new_api_key,
)
from control.clock import iso_time
from control.errors import ApiError
from control.http.auth import Auth, client_address, unauthorized
from control.metrics.exporter import LabeledCounter
from control.http.limiter import FailureLimits, RateLimited, SharedWindows
from control.http.middleware import json_error
from control.http.permissions import require_host_admin, require_operator
from control.http.rest import (
    check_outbound_url,
    email_field,
    invalid,
    json_body,
    parse_time,
    text_field,
    url_field,
)
from control.meeting.lifecycle import Lifecycle
from control.meeting.limits import LimitsPolicy
from control.recording.archive import RecordingArchive, Removal
from control.store.base import Conflict, Customer, Host, NotFound, Store

MAX_NAME_CHARS = 200
MAX_AUDIT_ENTRIES = 1000


# ---------------------------------------------------------------------- representations


def customer_json(customer: Customer, limits: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": customer.id,
        "name": customer.name,
        "status": customer.status,
        "limits": limits,
        "limit_overrides": dict(customer.limits),
        "webhook_url": customer.webhook_url,
        "created_at": iso_time(customer.created_at),
    }


def host_json(host: Host) -> dict[str, Any]:
    return {
        "id": host.id,
        "customer_id": host.customer_id,
        "email": host.email,
        "name": host.name,
        "status": host.status,
        "created_at": iso_time(host.created_at),
    }


def limits_field(body: dict[str, Any], name: str = "limits", *, allow_null: bool = False) -> dict[str, Any] | None:
    """Overrides of config `limits:`, each checked by its config rule; null removes one
    (with allow_null)."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(name, "must be an object")
    rules = LimitsConfig.rules()
    checked: dict[str, Any] = {}
    for key, item in value.items():
        if key not in rules:
            raise invalid(f"{name}.{key}", f"unknown limit (known: {', '.join(rules)})")
        if item is None and allow_null:
            checked[key] = None
            continue
        try:
            checked[key] = rules[key].accept(item)
        except BadValue as error:
            raise invalid(f"{name}.{key}", error.problem) from None
    return checked


def deleted_response(removal: Removal) -> web.Response:
    """204, or 202 with `storage_pending` when a storage still holds files of it (retried)."""
    if removal.pending:
        return web.json_response({"storage_pending": removal.storage_pending()}, status=202)
    return web.Response(status=204)


class AccountRoutes:
    def __init__(
        self, *, store: Store, auth: Auth, accounts: Accounts, lifecycle: Lifecycle, limits: LimitsPolicy,
        settings: AuthConfig, archive: RecordingArchive, rate_limited: LabeledCounter,
        allowed_networks: tuple[str, ...] = (), shared_limits: SharedWindows | None = None,
    ) -> None:  # fmt: skip
        self._store = store
        self._auth = auth
        self._accounts = accounts
        self._lifecycle = lifecycle
        self._limits = limits
        self._allowed_networks = allowed_networks  # where webhook URLs may lead besides public addresses
        # Failed sign-ins (argon2 alone makes guessing slow, not impossible).
        self._login_failures = FailureLimits(
            settings.login_attempts_per_email_per_minute, settings.login_attempts_per_address_per_minute,
            names=("login_per_email", "login_per_client"), shared=shared_limits,
        )  # fmt: skip
        self._rate_limited = rate_limited
        self._archive = archive

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/v1/customers", self.create_customer)
        router.add_get("/api/v1/customers", self.list_customers)
        router.add_get("/api/v1/customers/{customer_id}", self.get_customer)
        router.add_patch("/api/v1/customers/{customer_id}", self.patch_customer)
        router.add_delete("/api/v1/customers/{customer_id}", self.delete_customer)
        router.add_post("/api/v1/customers/{customer_id}/suspend", self.suspend_customer)
        router.add_post("/api/v1/customers/{customer_id}/unsuspend", self.unsuspend_customer)
        router.add_post("/api/v1/customers/{customer_id}/api-key", self.rotate_api_key)
        router.add_put("/api/v1/customers/{customer_id}/webhook", self.put_webhook)
        router.add_get("/api/v1/customers/{customer_id}/webhook/deliveries", self.list_deliveries)
        router.add_post("/api/v1/customers/{customer_id}/hosts", self.create_host)
        router.add_get("/api/v1/customers/{customer_id}/hosts", self.list_hosts)
        router.add_get("/api/v1/hosts/{host_id}", self.get_host)
        router.add_patch("/api/v1/hosts/{host_id}", self.patch_host)
        router.add_delete("/api/v1/hosts/{host_id}", self.delete_host)
        router.add_post("/api/v1/hosts/{host_id}/suspend", self.suspend_host)
        router.add_post("/api/v1/hosts/{host_id}/unsuspend", self.unsuspend_host)
        router.add_post("/api/v1/auth/login", self.login)
        router.add_post("/api/v1/auth/logout", self.logout)
        router.add_get("/api/v1/auth/me", self.me)
        router.add_get("/api/v1/audit", self.query_audit)

    def _customer_json(self, customer: Customer) -> dict[str, Any]:
        return customer_json(customer, self._limits.as_json(customer))

    async def _host_for(self, request: web.Request, actor: Actor) -> Host:
        host = await self._store.get_host(request.match_info["host_id"])
        return require_host_admin(actor, host)

    async def _sign_out_host(self, host_id: str, reason: str) -> None:
        """End the host's sign-ins: in the store, then their open connections."""
        await self._store.end_host_sessions_of(host_id, reason)
        await self._lifecycle.end_host_sessions(host_id, reason)

    async def _end_everything_of_host(self, host_id: str, reason: str) -> None:
        """Live meetings first (the clients must hear within 2 s), then the sign-ins."""
        await self._lifecycle.end_meetings_of(reason, host_id=host_id)
        await self._sign_out_host(host_id, reason)

    async def _end_everything_of_customer(self, customer_id: str, reason: str) -> None:
        await self._lifecycle.end_meetings_of(reason, customer_id=customer_id)
        for host in await self._store.list_hosts(customer_id):
            await self._sign_out_host(host.id, reason)

    # ------------------------------------------------------------------ customers (operator)

    async def create_customer(self, request: web.Request) -> web.Response:
        actor = await self._auth.authenticate(request)
        require_operator(actor)
        body = await json_body(request)
        name = text_field(body, "name", required=True, min_chars=1, max_chars=MAX_NAME_CHARS)
        limits = limits_field(body) or {}
        webhook_url = url_field(body, "webhook_url") or ""
        if webhook_url:
            await check_outbound_url(webhook_url, "webhook_url", self._allowed_networks)
        webhook_secret = webhooks.new_secret() if webhook_url else ""
        api_key, api_key_hash = new_api_key()
        customer = await self._store.create_customer(
            name, api_key_hash=api_key_hash, limits=limits, webhook_url=webhook_url, webhook_secret=webhook_secret
        )
        await self._auth.audit(request, actor, "customer.create", "customer", customer.id, name=name, limits=limits)
        payload: dict[str, Any] = {"customer": self._customer_json(customer), "api_key": api_key}
        if webhook_secret:
            payload["webhook_secret"] = webhook_secret
        return web.json_response(payload, status=201)

    async def list_customers(self, request: web.Request) -> web.Response:
        require_operator(await self._auth.authenticate(request))
        customers = await self._store.list_customers()
        return web.json_response({"customers": [self._customer_json(c) for c in customers]})

    async def get_customer(self, request: web.Request) -> web.Response:
        customer = await self._auth.customer_in_path(request, await self._auth.authenticate(request))
        return web.json_response(self._customer_json(customer))

    async def patch_customer(self, request: web.Request) -> web.Response:
        actor = await self._auth.authenticate(request)
        require_operator(actor)
        customer = await self._auth.customer_in_path(request, actor)
        body = await json_body(request)
        changes: dict[str, Any] = {}
        name = text_field(body, "name", min_chars=1, max_chars=MAX_NAME_CHARS)
        if name is not None:
            changes["name"] = name
        overrides = limits_field(body, allow_null=True)
        if overrides is not None:
            merged = {**customer.limits, **overrides}
            changes["limits"] = {k: v for k, v in merged.items() if v is not None}
        customer = await self._store.update_customer(customer.id, **changes)
        if overrides is not None:
            # On what runs now too: live meetings end when meetings are disabled, recording
            # and transcription stop when no longer allowed (control.meeting.lifecycle).
            await self._lifecycle.limits_changed(customer)
        await self._auth.audit(request, actor, "customer.update", "customer", customer.id, **changes)
        return web.json_response(self._customer_json(customer))

    async def delete_customer(self, request: web.Request) -> web.Response:
        actor = await self._auth.authenticate(request)
        require_operator(actor)
        customer = await self._auth.customer_in_path(request, actor)
        await self._end_everything_of_customer(customer.id, "customer_deleted")
        # Their meetings' content as a meeting's deletion takes it (the store's cascade
        # would leave the files in the storage).
        removal = await self._archive.remove_meetings_of(customer_id=customer.id)
        await self._store.delete_customer(customer.id)
        await self._auth.audit(request, actor, "customer.delete", "customer", customer.id, name=customer.name,
                               storage_pending=len(removal.pending))  # fmt: skip
        return deleted_response(removal)

    async def _set_customer_status(self, request: web.Request, status: str) -> web.Response:
        actor = await self._auth.authenticate(request)
        require_operator(actor)
        customer = await self._auth.customer_in_path(request, actor)
        customer = await self._store.update_customer(customer.id, status=status)
        if status == "suspended":
            await self._end_everything_of_customer(customer.id, "customer_suspended")
        action = "customer.suspend" if status == "suspended" else "customer.unsuspend"
        await self._auth.audit(request, actor, action, "customer", customer.id)
        return web.json_response(self._customer_json(customer))

    async def suspend_customer(self, request: web.Request) -> web.Response:
        return await self._set_customer_status(request, "suspended")

    async def unsuspend_customer(self, request: web.Request) -> web.Response:
        return await self._set_customer_status(request, "active")

    async def rotate_api_key(self, request: web.Request) -> web.Response:
        actor = await self._auth.authenticate(request)
        require_operator(actor)
        customer = await self._auth.customer_in_path(request, actor)
        api_key, api_key_hash = new_api_key()
        await self._store.update_customer(customer.id, api_key_hash=api_key_hash)
        await self._auth.audit(request, actor, "customer.rotate_api_key", "customer", customer.id)
        return web.json_response({"api_key": api_key})

    # ------------------------------------------------------------------ webhook of a customer

    async def put_webhook(self, request: web.Request) -> web.Response:
        actor = await self._auth.authenticate(request)
        customer = await self._auth.customer_in_path(request, actor)
        body = await json_body(request)
        if "url" not in body:
            raise invalid("url", "is required (\"\" turns the webhook off)")
        url = url_field(body, "url") or ""
        if url:
            await check_outbound_url(url, "url", self._allowed_networks)
        secret = webhooks.new_secret() if url else ""
        await self._store.update_customer(customer.id, webhook_url=url, webhook_secret=secret)
        await self._auth.audit(request, actor, "customer.set_webhook", "customer", customer.id, url=url)
        return web.json_response({"url": url, "secret": secret or None})

    async def list_deliveries(self, request: web.Request) -> web.Response:
        actor = await self._auth.authenticate(request)
        customer = await self._auth.customer_in_path(request, actor)
        limit = self._query_int(request, "limit", 1, 1000) or 100
        deliveries = await self._store.list_webhook_deliveries(customer.id, limit=limit)
        return web.json_response(
            {
                "deliveries": [
                    {
                        "id": d.id,
                        "event": d.event,
                        "payload": d.payload,
                        "attempt": d.attempt,
                        "status": d.status,
                        "response_code": d.response_code,
                        "error": d.error,
                        "ts": iso_time(d.ts),
                    }
                    for d in deliveries
                ]
            }
        )

    # ------------------------------------------------------------------ hosts (customer admin)

    async def create_host(self, request: web.Request) -> web.Response:
        actor = await self._auth.authenticate(request)
        customer = await self._auth.customer_in_path(request, actor)
        body = await json_body(request)
        email = email_field(body, required=True)
        name = text_field(body, "name", required=True, min_chars=1, max_chars=MAX_NAME_CHARS)
        password = check_password_rules(body.get("password"))
        password_hash = await hash_password(password)
        try:
            host = await self._store.create_host(customer.id, email, name, password_hash)
        except Conflict:
            raise ApiError(409, "email_taken", "a host with this email exists already") from None
        except NotFound:
            raise ApiError(404, "not_found", "no such customer") from None
        await self._auth.audit(request, actor, "host.create", "host", host.id, email=email, customer_id=customer.id)
        return web.json_response(host_json(host), status=201)

    async def list_hosts(self, request: web.Request) -> web.Response:
        customer = await self._auth.customer_in_path(request, await self._auth.authenticate(request))
        hosts = await self._store.list_hosts(customer.id)
        return web.json_response({"hosts": [host_json(h) for h in hosts]})

    async def get_host(self, request: web.Request) -> web.Response:
        host = await self._host_for(request, await self._auth.authenticate(request))
        return web.json_response(host_json(host))

    async def patch_host(self, request: web.Request) -> web.Response:
        actor = await self._auth.authenticate(request)
        host = await self._host_for(request, actor)
        body = await json_body(request)
        changes: dict[str, Any] = {}
        name = text_field(body, "name", min_chars=1, max_chars=MAX_NAME_CHARS)
        if name is not None:
            changes["name"] = name
        email = email_field(body)
        if email is not None:
            changes["email"] = email
        if body.get("password") is not None:
            changes["password_hash"] = await hash_password(check_password_rules(body["password"]))
        try:
            host = await self._store.update_host(host.id, **changes)
        except Conflict:
            raise ApiError(409, "email_taken", "a host with this email exists already") from None
        if "password_hash" in changes:  # whoever knew the old password is signed out
            await self._sign_out_host(host.id, "password_changed")
        detail = {k: v for k, v in changes.items() if k != "password_hash"}
        if "password_hash" in changes:
            detail["password_changed"] = True
        await self._auth.audit(request, actor, "host.update", "host", host.id, **detail)
        return web.json_response(host_json(host))

    async def delete_host(self, request: web.Request) -> web.Response:
        actor = await self._auth.authenticate(request)
        host = await self._host_for(request, actor)
        await self._end_everything_of_host(host.id, "host_deleted")
        removal = await self._archive.remove_meetings_of(host_id=host.id)
        await self._store.delete_host(host.id)
        await self._auth.audit(request, actor, "host.delete", "host", host.id, email=host.email,
                               storage_pending=len(removal.pending))  # fmt: skip
        return deleted_response(removal)

    async def _set_host_status(self, request: web.Request, status: str) -> web.Response:
        actor = await self._auth.authenticate(request)
        host = await self._host_for(request, actor)
        if status == "active" and not actor.is_operator and await self._suspended_by_operator(host):
            raise ApiError(403, "suspended_by_operator", "the operator suspended this host; only the operator may lift it")
        host = await self._store.update_host(host.id, status=status)
        if status == "suspended":
            await self._end_everything_of_host(host.id, "host_suspended")
        action = "host.suspend" if status == "suspended" else "host.unsuspend"
        await self._auth.audit(request, actor, action, "host", host.id)
        return web.json_response(host_json(host))

    async def _suspended_by_operator(self, host: Host) -> bool:
        """Whether the host's suspension (the last one, per the audit log) is the operator's."""
        if host.status != "suspended":
            return False
        [last] = await self._store.query_audit(action="host.suspend", target_id=host.id, limit=1) or [None]
        return last is not None and last.actor_kind == "operator"

    async def suspend_host(self, request: web.Request) -> web.Response:
        return await self._set_host_status(request, "suspended")

    async def unsuspend_host(self, request: web.Request) -> web.Response:
        return await self._set_host_status(request, "active")

    # ------------------------------------------------------------------ host sign-in

    async def login(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        email = body.get("email")
        email_key = email.strip().lower()[:254] if isinstance(email, str) else ""
        try:  # reserved before the password is checked: concurrent guesses count
            attempt = await self._login_failures.reserve(email_key, client_address(request) or "unknown")
        except RateLimited as exc:
            self._rate_limited.inc(exc.limit)
            return json_error(429, "rate_limited", "too many failed sign-ins; try again later",
                              {"Retry-After": str(exc.retry_after_s)})  # fmt: skip
        with attempt:  # given back unless marked failed
            try:
                sign_in = await self._accounts.login(email, body.get("password"))
            except ApiError as exc:
                if exc.code == "invalid_credentials":
                    attempt.failed()
                raise
        if sign_in.replaced:  # the earlier sign-in's meeting sockets go with it
            await self._lifecycle.end_host_sessions(sign_in.host.id, "signed_in_elsewhere")
        return web.json_response({"token": sign_in.token, "host": host_json(sign_in.host)})

    async def logout(self, request: web.Request) -> web.Response:
        actor, _ = await self._auth.require_host(request)
        if await self._accounts.logout(actor) and actor.host_id:
            # The signed-out session's meeting sockets go with it (sign-in is personal).
            await self._lifecycle.end_host_sessions(actor.host_id, "signed_out")
        return web.Response(status=204)

    async def me(self, request: web.Request) -> web.Response:
        _, host = await self._auth.require_host(request)
        customer = await self._store.get_customer(host.customer_id)
        if customer is None:
            raise unauthorized()
        return web.json_response(
            {
                "host": host_json(host),
                "customer": {"id": customer.id, "name": customer.name},
                "limits": self._limits.as_json(customer),
            }
        )

    # ------------------------------------------------------------------ audit (operator)

    def _query_int(self, request: web.Request, name: str, minimum: int, maximum: int) -> int | None:
        text = request.query.get(name)
        if text is None or text == "":
            return None
        try:
            value = int(text)
        except ValueError:
            raise invalid(name, "must be an integer") from None
        if not minimum <= value <= maximum:
            raise invalid(name, f"must be from {minimum} to {maximum}")
        return value

    async def query_audit(self, request: web.Request) -> web.Response:
        require_operator(await self._auth.authenticate(request))
        query = request.query
        since_text = query.get("since") or None
        since = None
        if since_text is not None:
            try:
                since = parse_time(float(since_text), "since")
            except ValueError:
                since = parse_time(since_text, "since")
        entries = await self._store.query_audit(
            actor_kind=query.get("actor_kind") or None,
            action=query.get("action") or None,
            target_id=query.get("target_id") or None,
            since=since,
            limit=self._query_int(request, "limit", 1, MAX_AUDIT_ENTRIES) or 100,
        )
        return web.json_response(
            {
                "entries": [
                    {
                        "id": e.id,
                        "ts": iso_time(e.ts),
                        "actor_kind": e.actor_kind,
                        "actor_id": e.actor_id,
                        "action": e.action,
                        "target_kind": e.target_kind,
                        "target_id": e.target_id,
                        "detail": e.detail,
                        "source_ip": e.source_ip,
                    }
                    for e in entries
                ]
            }
        )
