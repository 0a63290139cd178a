"""A webinar in real Chromium against the real server (issue 16 item 3): an attendee's page
never asks for a camera or microphone (getUserMedia is counted from before the page's
own scripts run), receives the host, raises a hand from its button; the host sees the
hand and lets them speak from the people panel; the attendee's page asks for its devices
then and its media reaches the host and another attendee; demoted from the speakers
list, its tracks stop for everyone and its devices are released; the host lets another
attendee speak from the people list."""

from __future__ import annotations

import json

import pytest

from tests.support import browser
from tests.support.browser_fixtures import accounts, chromium  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser.chromium_available(), reason="needs /usr/bin/chromium and playwright"),
    pytest.mark.timeout(240),
]

MEDIA_TIMEOUT = 40.0
# Counts the page's camera/microphone requests; installed before any script of the page.
COUNT_MEDIA_REQUESTS = """
window.__mediaRequests = 0;
const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (constraints) => { window.__mediaRequests += 1; return original(constraints); };
"""


async def open_attendee_page(chromium, base: str, meeting: dict, name: str):
    page = await browser.new_media_page(chromium, base)
    page.conclave_name = name
    await page.add_init_script(COUNT_MEDIA_REQUESTS)
    await page.goto(f"{meeting['join_url']}&name={name}")
    await browser.wait_for(page, "window.conclave && window.conclave.state === 'joined'", what=f"{name} to join")
    return page


async def media_requests(page) -> int:
    return await page.evaluate("window.__mediaRequests")


async def wait_gone(page, pid: str, what: str) -> None:
    await browser.wait_for(page, f"window.conclave.stats().then((s) => !({json.dumps(pid)} in s))", what=what)


async def open_people(page) -> None:
    if await page.get_by_test_id("stage-panel").is_hidden():
        await page.get_by_test_id("toggle-people").click()


async def test_an_attendee_watches_raises_a_hand_speaks_when_promoted_and_stops_when_demoted(
    conclave_server, accounts, chromium
):
    customer = await accounts.customer("Acme")
    host = await accounts.host(customer, "Ada Lovelace")
    meeting = await accounts.meeting(host, title="All hands", waiting_room=False, attendees_publish=False)
    base = conclave_server.base_url

    ada = await browser.open_host_page(chromium, base, host.email, host.password)
    await browser.start_from_dashboard(ada, meeting["meeting_number"])
    ada_id = await browser.participant_id(ada)

    grace = await open_attendee_page(chromium, base, meeting, "Grace")
    linus = await open_attendee_page(chromium, base, meeting, "Linus")
    grace_id = await browser.participant_id(grace)
    for attendee in (grace, linus):
        await browser.wait_media_from(attendee, ada_id, timeout=MEDIA_TIMEOUT)  # the speaker reaches them
        assert await media_requests(attendee) == 0, browser.page_errors(attendee)
        stage = await attendee.evaluate("window.conclave.stage")
        assert stage["mayPublish"] is False and stage["role"] == "attendee"
        assert await attendee.get_by_test_id("toggle-mic").is_hidden()
        assert await attendee.get_by_test_id("toggle-camera").is_hidden()
        assert await attendee.evaluate("window.conclave.publishStats()") == {}
        # The stage shows who speaks, not the audience: the host's tile only.
        await browser.wait_for(attendee, "[...document.querySelectorAll('[data-testid=tile-name]')]"
                                         ".map((e) => e.textContent).join('|') === 'Ada Lovelace'",
                               what="only the host's tile")  # fmt: skip
    await browser.screenshot(grace, "webinar-attendee")

    # Grace raises her hand with her button; the host sees it and lets her speak.
    await grace.get_by_test_id("toggle-hand").click()
    await browser.wait_for(grace, "window.conclave.stage.handRaised", what="Grace's hand up")
    await open_people(ada)
    hand = ada.locator(f"[data-testid=hands-list] [data-testid=hand][data-participant-id='{grace_id}']")
    await hand.wait_for(timeout=20_000)
    assert "Grace" in await hand.inner_text()
    await browser.screenshot(ada, "webinar-host-hands")
    await hand.get_by_test_id("promote").click()

    await browser.wait_for(grace, "window.conclave.stage.mayPublish && window.conclave.stage.role === 'speaker'",
                           what="Grace to be a speaker")
    await browser.wait_for(grace, "window.conclave.publishStats().then((s) => (s.camera || {}).framesEncoded > 0)",
                           timeout=MEDIA_TIMEOUT, what="Grace to publish")  # fmt: skip
    assert await media_requests(grace) >= 1  # asked only now
    assert not await grace.evaluate("window.conclave.stage.handRaised")  # promoted: the hand went down
    for receiver in (ada, linus):
        await browser.wait_media_from(receiver, grace_id, timeout=MEDIA_TIMEOUT)
    assert await media_requests(linus) == 0
    await browser.wait_for(linus, "[...document.querySelectorAll('[data-testid=tile-name]')]"
                                  ".some((e) => e.textContent === 'Grace')", what="Grace's tile on stage")  # fmt: skip

    # Back to the audience from the speakers list: her tracks stop for everyone.
    speaker = ada.locator(f"[data-testid=speakers-list] [data-testid=speaker][data-participant-id='{grace_id}']")
    await speaker.get_by_test_id("demote").click()
    await browser.wait_for(grace, "!window.conclave.stage.mayPublish", what="Grace to be an attendee again")
    for receiver in (ada, linus):
        await wait_gone(receiver, grace_id, f"Grace's tracks to stop for {receiver.conclave_name}")
    await browser.wait_for(grace, "window.conclave.publishStats().then((s) => Object.keys(s).length === 0)",
                           what="Grace's publish connection to close")  # fmt: skip
    assert await grace.get_by_test_id("toggle-camera").is_hidden()
    # Still in the webinar, still receiving the host.
    await browser.wait_media_from(grace, ada_id, timeout=MEDIA_TIMEOUT)
    # The host may also let someone speak who did not raise a hand, from the people list.
    linus_id = await browser.participant_id(linus)
    person = ada.locator(f"[data-testid=people-list] [data-testid=participant][data-participant-id='{linus_id}']")
    await person.get_by_test_id("promote").click()
    await browser.wait_for(linus, "window.conclave.stage.mayPublish", what="Linus to be a speaker")
    await browser.wait_media_from(ada, linus_id, timeout=MEDIA_TIMEOUT)
    for page in (ada, grace, linus):
        await browser.close_page(page)
