"""The host's "Viewer link" control and the viewers chip of the web client, in Chromium
against the real server: the host makes a WHEP viewer token from the meeting page, a
player (aiortc, tests/support/whep.py) uses it, and the page shows "1 watching" with the
token's label, which goes when the player ends its session. Viewers are not listed as
participants. (The players themselves are proven in tests/control/http/test_whep_players.py.)"""

from __future__ import annotations

import re

import pytest

from tests.support import browser
from tests.support.browser_fixtures import chromium  # noqa: F401
from tests.support.whep import aiortc_offer, whep

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser.chromium_available(), reason="needs /usr/bin/chromium and playwright"),
    pytest.mark.timeout(120),
]


async def test_the_host_makes_a_viewer_link_and_sees_who_watches(conclave_server, chromium):
    server = conclave_server
    host = await server.new_host(limits={"max_live_meetings_per_host": 5})
    meeting = await server.create_meeting(host=host, start=False)
    page = await browser.open_host_page(chromium, server.base_url, host["email"], host["password"])
    pc, offer = await aiortc_offer()
    try:
        await browser.start_from_dashboard(page, meeting["meeting_number"])
        await page.get_by_test_id("viewer-link").click()
        shown = page.locator("#confirm-text").filter(has_text="Bearer token")
        await shown.wait_for(state="visible")  # once the server issued it
        text = await shown.inner_text()
        url = re.search(r"(http://\S+/whep/\d+)", text).group(1)
        token = re.search(r"Bearer token: (\S+)", text).group(1)
        (issued,) = await server.services.store.list_viewer_tokens(meeting["meeting_id"])
        await page.get_by_test_id("confirm-cancel").click()
        assert url == server.base_url + f"/whep/{meeting['number']}"

        participants = await page.evaluate("window.conclave.participants().length")
        status, _, headers = await whep(server, "POST", url[len(server.base_url):], token=token, body=offer)
        assert status == 201
        chip = page.get_by_test_id("viewers-chip")
        await chip.wait_for(state="visible")
        assert await chip.inner_text() == "1 watching" and await chip.get_attribute("title") == issued.label
        assert await page.evaluate("window.conclave.participants().length") == participants  # not a participant
        await browser.screenshot(page, "viewer-link-watching")

        status, _, _ = await whep(server, "DELETE", headers["Location"], token=token)
        assert status == 200
        await chip.wait_for(state="hidden")
    finally:
        await pc.close()
        await page.close()
