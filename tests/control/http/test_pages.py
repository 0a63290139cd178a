"""control.http.pages and control.http.health, over a real server: /healthz, /readyz and
the web client's routes (/metrics' token and listener: test_metrics_access.py)."""

from __future__ import annotations

from control.http.pages import STATIC_DIR
from tests.support.http import fetch


async def test_healthz_says_alive_and_readyz_names_every_part(conclave_server):
    status, body, _ = await fetch("GET", f"{conclave_server.base_url}/healthz")
    assert (status, body) == (200, {"status": "ok"})
    services = conclave_server.services
    assert await services.recorder.wait_up(30), "the recorder did not start"
    status, body, _ = await fetch("GET", f"{conclave_server.base_url}/readyz")
    assert status == 200, body
    assert body == {"status": "ok", "failing": [], "checks": {"workers": {"0": "up"}, "store": "ok", "recorder": "up"}}


async def test_readyz_is_503_naming_the_store_when_it_does_not_answer(conclave_server):
    services = conclave_server.services
    assert await services.recorder.wait_up(30), "the recorder did not start"
    await services.store.close()  # what a lost database looks like from here
    try:
        status, body, _ = await fetch("GET", f"{conclave_server.base_url}/readyz")
        assert status == 503, body
        assert body["failing"] == ["store"] and body["checks"]["store"] == "error"
        status, _, _ = await fetch("GET", f"{conclave_server.base_url}/healthz")
        assert status == 200  # alive all the same: a restart would not bring the database back
    finally:
        await services.store.open()


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
