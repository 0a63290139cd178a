"""WHIP ingest seen in Chromium (issue 12, item 4): GStreamer's webrtcbin publishes into a
meeting and a Chromium participant on the meeting page decodes its video and plays its
audio, until the session is deleted; and a browser WHIP client (a few lines of JS on a
page of another origin: CORS) publishes Chromium's fake camera and microphone the same
way and ends with DELETE."""

from __future__ import annotations

import json
import shutil

import pytest
from aiohttp import web

from tests.control.http.test_ingest import run_verbatim, stop_group
from tests.support import browser
from tests.support.browser_fixtures import chromium  # noqa: F401  (fixture)
from tests.support.ingest import GstWhipPublisher, create_ingest, gstreamer_available

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

# The whole browser WHIP client (RFC 9725): offer, POST, answer; DELETE to end.
WHIP_PAGE = """<!doctype html><meta charset="utf-8"><title>WHIP</title>
<script>
async function whipPublish(url, token) {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 320, height: 240}});
  const pc = new RTCPeerConnection();
  for (const track of stream.getTracks()) pc.addTransceiver(track, {direction: "sendonly"});
  await pc.setLocalDescription(await pc.createOffer());
  const response = await fetch(url, {method: "POST", body: pc.localDescription.sdp,
    headers: {"Content-Type": "application/sdp", "Authorization": "Bearer " + token}});
  if (response.status !== 201) throw new Error("WHIP POST: " + response.status + " " + await response.text());
  const location = new URL(response.headers.get("Location"), url).href;
  await pc.setRemoteDescription({type: "answer", sdp: await response.text()});
  window.whip = {pc, location, token};
  return location;
}
async function whipStop() {
  const response = await fetch(window.whip.location, {method: "DELETE",
    headers: {"Authorization": "Bearer " + window.whip.token}});
  window.whip.pc.close();
  return response.status;
}
</script>"""


async def serve_whip_page() -> web.AppRunner:
    """The client page on a port of its own (another origin than the server's)."""
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=WHIP_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def wait_gone(page, participant_id: str) -> None:
    await browser.wait_for(page, f"!window.conclave.participants().some(p => p.participant_id === "
                                 f"{json.dumps(participant_id)})", 15, what="the ingest gone")  # fmt: skip


@pytest.mark.skipif(not gstreamer_available(), reason="needs GStreamer's webrtcbin and python3-gi")
async def test_chromium_decodes_what_webrtcbin_publishes(conclave_server, chromium):  # noqa: F811
    meeting = await conclave_server.create_meeting()
    made = await create_ingest(conclave_server, meeting, "whip", "GStreamer")
    page = await browser.open_meeting_page(chromium, conclave_server.base_url, meeting, "Viewer")
    publisher = await GstWhipPublisher(made["whip_url"], made["token"]).start()
    try:
        answered = await publisher.answered()
        session_id = answered["location"].rsplit("/", 1)[1]
        flowing = await browser.wait_media_from(page, session_id, ("camera", "microphone"), timeout=40)
        assert flowing["camera"]["framesDecoded"] > 0 and flowing["microphone"]["packetsReceived"] > 0
        names = {p["participant_id"]: p["name"] for p in await page.evaluate("window.conclave.participants()")}
        assert names[session_id] == "GStreamer"
        await browser.screenshot(page, "ingest-whip-gstreamer")
        status = await page.evaluate(
            "async ([url, token]) => (await fetch(url, {method: 'DELETE', headers: {Authorization: 'Bearer ' + token}}))"
            ".status", [conclave_server.base_url + answered["location"], made["token"]])  # fmt: skip
        assert status == 200
        await wait_gone(page, session_id)
    finally:
        await publisher.stop()
        await browser.close_page(page)


async def test_a_browser_whip_client_publishes_into_the_meeting(conclave_server, chromium):  # noqa: F811
    meeting = await conclave_server.create_meeting()
    made = await create_ingest(conclave_server, meeting, "whip", "Browser encoder")
    viewer = await browser.open_meeting_page(chromium, conclave_server.base_url, meeting, "Viewer")
    client_site = await serve_whip_page()
    client = await browser.new_media_page(chromium, conclave_server.base_url)
    try:
        host, port = client_site.addresses[0][:2]
        await client.goto(f"http://{host}:{port}/")
        location = await client.evaluate("([url, token]) => whipPublish(url, token)", [made["whip_url"], made["token"]])
        session_id = location.rsplit("/", 1)[1]
        await browser.wait_media_from(viewer, session_id, ("camera", "microphone"), timeout=40)
        assert await client.evaluate("whipStop()") == 200
        await wait_gone(viewer, session_id)
    finally:
        await browser.close_page(client)
        await browser.close_page(viewer)
        await client_site.cleanup()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
async def test_the_hosts_ingest_panel_makes_shows_and_revokes(conclave_server, chromium, tmp_path):  # noqa: F811
    """The host makes an RTP ingest in the people panel, pastes the command it shows, a
    participant sees the stream; Revoke takes it out. A WHIP one shows its URL and token."""
    server = conclave_server
    owner = await server.new_host()
    meeting = await server.create_meeting(host=owner, start=False)
    host = await browser.open_host_page(chromium, server.base_url, owner["email"], owner["password"])
    await browser.start_from_dashboard(host, meeting["meeting_number"])
    viewer = await browser.open_meeting_page(chromium, server.base_url, meeting, "Viewer")
    ffmpeg = None
    try:
        if await host.get_by_test_id("ingest-panel").is_hidden():
            await host.get_by_test_id("toggle-people").click()
        await host.get_by_test_id("ingest-name").fill("Panel camera")
        await host.get_by_test_id("ingest-kind").select_option("rtp")
        await host.get_by_test_id("ingest-create").click()
        item = host.get_by_test_id("ingest-item")
        await item.wait_for(timeout=15_000)
        assert "Panel camera" in await item.inner_text()
        shown = await host.get_by_test_id("ingest-secret").inner_text()
        command = shown[shown.index("ffmpeg -nostdin"):shown.index("\n\nGStreamer")]
        ffmpeg = await run_verbatim(command, tmp_path)
        ingests = await server.call("GET", f"/meetings/{meeting['number']}/ingests", token=server.operator_key)
        pid = ingests["ingests"][0]["participant_id"]
        await browser.wait_media_from(viewer, pid, ("camera", "microphone"), timeout=40)
        await browser.screenshot(host, "ingest-panel")

        await host.get_by_test_id("ingest-revoke").click()
        await wait_gone(viewer, pid)
        await host.get_by_test_id("ingest-item").wait_for(state="detached", timeout=10_000)

        await host.get_by_test_id("ingest-name").fill("OBS")
        await host.get_by_test_id("ingest-kind").select_option("whip")
        await host.get_by_test_id("ingest-create").click()
        await host.get_by_test_id("ingest-item").wait_for(timeout=15_000)
        shown = await host.get_by_test_id("ingest-secret").inner_text()
        assert f"WHIP URL: {server.base_url}/whip/{meeting['meeting_number']}" in shown and "Bearer token: ey" in shown
    finally:
        if ffmpeg is not None:
            stop_group(ffmpeg)
        await browser.close_page(viewer)
        await browser.close_page(host)
