"""A full meeting in real Chromium against the real server (issue 16 item 4): with the
customer's limit of two participants, a third person gets a page of its own saying the
meeting is full and how many it holds, with a "Try again" that lets them in once
someone has left."""

from __future__ import annotations

import pytest

from tests.support import browser
from tests.support.browser_fixtures import accounts, chromium  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser.chromium_available(), reason="needs /usr/bin/chromium and playwright"),
    pytest.mark.timeout(180),
]


async def test_a_full_meeting_shows_its_page_and_lets_in_after_someone_left(conclave_server, accounts, chromium):
    customer = await accounts.customer("Small", limits={"max_participants_per_meeting": 2})
    host = await accounts.host(customer, "Ada Lovelace")
    meeting = await accounts.meeting(host, title="Two at most", waiting_room=False)
    base = conclave_server.base_url

    ada = await browser.open_host_page(chromium, base, host.email, host.password)
    await browser.start_from_dashboard(ada, meeting["meeting_number"])
    grace = await browser.open_meeting_page(chromium, base, meeting, "Grace")

    linus = await browser.open_meeting_page(chromium, base, meeting, "Linus", state=None)
    await linus.get_by_test_id("left-screen").wait_for(state="visible", timeout=20_000)
    screen = await browser.ended_screen(linus)
    assert screen["title"] == "This meeting is full"
    assert "at most 2 participants" in screen["detail"] and "try again" in screen["detail"].lower()
    again = linus.get_by_test_id("rejoin")
    assert await again.is_visible() and (await again.inner_text()).strip() == "Try again"
    assert await linus.evaluate("window.conclave.state") == "idle"  # no socket was opened
    await browser.screenshot(linus, "meeting-full")

    await linus.get_by_test_id("rejoin").click()  # still full: the same page again
    await browser.wait_for(linus, "document.querySelector('[data-testid=ended-title]').textContent"
                                  " === 'This meeting is full' && !document.querySelector('[data-testid=left-screen]').hidden",
                           what="the full page again")  # fmt: skip

    await grace.evaluate("window.conclave.leave()")
    await browser.wait_for(grace, "window.conclave.state === 'left'", what="Grace to leave")
    await again.click()
    await browser.wait_for(linus, "window.conclave.state === 'joined'", what="Linus to get in")
    assert await linus.get_by_test_id("left-screen").is_hidden()
    for page in (ada, grace, linus):
        await browser.close_page(page)
