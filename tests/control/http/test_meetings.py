"""control.http.meetings over a real server (real worker): meetings as records, created and
read by their host, refused as JSON errors; the join link follows `http.public_url`.
More of the meetings' REST (numbers, limits, who sees what) is in test_accounts.py; JSON
errors in general in test_middleware.py, the pages and /healthz in test_pages.py."""

from __future__ import annotations

from tests.support.http import assert_json_error, fetch, host_headers


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


async def test_join_url_uses_public_url(conclave_server_factory):
    server = await conclave_server_factory(http={"public_url": "https://meet.example.com/"})
    meeting = await server.create_meeting(start=False)
    assert meeting["join_url"].startswith(f"https://meet.example.com/m/{meeting['meeting_number']}?t=")


async def test_last_n_is_set_when_scheduling_and_editing_within_the_customers_cap(conclave_server):
    server = conclave_server
    url = f"{server.base_url}/api/v1/meetings"
    host = await server.new_host(limits={"max_last_n": 6})
    headers = {"Authorization": f"Bearer {host['token']}"}
    status, created, _ = await fetch("POST", url, json={"title": "All hands"}, headers=headers)
    assert status == 201 and created["last_n"] is None  # the default (25 under the cap: 6)
    number = created["meeting_number"]
    status, created, _ = await fetch("POST", url, json={"last_n": 6}, headers=headers)
    assert status == 201 and created["last_n"] == 6
    status, patched, _ = await fetch("PATCH", f"{url}/{number}", json={"last_n": 2}, headers=headers)
    assert status == 200 and patched["last_n"] == 2
    status, got, _ = await fetch("GET", f"{url}/{number}", headers=headers)
    assert got["last_n"] == 2
    for bad in (0, 7, -1, 2.5, "4", True):
        for method, target in (("POST", url), ("PATCH", f"{url}/{number}")):
            status, body, _ = await fetch(method, target, json={"last_n": bad}, headers=headers)
            assert_json_error(status, body, 400, "invalid_field")
            assert "last_n" in body["error"]["message"] and "1 to 6" in body["error"]["message"], body
    status, got, _ = await fetch("GET", f"{url}/{number}", headers=headers)
    assert got["last_n"] == 2  # a refused change changed nothing
