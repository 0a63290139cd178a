"""REST API of control: meetings, JSON errors, web client routes, health (real worker)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from control.app import STATIC_DIR, create_app
from control.permissions import MeetingPolicy
from tests.conftest import conclave_test_config


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


async def test_create_and_get_meeting(conclave_server):
    status, created, _ = await fetch("POST", f"{conclave_server.base_url}/api/v1/meetings", json={"title": "Standup"})
    assert status == 201
    meeting_id = created["meeting_id"]
    assert len(meeting_id) >= 12 and meeting_id.replace("-", "").replace("_", "").isalnum()
    assert created["title"] == "Standup"
    assert created["join_url"] == f"{conclave_server.base_url}/m/{meeting_id}"

    status, got, _ = await fetch("GET", f"{conclave_server.base_url}/api/v1/meetings/{meeting_id}")
    assert status == 200
    assert got == {"meeting_id": meeting_id, "title": "Standup", "participants": 0, "join_url": created["join_url"]}


async def test_meeting_ids_differ(conclave_server):
    ids = {(await conclave_server.create_meeting())["meeting_id"] for _ in range(5)}
    assert len(ids) == 5


async def test_create_meeting_without_body(conclave_server):
    status, created, _ = await fetch("POST", f"{conclave_server.base_url}/api/v1/meetings")
    assert status == 201 and created["title"] == ""


async def test_unknown_meeting_is_json_404(conclave_server):
    for meeting_id in ("nope", "a" * 12, "%2e%2e", "x" * 300):
        status, body, _ = await fetch("GET", f"{conclave_server.base_url}/api/v1/meetings/{meeting_id}")
        assert_json_error(status, body, 404, "not_found")


async def test_unknown_api_route_is_json_404(conclave_server):
    for path in ("/api/", "/api/v2/meetings", "/api/v1/nothing/here"):
        status, body, _ = await fetch("GET", conclave_server.base_url + path)
        assert_json_error(status, body, 404, "not_found")


async def test_wrong_method_is_json_405(conclave_server):
    status, body, _ = await fetch("GET", f"{conclave_server.base_url}/api/v1/meetings")
    assert_json_error(status, body, 405, "method_not_allowed")


async def test_bad_bodies_are_json_400(conclave_server):
    url = f"{conclave_server.base_url}/api/v1/meetings"
    headers = {"Content-Type": "application/json"}
    status, body, _ = await fetch("POST", url, data="{not json", headers=headers)
    assert_json_error(status, body, 400, "bad_json")
    status, body, _ = await fetch("POST", url, data="[1, 2]", headers=headers)
    assert_json_error(status, body, 400, "bad_request")
    status, body, _ = await fetch("POST", url, json={"title": 42})
    assert_json_error(status, body, 400, "invalid_field")
    status, body, _ = await fetch("POST", url, json={"title": "t" * 201})
    assert_json_error(status, body, 400, "invalid_field")


async def test_oversized_body_is_json_413(conclave_server):
    status, body, _ = await fetch("POST", f"{conclave_server.base_url}/api/v1/meetings", data=b"x" * 200_000)
    assert_json_error(status, body, 413, "too_large")


async def test_websocket_of_unknown_meeting_is_json_404(conclave_server):
    status, body, _ = await fetch("GET", f"{conclave_server.base_url}/api/v1/meetings/unknown123456/ws")
    assert_json_error(status, body, 404, "not_found")


async def test_healthz_reports_workers(conclave_server):
    status, body, _ = await fetch("GET", f"{conclave_server.base_url}/healthz")
    assert status == 200
    assert body == {"status": "ok", "workers": {"0": "up"}}


async def test_web_client_routes(conclave_server):
    meeting_id = (await conclave_server.create_meeting())["meeting_id"]
    for path, page in (("/", "index.html"), (f"/m/{meeting_id}", "meeting.html")):
        status, body, content_type = await fetch("GET", conclave_server.base_url + path)
        if (STATIC_DIR / page).is_file():
            assert status == 200 and content_type == "text/html"
            assert body == (STATIC_DIR / page).read_text()
        else:
            assert status == 404
    status, _, _ = await fetch("GET", f"{conclave_server.base_url}/static/../app.py")
    assert status in (403, 404)


class NobodyMayCreate(MeetingPolicy):
    async def may_create_meeting(self, request: web.Request) -> bool:
        return False


async def test_meeting_policy_decides_creation(tmp_path):
    app = create_app(conclave_test_config(tmp_path), policy=NobodyMayCreate())
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        status, body, _ = await fetch("POST", f"http://{host}:{port}/api/v1/meetings", json={})
        assert_json_error(status, body, 403, "forbidden")
    finally:
        await runner.cleanup()


async def test_join_url_uses_public_url(conclave_server_factory):
    server = await conclave_server_factory(http={"public_url": "https://meet.example.com/"})
    meeting = await server.create_meeting()
    assert meeting["join_url"] == f"https://meet.example.com/m/{meeting['meeting_id']}"
