"""Helpers for the accounts tests: a tiny REST client and a few ready-made accounts.

    api = Api(server.base_url)
    status, body = await api.call("POST", "/customers", token=operator_key, json={...})
    acme = await make_customer(api, operator_key, "Acme")      # .id, .api_key
    ann = await make_host(api, acme, "ann@acme.example")        # .id, .token (signed in)
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp

PASSWORD = "correct horse battery"


class Api:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/") + "/api/v1"

    async def call(
        self, method: str, path: str, *, token: str | None = None, json: Any = None, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with aiohttp.ClientSession() as session:
            async with session.request(method, self.base + path, json=json, headers=headers, **kwargs) as response:
                if response.content_type == "application/json":
                    return response.status, await response.json()
                return response.status, await response.text()

    async def ok(self, method: str, path: str, *, token: str | None = None, json: Any = None, status: int = 200) -> Any:
        got, body = await self.call(method, path, token=token, json=json)
        assert got == status, f"{method} {path}: {got} {body}"
        return body


@dataclass
class CustomerAccount:
    id: str
    api_key: str


@dataclass
class HostAccount:
    id: str
    customer_id: str
    email: str
    token: str


async def make_customer(api: Api, operator_key: str, name: str = "Acme", **fields: Any) -> CustomerAccount:
    created = await api.ok("POST", "/customers", token=operator_key, json={"name": name, **fields}, status=201)
    return CustomerAccount(created["customer"]["id"], created["api_key"])


async def make_host(api: Api, customer: CustomerAccount, email: str | None = None) -> HostAccount:
    email = email or f"host-{secrets.token_hex(4)}@example.com"
    host = await api.ok(
        "POST",
        f"/customers/{customer.id}/hosts",
        token=customer.api_key,
        json={"email": email, "name": "Host", "password": PASSWORD},
        status=201,
    )
    login = await api.ok("POST", "/auth/login", json={"email": email, "password": PASSWORD})
    return HostAccount(host["id"], customer.id, email, login["token"])


async def make_meeting(api: Api, host: HostAccount, **fields: Any) -> dict[str, Any]:
    return await api.ok("POST", "/meetings", token=host.token, json={"title": "Standup", **fields}, status=201)


def assert_error(status: int, body: Any, expected_status: int | tuple[int, ...], code: str | None = None) -> None:
    expected = expected_status if isinstance(expected_status, tuple) else (expected_status,)
    assert status in expected, (status, body)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
