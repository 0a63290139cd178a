"""control.http.middleware: every error of the REST API is JSON (unknown routes, wrong
methods, bad and oversized bodies), over a real server."""

from __future__ import annotations

from tests.support.http import assert_json_error, fetch, host_headers


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
