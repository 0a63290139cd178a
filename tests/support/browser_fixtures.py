"""Fixtures for the browser tests: Chromium, and accounts made through the REST API.

Import them into a test module with
    from tests.support.browser_fixtures import accounts, chromium  # noqa: F401

`accounts` works against `conclave_server` (with the operator key the conftest gives it):
`customer()`, `host(customer)` (a host with a known password,
already signed in once through REST), `meeting(host, **fields)`, `suspend(customer)`.
Nothing here drives a page; tests/support/browser.py does that.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.support import browser

PASSWORD = "a long enough password 42"


@pytest.fixture
async def chromium_autoplay():
    """Chromium with fake devices, allowed to run a page's AudioContext without a click
    (tests that listen to the decoded audio in the page)."""
    if not browser.chromium_available():
        pytest.skip("needs /usr/bin/chromium and playwright")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=browser.CHROMIUM, headless=True,
            args=[*browser.CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"],
        )  # fmt: skip
        try:
            yield instance
        finally:
            await instance.close()


@pytest.fixture
async def chromium():
    if not browser.chromium_available():
        pytest.skip("needs /usr/bin/chromium and playwright")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await browser.launch_chromium(playwright)
        try:
            yield instance
        finally:
            await instance.close()


@dataclass
class Customer:
    id: str
    api_key: str


@dataclass
class Host:
    id: str
    customer_id: str
    email: str
    name: str
    password: str
    token: str  # the REST sign-in; a later sign-in (the browser's) ends it


class Accounts:
    """REST calls a test needs to set the stage; every call asserts its status."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.base = server.base_url.rstrip("/") + "/api/v1"

    @property
    def operator_key(self) -> str:
        return self.server.operator_key

    async def call(self, method: str, path: str, *, token: str | None = None, json: Any = None,
                   status: int | tuple[int, ...] = 200) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as session:
            async with session.request(method, self.base + path, json=json, headers=headers) as response:
                body = await response.json() if response.content_type == "application/json" else await response.text()
                expected = status if isinstance(status, tuple) else (status,)
                assert response.status in expected, f"{method} {path}: {response.status} {body}"
                return body

    async def customer(self, name: str = "Acme", **fields: Any) -> Customer:
        created = await self.call("POST", "/customers", token=self.operator_key, json={"name": name, **fields},
                                  status=201)
        return Customer(created["customer"]["id"], created["api_key"])

    async def host(self, customer: Customer, name: str = "Ada Lovelace", email: str | None = None) -> Host:
        email = email or f"{name.split()[0].lower()}-{secrets.token_hex(3)}@example.com"
        made = await self.call("POST", f"/customers/{customer.id}/hosts", token=customer.api_key,
                               json={"email": email, "name": name, "password": PASSWORD}, status=201)
        login = await self.call("POST", "/auth/login", json={"email": email, "password": PASSWORD})
        return Host(made["id"], customer.id, email, name, PASSWORD, login["token"])

    async def sign_in(self, host: Host) -> str:
        """A fresh REST sign-in (ends any other sign-in of the host, a browser's included)."""
        login = await self.call("POST", "/auth/login", json={"email": host.email, "password": host.password})
        host.token = login["token"]
        return host.token

    async def meeting(self, host: Host, **fields: Any) -> dict[str, Any]:
        """POST /meetings as the host (its REST sign-in); returns the meeting's JSON."""
        return await self.call("POST", "/meetings", token=host.token, json={"title": "Standup", **fields},
                               status=201)

    async def suspend(self, customer: Customer) -> Any:
        return await self.call("POST", f"/customers/{customer.id}/suspend", token=self.operator_key)


@pytest.fixture
def accounts(conclave_server) -> Accounts:
    return Accounts(conclave_server)
