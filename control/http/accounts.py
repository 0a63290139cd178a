"""REST for accounts (docs/control-plane.md): customers, hosts, host sign-in, webhooks of
a customer, the audit log. Every change made by the operator or a customer admin appends
an audit row. Suspending or deleting a customer or host ends its live meetings and its
hosts' sessions through `control.meeting.live` before anything else."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from config import LimitsConfig
from config.schema import BadValue
from control import webhooks
from control.accounts import service as accounts
from control.meeting import live
from control.accounts.service import Actor
from control.http.sessions import JoinLimits, RateLimited
from control.errors import ApiError, json_error
from control.http.permissions import require_customer_admin, require_host_admin, require_operator
from control.http.rest import (
    email_field,
    invalid,
    iso_time,
    json_body,
    parse_time,
    text_field,
    url_field,
)
from control.state import AppState, get_state
from control.store.base import Conflict, Customer, Host, NotFound

MAX_NAME_CHARS = 200
MAX_AUDIT_ENTRIES = 1000
# Failed sign-ins per minute, per email and per source address, before 429 (argon2 alone
# makes guessing slow, not impossible).
LOGIN_FAILURES_PER_EMAIL = 10
LOGIN_FAILURES_PER_ADDRESS = 30
LOGIN_LIMITS_KEY = web.AppKey("conclave_login_limits", JoinLimits)


# ---------------------------------------------------------------------- representations


def customer_json(state: AppState, customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "name": customer.name,
        "status": customer.status,
        "limits": accounts.customer_limits(state, customer),
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


async def customer_in_path(request: web.Request, actor: Actor) -> Customer:
    """The customer named in the path, if the actor administers it (403 otherwise)."""
    customer_id = request.match_info["customer_id"]
    require_customer_admin(actor, customer_id)
    customer = await get_state(request.app).store.get_customer(customer_id)
    if customer is None:
        raise ApiError(404, "not_found", "no such customer")
    return customer


async def _host_for(request: web.Request, actor: Actor) -> Host:
    host = await get_state(request.app).store.get_host(request.match_info["host_id"])
    return require_host_admin(actor, host)


async def _sign_out_host(state: AppState, host_id: str, reason: str) -> None:
    """End the host's sign-ins: in the store, then their open connections."""
    await state.store.end_host_sessions_of(host_id, reason)
    await live.end_host_sessions(state, host_id, reason)


async def _end_everything_of_host(state: AppState, host_id: str, reason: str) -> None:
    """Live meetings first (the clients must hear within 2 s), then the sign-ins."""
    await live.end_meetings_of_host(state, host_id, reason)
    await _sign_out_host(state, host_id, reason)


async def _end_everything_of_customer(state: AppState, customer_id: str, reason: str) -> None:
    await live.end_meetings_of_customer(state, customer_id, reason)
    for host in await state.store.list_hosts(customer_id):
        await _sign_out_host(state, host.id, reason)


# ---------------------------------------------------------------------- customers (operator)


async def create_customer(request: web.Request) -> web.Response:
    actor = await accounts.authenticate(request)
    require_operator(actor)
    state = get_state(request.app)
    body = await json_body(request)
    name = text_field(body, "name", required=True, min_chars=1, max_chars=MAX_NAME_CHARS)
    limits = limits_field(body) or {}
    webhook_url = url_field(body, "webhook_url") or ""
    webhook_secret = webhooks.new_secret() if webhook_url else ""
    api_key, api_key_hash = accounts.new_api_key()
    customer = await state.store.create_customer(
        name, api_key_hash=api_key_hash, limits=limits, webhook_url=webhook_url, webhook_secret=webhook_secret
    )
    await accounts.audit(state, request, actor, "customer.create", "customer", customer.id, name=name, limits=limits)
    payload: dict[str, Any] = {"customer": customer_json(state, customer), "api_key": api_key}
    if webhook_secret:
        payload["webhook_secret"] = webhook_secret
    return web.json_response(payload, status=201)


async def list_customers(request: web.Request) -> web.Response:
    require_operator(await accounts.authenticate(request))
    state = get_state(request.app)
    customers = await state.store.list_customers()
    return web.json_response({"customers": [customer_json(state, c) for c in customers]})


async def get_customer(request: web.Request) -> web.Response:
    customer = await customer_in_path(request, await accounts.authenticate(request))
    return web.json_response(customer_json(get_state(request.app), customer))


async def patch_customer(request: web.Request) -> web.Response:
    actor = await accounts.authenticate(request)
    require_operator(actor)
    state = get_state(request.app)
    customer = await customer_in_path(request, actor)
    body = await json_body(request)
    changes: dict[str, Any] = {}
    name = text_field(body, "name", min_chars=1, max_chars=MAX_NAME_CHARS)
    if name is not None:
        changes["name"] = name
    overrides = limits_field(body, allow_null=True)
    if overrides is not None:
        merged = {**customer.limits, **overrides}
        changes["limits"] = {k: v for k, v in merged.items() if v is not None}
    customer = await state.store.update_customer(customer.id, **changes)
    await accounts.audit(state, request, actor, "customer.update", "customer", customer.id, **changes)
    return web.json_response(customer_json(state, customer))


async def delete_customer(request: web.Request) -> web.Response:
    actor = await accounts.authenticate(request)
    require_operator(actor)
    state = get_state(request.app)
    customer = await customer_in_path(request, actor)
    await _end_everything_of_customer(state, customer.id, "customer_deleted")
    await state.store.delete_customer(customer.id)
    await accounts.audit(state, request, actor, "customer.delete", "customer", customer.id, name=customer.name)
    return web.Response(status=204)


async def _set_customer_status(request: web.Request, status: str) -> web.Response:
    actor = await accounts.authenticate(request)
    require_operator(actor)
    state = get_state(request.app)
    customer = await customer_in_path(request, actor)
    customer = await state.store.update_customer(customer.id, status=status)
    if status == "suspended":
        await _end_everything_of_customer(state, customer.id, "customer_suspended")
    action = "customer.suspend" if status == "suspended" else "customer.unsuspend"
    await accounts.audit(state, request, actor, action, "customer", customer.id)
    return web.json_response(customer_json(state, customer))


async def suspend_customer(request: web.Request) -> web.Response:
    return await _set_customer_status(request, "suspended")


async def unsuspend_customer(request: web.Request) -> web.Response:
    return await _set_customer_status(request, "active")


async def rotate_api_key(request: web.Request) -> web.Response:
    actor = await accounts.authenticate(request)
    require_operator(actor)
    state = get_state(request.app)
    customer = await customer_in_path(request, actor)
    api_key, api_key_hash = accounts.new_api_key()
    await state.store.update_customer(customer.id, api_key_hash=api_key_hash)
    await accounts.audit(state, request, actor, "customer.rotate_api_key", "customer", customer.id)
    return web.json_response({"api_key": api_key})


# ---------------------------------------------------------------------- webhook of a customer


async def put_webhook(request: web.Request) -> web.Response:
    actor = await accounts.authenticate(request)
    state = get_state(request.app)
    customer = await customer_in_path(request, actor)
    body = await json_body(request)
    if "url" not in body:
        raise invalid("url", "is required (\"\" turns the webhook off)")
    url = url_field(body, "url") or ""
    secret = webhooks.new_secret() if url else ""
    await state.store.update_customer(customer.id, webhook_url=url, webhook_secret=secret)
    await accounts.audit(state, request, actor, "customer.set_webhook", "customer", customer.id, url=url)
    return web.json_response({"url": url, "secret": secret or None})


async def list_deliveries(request: web.Request) -> web.Response:
    actor = await accounts.authenticate(request)
    customer = await customer_in_path(request, actor)
    limit = _query_int(request, "limit", 1, 1000) or 100
    deliveries = await get_state(request.app).store.list_webhook_deliveries(customer.id, limit=limit)
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


# ---------------------------------------------------------------------- hosts (customer admin)


async def create_host(request: web.Request) -> web.Response:
    actor = await accounts.authenticate(request)
    state = get_state(request.app)
    customer = await customer_in_path(request, actor)
    body = await json_body(request)
    email = email_field(body, required=True)
    name = text_field(body, "name", required=True, min_chars=1, max_chars=MAX_NAME_CHARS)
    password = accounts.check_password_rules(body.get("password"))
    password_hash = await accounts.hash_password(password)
    try:
        host = await state.store.create_host(customer.id, email, name, password_hash)
    except Conflict:
        raise ApiError(409, "email_taken", "a host with this email exists already") from None
    except NotFound:
        raise ApiError(404, "not_found", "no such customer") from None
    await accounts.audit(state, request, actor, "host.create", "host", host.id, email=email, customer_id=customer.id)
    return web.json_response(host_json(host), status=201)


async def list_hosts(request: web.Request) -> web.Response:
    customer = await customer_in_path(request, await accounts.authenticate(request))
    hosts = await get_state(request.app).store.list_hosts(customer.id)
    return web.json_response({"hosts": [host_json(h) for h in hosts]})


async def get_host(request: web.Request) -> web.Response:
    host = await _host_for(request, await accounts.authenticate(request))
    return web.json_response(host_json(host))


async def patch_host(request: web.Request) -> web.Response:
    actor = await accounts.authenticate(request)
    state = get_state(request.app)
    host = await _host_for(request, actor)
    body = await json_body(request)
    changes: dict[str, Any] = {}
    name = text_field(body, "name", min_chars=1, max_chars=MAX_NAME_CHARS)
    if name is not None:
        changes["name"] = name
    email = email_field(body)
    if email is not None:
        changes["email"] = email
    if body.get("password") is not None:
        changes["password_hash"] = await accounts.hash_password(accounts.check_password_rules(body["password"]))
    try:
        host = await state.store.update_host(host.id, **changes)
    except Conflict:
        raise ApiError(409, "email_taken", "a host with this email exists already") from None
    if "password_hash" in changes:  # whoever knew the old password is signed out
        await _sign_out_host(state, host.id, "password_changed")
    detail = {k: v for k, v in changes.items() if k != "password_hash"}
    if "password_hash" in changes:
        detail["password_changed"] = True
    await accounts.audit(state, request, actor, "host.update", "host", host.id, **detail)
    return web.json_response(host_json(host))


async def delete_host(request: web.Request) -> web.Response:
    actor = await accounts.authenticate(request)
    state = get_state(request.app)
    host = await _host_for(request, actor)
    await _end_everything_of_host(state, host.id, "host_deleted")
    await state.store.delete_host(host.id)
    await accounts.audit(state, request, actor, "host.delete", "host", host.id, email=host.email)
    return web.Response(status=204)


async def _set_host_status(request: web.Request, status: str) -> web.Response:
    actor = await accounts.authenticate(request)
    state = get_state(request.app)
    host = await _host_for(request, actor)
    host = await state.store.update_host(host.id, status=status)
    if status == "suspended":
        await _end_everything_of_host(state, host.id, "host_suspended")
    action = "host.suspend" if status == "suspended" else "host.unsuspend"
    await accounts.audit(state, request, actor, action, "host", host.id)
    return web.json_response(host_json(host))


async def suspend_host(request: web.Request) -> web.Response:
    return await _set_host_status(request, "suspended")


async def unsuspend_host(request: web.Request) -> web.Response:
    return await _set_host_status(request, "active")


# ---------------------------------------------------------------------- host sign-in


async def login(request: web.Request) -> web.Response:
    state = get_state(request.app)
    limits = request.app[LOGIN_LIMITS_KEY]
    body = await json_body(request)
    email = body.get("email")
    email_key = email.strip().lower()[:254] if isinstance(email, str) else ""
    address = accounts.client_address(request) or "unknown"
    try:
        limits.check(email_key, address)
    except RateLimited as exc:
        return json_error(429, "rate_limited", "too many failed sign-ins; try again later",
                          {"Retry-After": str(exc.retry_after_s)})  # fmt: skip
    try:
        token, host = await accounts.login(state, email, body.get("password"))
    except ApiError as exc:
        if exc.code == "invalid_credentials":
            limits.failed(email_key, address)
        raise
    return web.json_response({"token": token, "host": host_json(host)})


async def logout(request: web.Request) -> web.Response:
    actor, _ = await accounts.require_host(request)
    await accounts.logout(get_state(request.app), actor)
    return web.Response(status=204)


async def me(request: web.Request) -> web.Response:
    _, host = await accounts.require_host(request)
    state = get_state(request.app)
    customer = await state.store.get_customer(host.customer_id)
    if customer is None:
        raise accounts.unauthorized()
    return web.json_response(
        {
            "host": host_json(host),
            "customer": {"id": customer.id, "name": customer.name},
            "limits": accounts.customer_limits(state, customer),
        }
    )


# ---------------------------------------------------------------------- audit (operator)


def _query_int(request: web.Request, name: str, minimum: int, maximum: int) -> int | None:
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


async def query_audit(request: web.Request) -> web.Response:
    require_operator(await accounts.authenticate(request))
    query = request.query
    since_text = query.get("since") or None
    since = None
    if since_text is not None:
        try:
            since = parse_time(float(since_text), "since")
        except ValueError:
            since = parse_time(since_text, "since")
    entries = await get_state(request.app).store.query_audit(
        actor_kind=query.get("actor_kind") or None,
        action=query.get("action") or None,
        target_id=query.get("target_id") or None,
        since=since,
        limit=_query_int(request, "limit", 1, MAX_AUDIT_ENTRIES) or 100,
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


def register(app: web.Application) -> None:
    app[LOGIN_LIMITS_KEY] = JoinLimits(LOGIN_FAILURES_PER_EMAIL, LOGIN_FAILURES_PER_ADDRESS)
    add = app.router
    add.add_post("/api/v1/customers", create_customer)
    add.add_get("/api/v1/customers", list_customers)
    add.add_get("/api/v1/customers/{customer_id}", get_customer)
    add.add_patch("/api/v1/customers/{customer_id}", patch_customer)
    add.add_delete("/api/v1/customers/{customer_id}", delete_customer)
    add.add_post("/api/v1/customers/{customer_id}/suspend", suspend_customer)
    add.add_post("/api/v1/customers/{customer_id}/unsuspend", unsuspend_customer)
    add.add_post("/api/v1/customers/{customer_id}/api-key", rotate_api_key)
    add.add_put("/api/v1/customers/{customer_id}/webhook", put_webhook)
    add.add_get("/api/v1/customers/{customer_id}/webhook/deliveries", list_deliveries)
    add.add_post("/api/v1/customers/{customer_id}/hosts", create_host)
    add.add_get("/api/v1/customers/{customer_id}/hosts", list_hosts)
    add.add_get("/api/v1/hosts/{host_id}", get_host)
    add.add_patch("/api/v1/hosts/{host_id}", patch_host)
    add.add_delete("/api/v1/hosts/{host_id}", delete_host)
    add.add_post("/api/v1/hosts/{host_id}/suspend", suspend_host)
    add.add_post("/api/v1/hosts/{host_id}/unsuspend", unsuspend_host)
    add.add_post("/api/v1/auth/login", login)
    add.add_post("/api/v1/auth/logout", logout)
    add.add_get("/api/v1/auth/me", me)
    add.add_get("/api/v1/audit", query_audit)
