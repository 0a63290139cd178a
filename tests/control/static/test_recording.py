"""The recording notice in real Chromium against the real server (control + SFU worker +
the recorder process), the customer's storage a local directory.

The host starts and stops recording with the meeting page's button; the others see the
banner (role=alert) with Leave, and hear the spoken notice on the announcement track
(their own WebRTC stats: inbound bytes on that m-line), which is never a tile. Under the
customer's `require` policy a participant's media does not reach the others until they
press Continue, and Leave is recorded in the consent ledger as "left".
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import browser
from tests.support.browser_fixtures import chromium  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser.chromium_available(), reason="needs /usr/bin/chromium and playwright"),
    pytest.mark.timeout(240),
]

MEDIA_TIMEOUT = 40.0
NOTICE_PACKETS = 25  # 0.5 s of the spoken notice (the clip is ~2 s)
BANNER = "[data-testid=recording-banner]"


async def recording_host(server, storage: Path, **limits: Any) -> dict[str, Any]:
    """A host of a new customer with `limits`, whose storage is the directory `storage`."""
    host = await server.new_host(limits={"max_live_meetings_per_host": 10, "max_concurrent_meetings": 10, **limits})
    await server.call("PUT", f"/customers/{host['customer_id']}/storage", token=server.operator_key,
                      json_body={"kind": "local", "root": str(storage)})  # fmt: skip
    return host


async def host_page_in(chromium, server, host: dict[str, Any], meeting: dict[str, Any]):
    """The host's browser: signed in on /host, Start pressed on the meeting's card."""
    page = await browser.open_host_page(chromium, server.base_url, host["email"], host["password"])
    await browser.start_from_dashboard(page, meeting["meeting_number"])
    return page


async def recorder_ready(server) -> None:
    assert await server.services.recorder.wait_up(30), "the recorder did not come up"


async def banner(page) -> dict[str, Any]:
    return await page.evaluate(
        """(selector) => {
            const root = document.querySelector(selector);
            const visible = (id) => { const e = document.querySelector(`[data-testid=${id}]`); return !!e && !e.hidden; };
            return {
                shown: !root.hidden, role: root.getAttribute('role'), mode: root.dataset.mode,
                text: document.querySelector('[data-testid=recording-banner-text]').textContent,
                detail: document.querySelector('[data-testid=recording-banner-detail]').textContent,
                leave: visible('recording-leave'), continue: visible('recording-continue'),
                top: root.getBoundingClientRect().top,
            };
        }""",
        BANNER,
    )


async def wait_banner(page, text: str, timeout: float = 40.0) -> dict[str, Any]:
    await browser.wait_for(
        page, f"!document.querySelector('{BANNER}').hidden && "
              f"document.querySelector('[data-testid=recording-banner-text]').textContent === {json.dumps(text)}",
        timeout, what=f"the banner to say {text!r}")  # fmt: skip
    return await banner(page)


async def wait_notice_heard(page, packets: int = NOTICE_PACKETS, timeout: float = 20.0) -> dict[str, Any]:
    """The page's inbound counters of the announcement track once `packets` arrived."""
    return await browser.wait_for(
        page, f"window.conclave.announcementStats().then((s) => s && s.packetsReceived >= {packets} "
              f"&& s.bytesReceived > 0 && s)",
        timeout, what="the spoken notice on the announcement track")  # fmt: skip


async def packets_from(page, participant_id: str, source: str) -> int:
    entry = await browser.received_from(page, participant_id, source)
    return int((entry or {}).get("packetsReceived") or 0)


async def test_banner_notice_audio_and_stop(conclave_server, chromium, tmp_path):
    server = conclave_server
    storage = tmp_path / "storage"
    owner = await recording_host(server, storage)
    meeting = await server.create_meeting("Recorded standup", host=owner, start=False)
    await recorder_ready(server)
    host = await host_page_in(chromium, server, owner, meeting)
    grace = await browser.open_meeting_page(chromium, server.base_url, meeting, "Grace")
    host_id, grace_id = await browser.participant_id(host), await browser.participant_id(grace)
    await browser.wait_media_from(host, grace_id, timeout=MEDIA_TIMEOUT)

    # Only the host has the buttons; nothing is on yet.
    assert await host.get_by_test_id("toggle-recording").is_visible()
    assert await host.get_by_test_id("toggle-transcription").is_visible()
    assert await grace.get_by_test_id("toggle-recording").is_hidden()
    assert (await banner(grace))["shown"] is False

    await host.get_by_test_id("toggle-recording").click()
    seen = await wait_banner(grace, "This meeting is being recorded")
    assert seen["role"] == "alert" and seen["leave"] and not seen["continue"], seen
    assert seen["detail"].startswith("Started by "), seen
    assert seen["top"] < 120, "the banner sits at the top of the page"
    await browser.screenshot(grace, "recording-banner")
    state = await grace.evaluate("window.conclave.recordingState")
    assert state["recording"] is True and state["transcription"] is False
    assert state["consentPolicy"] == "notify" and state["consentPending"] is False
    await browser.wait_for(host, "document.querySelector('[data-testid=toggle-recording]').dataset.on === 'true'",
                           what="the host's button to say Stop")  # fmt: skip
    assert await host.get_by_test_id("toggle-recording").get_attribute("aria-label") == "Stop recording"
    assert "Everyone in the meeting sees this notice" in (await banner(host))["detail"]
    await browser.screenshot(host, "recording-host")
    await wait_notice_heard(grace)  # everyone present hears the start

    # A page joining while recording: the banner at once, and the notice in-band.
    linus = await browser.open_meeting_page(chromium, server.base_url, meeting, "Linus")
    await wait_banner(linus, "This meeting is being recorded", timeout=20)
    heard = await wait_notice_heard(linus)
    assert heard["trackId"] == "announcer", heard
    # The announcement plays on its own hidden <audio>, never as a tile or a person.
    assert await linus.evaluate("!!document.querySelector('[data-testid=announcement-audio]').srcObject")
    await browser.wait_for(linus, "document.querySelectorAll('[data-testid=tile]').length === 2",
                           what="a tile for each of the two others")  # fmt: skip
    tiles = await linus.evaluate(
        "[...document.querySelectorAll('[data-testid=tile]')].map((t) => t.dataset.participantId)")
    assert sorted(tiles) == sorted([host_id, grace_id])
    assert sorted(p["participant_id"] for p in await linus.evaluate("window.conclave.participants()")) == sorted(
        [host_id, grace_id])
    assert set(await browser.stats(linus)) == {host_id, grace_id}

    # Leave from the banner.
    await linus.get_by_test_id("recording-leave").click()
    await browser.wait_for(linus, "window.conclave.state === 'left'", what="Linus to leave")
    assert "recorded" in await linus.get_by_test_id("ended-detail").inner_text()

    # The host stops: "Recording stopped" for a moment, then nothing.
    await host.get_by_test_id("toggle-recording").click()
    stopped = await wait_banner(grace, "Recording stopped")
    assert not stopped["leave"] and not stopped["continue"]
    await browser.wait_for(grace, f"document.querySelector('{BANNER}').hidden", 15, what="the banner to go")
    assert (await grace.evaluate("window.conclave.recordingState"))["recording"] is False
    for page in (host, grace):
        assert await page.get_by_test_id("error-toast").count() == 0, await page.get_by_test_id(
            "error-toast").all_inner_texts()


async def test_require_holds_media_until_continue_and_leave_is_recorded(conclave_server, chromium, tmp_path):
    server = conclave_server
    owner = await recording_host(server, tmp_path / "storage", consent_policy="require")
    meeting = await server.create_meeting("Consent first", host=owner, start=False)
    await recorder_ready(server)
    host = await host_page_in(chromium, server, owner, meeting)
    grace = await browser.open_meeting_page(chromium, server.base_url, meeting, "Grace")
    grace_id = await browser.participant_id(grace)
    await browser.wait_media_from(host, grace_id, timeout=MEDIA_TIMEOUT)

    await host.get_by_test_id("toggle-recording").click()
    # Grace was there when it started: asked, and held until she answers.
    asked = await wait_banner(grace, "This meeting is being recorded")
    assert asked["continue"] and asked["leave"], asked
    assert "until you choose Continue" in asked["detail"]
    await browser.screenshot(grace, "recording-consent")
    host_banner = await wait_banner(host, "This meeting is being recorded")
    assert not host_banner["continue"], "the host started it: nothing to consent to"

    # A page joining now sends nothing the host could receive until Continue.
    joiner = await browser.open_meeting_page(chromium, server.base_url, meeting, "Joiner")
    joiner_id = await browser.participant_id(joiner)
    assert (await wait_banner(joiner, "This meeting is being recorded", timeout=20))["continue"]
    await wait_notice_heard(joiner)
    await asyncio.sleep(1.0)  # what Grace had in flight when held has drained
    before = {source: await packets_from(host, grace_id, source) for source in ("microphone", "camera")}
    await asyncio.sleep(3.0)
    for source in ("microphone", "camera"):
        assert await packets_from(host, grace_id, source) - before[source] <= 2, f"Grace's {source} got through"
        assert await packets_from(host, joiner_id, source) == 0, f"the joiner's {source} got through"
    sent = await joiner.evaluate("window.conclave.publishStats()")
    assert all(entry["packetsSent"] == 0 for entry in sent.values()), sent  # nothing left the browser

    await joiner.get_by_test_id("recording-continue").click()
    await browser.wait_media_from(host, joiner_id, timeout=MEDIA_TIMEOUT)
    after = await banner(joiner)
    assert after["shown"] and not after["continue"] and after["leave"], after
    assert (await joiner.evaluate("window.conclave.recordingState"))["consentPending"] is False

    # Grace declines: she leaves, and the ledger says so.
    await grace.get_by_test_id("recording-leave").click()
    await browser.wait_for(grace, "window.conclave.state === 'left'", what="Grace to leave")
    host_id = await browser.participant_id(host)

    async def ledger() -> dict[str, str]:
        reply = await server.call("GET", f"/meetings/{meeting['number']}/consent", token=server.operator_key)
        return {row["participant_id"]: row["decision"] for row in reply["entries"]}

    async def settled() -> dict[str, str] | None:
        for _ in range(50):
            decisions = await ledger()
            if decisions.get(grace_id) == "left" and decisions.get(joiner_id) == "continued":
                return decisions
            await asyncio.sleep(0.2)
        return decisions

    assert await settled() == {host_id: "continued", grace_id: "left", joiner_id: "continued"}
    assert await joiner.get_by_test_id("error-toast").count() == 0
