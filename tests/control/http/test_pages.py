"""control.http.pages: what is not the API, over a real server: /healthz and the web
client's routes."""

from __future__ import annotations

from control.http.pages import STATIC_DIR
from tests.support.http import fetch


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
