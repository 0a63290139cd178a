"""Plain HTTP calls for the REST tests: any method, any body, the answer as it came.

    status, body, content_type = await fetch("GET", server.base_url + "/healthz")
    assert_json_error(status, body, 404, "not_found")   # the API's one error shape
"""

from __future__ import annotations

import aiohttp


async def fetch(method: str, url: str, **kwargs) -> tuple[int, dict | str, str]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, **kwargs) as response:
            content_type = response.content_type
            body = await response.json() if content_type == "application/json" else await response.text()
            return response.status, body, content_type


def assert_json_error(status: int, body, expected_status: int, code: str) -> None:
    assert status == expected_status, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


async def host_headers(server) -> dict[str, str]:
    return {"Authorization": f"Bearer {(await server.fixture_host())['token']}"}
