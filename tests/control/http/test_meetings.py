"""REST API of control: meetings as records, JSON errors, web client routes, health (real
worker). Accounts and their rules: tests/test_accounts_*.py."""

from __future__ import annotations

import aiohttp

from control.http.pages import STATIC_DIR


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


async def test_create_and_get_meeting(conclave_server):
    url = f"{conclave_server.base_url}/api/v1/meetings"
    headers = await host_headers(conclave_server)
    status, created, _ = await fetch("POST", url, json={"title": "Standup"}, headers=headers)
    assert status == 201
    number = created["meeting_number"]
    assert created["title"] == "Standup"
    assert created["join_url"].startswith(f"{conclave_server.base_url}/m/{number}?t=")

    status, got, _ = await fetch("GET", f"{url}/{number}", headers=headers)
    assert status == 200
    assert {k: got[k] for k in ("id", "title", "meeting_number", "status")} == {
        "id": created["id"], "title": "Standup", "meeting_number": number, "status": "scheduled",
    }


async def test_creating_a_meeting_needs_a_host(conclave_server):
    status, body, _ = await fetch("POST", f"{conclave_server.base_url}/api/v1/meetings", json={"title": "x"})
    assert_json_error(status, body, 401, "unauthorized")


async def test_create_meeting_without_body(conclave_server):
    headers = await host_headers(conclave_server)
    status, created, _ = await fetch("POST", f"{conclave_server.base_url}/api/v1/meetings", headers=headers)
    assert status == 201 and created["title"] == ""


async def test_unknown_meeting_is_json_error(conclave_server):
    headers = await host_headers(conclave_server)
    operator = {"Authorization": f"Bearer {conclave_server.operator_key}"}
    for number in ("nope", "a" * 12, "%2e%2e", "x" * 300, "123-4567-8901"):
        status, body, _ = await fetch("GET", f"{conclave_server.base_url}/api/v1/meetings/{number}", headers=operator)
        assert_json_error(status, body, 404, "not_found")
        if number == "%2e%2e":
            continue  # normalized away to /api/v1: no route at all
        # Anyone but the operator cannot tell "no such meeting" from "not yours".
        status, body, _ = await fetch("GET", f"{conclave_server.base_url}/api/v1/meetings/{number}", headers=headers)
        assert_json_error(status, body, 403, "forbidden")


async def test_unknown_api_route_is_json_404(conclave_server):
    for path in ("/api/", "/api/v2/meetings", "/api/v1/nothing/here"):
        status, body, _ = await fetch("GET", conclave_server.base_url + path)
        assert_json_error(status, body, 404, "not_found")


async def test_wrong_method_is_json_405(conclave_server):
    status, body, _ = await fetch("PUT", f"{conclave_server.base_url}/api/v1/meetings")
    assert_json_error(status, body, 405, "method_not_allowed")


async def test_bad_bodies_are_json_400(conclave_server):
    url = f"{conclave_server.base_url}/api/v1/meetings"
    headers = await host_headers(conclave_server)
    json_headers = {**headers, "Content-Type": "application/json"}
    status, body, _ = await fetch("POST", url, data="{not json", headers=json_headers)
    assert_json_error(status, body, 400, "bad_json")
    status, body, _ = await fetch("POST", url, data="[1, 2]", headers=json_headers)
    assert_json_error(status, body, 400, "bad_request")
    status, body, _ = await fetch("POST", url, json={"title": 42}, headers=headers)
    assert_json_error(status, body, 400, "invalid_field")
    status, body, _ = await fetch("POST", url, json={"title": "t" * 201}, headers=headers)
    assert_json_error(status, body, 400, "invalid_field")


async def test_oversized_body_is_json_413(conclave_server):
    headers = await host_headers(conclave_server)
    status, body, _ = await fetch("POST", f"{conclave_server.base_url}/api/v1/meetings", data=b"x" * 200_000,
                                  headers=headers)
    assert_json_error(status, body, 413, "too_large")


async def test_healthz_reports_workers(conclave_server):
    status, body, _ = await fetch("GET", f"{conclave_server.base_url}/healthz")
    assert status == 200
    assert body == {"status": "ok", "workers": {"0": "up"}}


async def test_web_client_routes(conclave_server):
    meeting = await conclave_server.create_meeting(start=False)
    for path, page in (("/", "index.html"), (f"/m/{meeting['meeting_number']}", "meeting.html")):
        status, body, content_type = await fetch("GET", conclave_server.base_url + path)
        if (STATIC_DIR / page).is_file():
            assert status == 200 and content_type == "text/html"
            assert body == (STATIC_DIR / page).read_text()
        else:
            assert status == 404
    status, _, _ = await fetch("GET", f"{conclave_server.base_url}/static/../app.py")
    assert status in (403, 404)


async def test_join_url_uses_public_url(conclave_server_factory):
    server = await conclave_server_factory(http={"public_url": "https://meet.example.com/"})
    meeting = await server.create_meeting(start=False)
    assert meeting["join_url"].startswith(f"https://meet.example.com/m/{meeting['meeting_number']}?t=")
