"""The waiting room and the operator's suspension, in real Chromium against the real server.

"Media flows" means the receiving page's own WebRTC stats rise (frames decoded for video,
packets for audio); "nothing flows" means no inbound-rtp bytes at all on the waiting page
and no track of the waiting participant anywhere else, sampled while everyone else's media
keeps flowing.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from tests.support import browser
from tests.support.browser_fixtures import accounts, chromium  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser.chromium_available(), reason="needs /usr/bin/chromium and playwright"),
    pytest.mark.timeout(240),
]

MEDIA_TIMEOUT = 40.0
SAMPLES = 6  # looks at the waiting participant, half a second apart


async def received_anything_from(page, pid: str) -> bool:
    """True if the page has (or had) a track of `pid` in its subscribe connection."""
    return await page.evaluate(f"window.conclave.stats().then((s) => {json.dumps(pid)} in s)")


async def test_waiting_participant_gets_no_media_and_sends_none_until_admitted(conclave_server, accounts, chromium):
    customer = await accounts.customer("Acme")
    host = await accounts.host(customer, "Ada Lovelace")
    meeting = await accounts.meeting(host, title="Waiting room check", waiting_room=True)
    number = meeting["meeting_number"]
    base = conclave_server.base_url

    ada = await browser.open_host_page(chromium, base, host.email, host.password)
    await browser.start_from_dashboard(ada, number)
    ada_id = await browser.participant_id(ada)

    # Grace waits, the host lets her in through the list, and media flows between them.
    grace = await browser.open_meeting_page(chromium, base, meeting, "Grace", state="waiting")
    grace_id = await browser.participant_id(grace)
    await browser.wait_waiting_listed(ada, grace_id)
    if await ada.get_by_test_id("waiting-list").is_hidden():
        await ada.get_by_test_id("toggle-people").click()
    await ada.locator(f"[data-testid=waiting-person][data-participant-id='{grace_id}']").get_by_test_id("admit").click()
    await browser.wait_for(grace, "window.conclave.state === 'joined'", what="Grace to be admitted")
    await asyncio.gather(browser.wait_media_from(ada, grace_id, timeout=MEDIA_TIMEOUT),
                         browser.wait_media_from(grace, ada_id, timeout=MEDIA_TIMEOUT))

    # Linus waits: he is listed for the host, and sees the waiting screen.
    linus = await browser.open_meeting_page(chromium, base, meeting, "Linus", state="waiting")
    linus_id = await browser.participant_id(linus)
    assert linus_id and linus_id not in (ada_id, grace_id)
    await browser.wait_waiting_listed(ada, linus_id)
    assert await linus.get_by_test_id("waiting-screen").is_visible()
    assert "let you in" in await linus.get_by_test_id("waiting-title").inner_text()
    await browser.screenshot(linus, "waiting-room-participant")
    await browser.screenshot(ada, "waiting-room-host")

    # While he waits, the others keep talking (and chatting), and nothing reaches him or
    # comes from him: no inbound bytes on his page, no publishing, no track of his anywhere.
    await browser.send_chat_via_ui(grace, "not for the waiting room")
    for _ in range(SAMPLES):
        assert await linus.evaluate("window.conclave.inboundBytes()") == 0
        assert await linus.evaluate("window.conclave.stats()") == {}
        assert await linus.evaluate("window.conclave.publishStats()") == {}
        assert await linus.evaluate("window.conclave.participants()") == []
        assert await linus.evaluate("window.conclave.chatMessages()") == []
        for page in (ada, grace):
            assert not await received_anything_from(page, linus_id), browser.page_errors(page)
            assert linus_id not in [p["participant_id"] for p in await page.evaluate("window.conclave.participants()")]
        await asyncio.sleep(0.5)
    assert await linus.evaluate("window.conclave.state") == "waiting"
    # The others' media kept flowing the whole time.
    await browser.wait_media_from(grace, ada_id, timeout=MEDIA_TIMEOUT)

    # Admitted (through the host's UI): media flows both ways, with everyone.
    await ada.locator(f"[data-testid=waiting-person][data-participant-id='{linus_id}']").get_by_test_id("admit").click()
    await browser.wait_for(linus, "window.conclave.state === 'joined'", what="Linus to be admitted")
    await browser.wait_waiting_listed(ada, linus_id, present=False)
    await asyncio.gather(
        browser.wait_media_from(linus, ada_id, timeout=MEDIA_TIMEOUT),
        browser.wait_media_from(linus, grace_id, timeout=MEDIA_TIMEOUT),
        browser.wait_media_from(ada, linus_id, timeout=MEDIA_TIMEOUT),
        browser.wait_media_from(grace, linus_id, timeout=MEDIA_TIMEOUT),
    )
    assert await linus.evaluate("window.conclave.inboundBytes()") > 0
    # The message sent while he waited reaches him only now, as history, like anyone's who
    # joins late.
    await browser.wait_for(linus, "window.conclave.chatMessages().length === 1", what="the chat history")


async def test_suspending_the_customer_ends_the_meeting_on_every_page(conclave_server, accounts, chromium):
    customer = await accounts.customer("Suspended Inc")
    host = await accounts.host(customer, "Ada Lovelace")
    meeting = await accounts.meeting(host, title="About to be suspended", waiting_room=False)
    base = conclave_server.base_url

    ada = await browser.open_host_page(chromium, base, host.email, host.password)
    await browser.start_from_dashboard(ada, meeting["meeting_number"])
    grace = await browser.open_meeting_page(chromium, base, meeting, "Grace")
    linus = await browser.open_meeting_page(chromium, base, meeting, "Linus")
    pages = [ada, grace, linus]
    ids = [await browser.participant_id(page) for page in pages]
    await browser.wait_media_from(grace, ids[0], timeout=MEDIA_TIMEOUT)

    sent = time.monotonic()
    await accounts.suspend(customer)
    # Every page shows that the meeting ended, within 2 s of the operator's request.
    deadline = 2.0 - (time.monotonic() - sent)
    await asyncio.gather(*(
        browser.wait_for(page, "window.conclave.state === 'left' && "
                               "!document.querySelector('[data-testid=left-screen]').hidden", max(deadline, 0.1),
                         what="the meeting-ended screen within 2 s of the suspension")
        for page in pages
    ))
    for page in pages:
        screen = await browser.ended_screen(page)
        assert screen["kind"] == "meeting_ended", screen
        assert screen["title"] == "The meeting has ended", screen
        assert "operator" in screen["detail"], screen
    await browser.screenshot(grace, "meeting-ended-by-operator")


async def test_a_page_away_when_the_meeting_ends_is_told_why(conclave_server, accounts, chromium):
    """A page whose socket was down when the operator suspended the customer comes back
    with its old token: the refusal carries the end reason, worded as those inside saw it."""
    customer = await accounts.customer("Suspended While Away")
    host = await accounts.host(customer, "Ada Lovelace")
    meeting = await accounts.meeting(host, title="Ends while Grace is away", waiting_room=False)
    ada = await browser.open_host_page(chromium, conclave_server.base_url, host.email, host.password)
    await browser.start_from_dashboard(ada, meeting["meeting_number"])
    grace = await browser.open_meeting_page(chromium, conclave_server.base_url, meeting, "Grace")

    # Grace's next socket is held until the meeting has ended, then let through.
    ended = asyncio.Event()
    held = asyncio.Event()

    async def hold_until_ended(ws) -> None:
        held.set()
        await ended.wait()
        ws.connect_to_server()

    await grace.route_web_socket(re.compile(r"/ws(\?|$)"), hold_until_ended)
    await grace.evaluate("window.conclave.simulateDisconnect()")
    await asyncio.wait_for(held.wait(), 10)
    await accounts.suspend(customer)
    ended.set()
    await browser.wait_for(grace, "window.conclave.state === 'left'", what="Grace's page to learn the meeting ended")
    screen = await browser.ended_screen(grace)
    assert screen["kind"] == "meeting_ended", screen
    assert "operator" in screen["detail"], screen


async def test_waiting_for_the_host_to_start(conclave_server, accounts, chromium):
    customer = await accounts.customer("Acme")
    host = await accounts.host(customer, "Ada Lovelace")
    early = await accounts.meeting(host, title="Starts late", waiting_room=False)
    held = await accounts.meeting(host, title="Starts late, waiting room", waiting_room=True)
    base = conclave_server.base_url

    # Before the host starts, both are told they wait for the host, and get nothing.
    grace = await browser.open_meeting_page(chromium, base, early, "Grace", state="waiting")
    linus = await browser.open_meeting_page(chromium, base, held, "Linus", state="waiting")
    for page in (grace, linus):
        assert await page.evaluate("window.conclave.waitingReason") == "waiting_for_host"
        assert "start this meeting" in await page.get_by_test_id("waiting-title").inner_text()
        assert await page.evaluate("window.conclave.inboundBytes()") == 0
    await browser.screenshot(grace, "waiting-for-host")

    # The host starts the first: without a waiting room Grace is in at once.
    ada = await browser.open_host_page(chromium, base, host.email, host.password)
    await browser.start_from_dashboard(ada, early["meeting_number"])
    await browser.wait_for(grace, "window.conclave.state === 'joined'", what="Grace to be let in by the start")
    ada_id, grace_id = await browser.participant_id(ada), await browser.participant_id(grace)
    await asyncio.gather(browser.wait_media_from(ada, grace_id, timeout=MEDIA_TIMEOUT),
                         browser.wait_media_from(grace, ada_id, timeout=MEDIA_TIMEOUT))

    # One live meeting per host: the host ends the first, then starts the second, which has
    # a waiting room: Linus moves on to it and is admitted (the test hook's host action).
    await ada.get_by_test_id("end-for-all").click()
    await ada.get_by_test_id("confirm-ok").click()
    await browser.wait_for(grace, "window.conclave.state === 'left'", what="the first meeting to end for Grace")
    await ada.goto(base + "/host")
    await browser.start_from_dashboard(ada, held["meeting_number"])
    await browser.wait_for(linus, "window.conclave.waitingReason === 'waiting_room'", what="Linus in the waiting room")
    assert "let you in" in await linus.get_by_test_id("waiting-title").inner_text()
    linus_id = await browser.participant_id(linus)
    await browser.wait_waiting_listed(ada, linus_id)
    await ada.evaluate(f"window.conclave.hostActions.admit('{linus_id}')")
    await browser.wait_for(linus, "window.conclave.state === 'joined'", what="Linus to be admitted")
    ada_id = await browser.participant_id(ada)
    await browser.wait_media_from(linus, ada_id, timeout=MEDIA_TIMEOUT)
