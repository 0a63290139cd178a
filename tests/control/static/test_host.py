"""The host's side of the web client in real Chromium against the real server: sign in,
schedule, start, admit, remove, the one-live-meeting rule, a second sign-in elsewhere, and
the in-meeting controls (deny, mute, lock, end)."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.support import browser
from tests.support.browser_fixtures import accounts, chromium  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser.chromium_available(), reason="needs /usr/bin/chromium and playwright"),
    pytest.mark.timeout(240),
]

MEDIA_TIMEOUT = 40.0


def card(page, number: str):
    return page.locator(f"[data-testid=meeting][data-meeting-number='{browser.digits(number)}']")


async def test_schedule_start_admit_and_remove_through_the_ui(conclave_server, accounts, chromium):
    customer = await accounts.customer("Acme")
    host = await accounts.host(customer, "Ada Lovelace")
    base = conclave_server.base_url

    # Sign in, schedule (waiting room on, the generated passcode kept), see it listed.
    ada = await browser.new_media_page(chromium, base)
    await ada.goto(base + "/host")
    await ada.get_by_test_id("email").fill(host.email)
    await ada.get_by_test_id("password").fill("not the password")
    await ada.get_by_test_id("signin-button").click()
    await ada.get_by_test_id("signin-error").wait_for(state="visible")
    assert "not right" in await ada.get_by_test_id("signin-error").inner_text()
    await browser.screenshot(ada, "host-signin-error")
    await browser.sign_in_host(ada, base, host.email, host.password)
    assert host.email in await ada.get_by_test_id("host-who").inner_text()

    await ada.get_by_test_id("schedule-title").fill("Design review")
    passcode = await ada.get_by_test_id("schedule-passcode").input_value()
    assert re.fullmatch(r"[A-Za-z0-9]{8}", passcode), passcode
    assert await ada.get_by_test_id("schedule-waiting-room").is_checked()
    await ada.get_by_test_id("schedule-button").click()
    listed = ada.locator("[data-testid=meeting]").filter(has_text="Design review")
    await listed.wait_for()
    number = await listed.get_by_test_id("meeting-number").inner_text()
    assert re.fullmatch(r"\d{3}-\d{4}-\d{4}", number), number
    assert await listed.get_by_test_id("meeting-passcode").inner_text() == passcode
    link = await listed.get_by_test_id("meeting-link").input_value()
    assert f"/m/{number}?t=" in link and passcode not in link, link
    assert await listed.get_by_test_id("meeting-status").inner_text() == "Scheduled"
    await browser.screenshot(ada, "host-dashboard")

    # Start: the host is in the meeting, as host.
    await browser.start_from_dashboard(ada, number)
    ada_id = await browser.participant_id(ada)
    assert await ada.get_by_test_id("end-for-all").is_visible()
    assert await ada.get_by_test_id("toggle-lock").is_visible()

    # Grace joins by Meeting ID + passcode through /join, and waits.
    grace = await browser.new_media_page(chromium, base)
    grace.conclave_name = "Grace"
    await grace.goto(base + "/join")
    await browser.screenshot(grace, "join-by-meeting-id")
    await grace.get_by_test_id("meeting-number-input").fill(number)
    await grace.get_by_test_id("passcode-input").fill("wrong1")
    await grace.get_by_test_id("name-input").fill("Grace Hopper")
    await grace.get_by_test_id("join-button").click()
    await grace.get_by_test_id("join-error").wait_for(state="visible")
    assert "passcode" in await grace.get_by_test_id("join-error").inner_text()
    await browser.screenshot(grace, "join-wrong-passcode")
    await grace.get_by_test_id("passcode-input").fill(passcode)
    await grace.get_by_test_id("join-button").click()
    await browser.wait_for(grace, "window.conclave.state === 'waiting'", what="Grace to wait")
    assert browser.digits(number) in grace.url and passcode not in grace.url
    grace_id = await browser.participant_id(grace)

    # The host is told someone waits, and admits her from that card.
    await ada.get_by_test_id("knock").wait_for(state="visible")
    assert "Grace Hopper" in await ada.get_by_test_id("knock").inner_text()
    await browser.screenshot(ada, "host-knock")
    await ada.get_by_test_id("knock-admit").click()
    await browser.wait_for(grace, "window.conclave.state === 'joined'", what="Grace to be admitted")
    await asyncio.gather(browser.wait_media_from(ada, grace_id, timeout=MEDIA_TIMEOUT),
                         browser.wait_media_from(grace, ada_id, timeout=MEDIA_TIMEOUT))
    # Only the host has host controls.
    assert await grace.get_by_test_id("end-for-all").is_hidden()
    assert await grace.get_by_test_id("toggle-lock").is_hidden()
    assert await grace.locator("[data-testid=host-remove]").count() == 0

    # The host removes her through the people list (with a confirmation).
    if await ada.get_by_test_id("people-list").is_hidden():
        await ada.get_by_test_id("toggle-people").click()
    row = ada.locator(f"[data-testid=participant][data-participant-id='{grace_id}']")
    await browser.screenshot(ada, "host-people")
    await row.get_by_test_id("host-remove").click()
    await ada.get_by_test_id("confirm-dialog").wait_for(state="visible")
    await browser.screenshot(ada, "host-remove-confirm")
    await ada.get_by_test_id("confirm-ok").click()
    await browser.wait_for(grace, "window.conclave.state === 'left'", what="Grace to be removed")
    screen = await browser.ended_screen(grace)
    assert screen["kind"] == "removed" and screen["title"] == "You were removed from the meeting", screen
    assert await grace.get_by_test_id("rejoin").is_hidden()
    await browser.screenshot(grace, "removed")
    await browser.wait_for(ada, f"!window.conclave.participants().some((p) => p.participant_id === '{grace_id}')",
                           what="Grace to leave the host's list")

    # The removed page cannot come back: joining again from the same browser is refused.
    await browser.join_through_form(grace, base, number, passcode, "Grace Hopper")
    await grace.get_by_test_id("join-error").wait_for(state="visible")
    assert "removed you" in await grace.get_by_test_id("join-error").inner_text()
    assert await grace.evaluate("window.conclave.state") == "idle"  # a fresh page that never got in
    await browser.screenshot(grace, "removed-rejoin-refused")
    # Nor through the invitation link.
    await grace.goto(browser._with_name(link, "Grace Hopper"))
    await grace.get_by_test_id("join-error").wait_for(state="visible")
    assert "removed you" in await grace.get_by_test_id("join-error").inner_text()


async def test_one_live_meeting_and_a_second_sign_in_elsewhere(conclave_server, accounts, chromium):
    customer = await accounts.customer("Acme")
    host = await accounts.host(customer, "Ada Lovelace")
    first = await accounts.meeting(host, title="First")
    second = await accounts.meeting(host, title="Second")
    base = conclave_server.base_url

    ada = await browser.open_host_page(chromium, base, host.email, host.password)
    await browser.start_from_dashboard(ada, first["meeting_number"])

    # Back on the dashboard: the first is live, and starting the second is refused with
    # the server's message naming the live one.
    await ada.goto(base + "/host")
    await card(ada, first["meeting_number"]).get_by_test_id("end-meeting").wait_for()
    assert await card(ada, first["meeting_number"]).get_by_test_id("meeting-status").inner_text() == "Live"
    await card(ada, second["meeting_number"]).get_by_test_id("start-meeting").click()
    error = card(ada, second["meeting_number"]).get_by_test_id("meeting-error")
    await error.wait_for()
    assert first["meeting_number"] in await error.inner_text()
    assert ada.url.endswith("/host")
    await browser.screenshot(ada, "host-second-live-refused")

    # Going back into the live meeting works (Join), as the same host.
    await browser.start_from_dashboard(ada, first["meeting_number"])

    # The same account signs in somewhere else: the meeting page is told why and ends...
    other = await browser.open_host_page(chromium, base, host.email, host.password)
    await browser.wait_for(ada, "window.conclave.state === 'left'", what="the host page to be signed out")
    screen = await browser.ended_screen(ada)
    assert screen["kind"] == "signed_out" and "somewhere else" in screen["detail"], screen
    await browser.screenshot(ada, "host-signed-out-in-meeting")
    # ...and the sign-in page says so too.
    await ada.get_by_test_id("signin-again").click()
    await ada.get_by_test_id("signin-reason").wait_for(state="visible")
    assert "somewhere else" in await ada.get_by_test_id("signin-reason").inner_text()

    # A dashboard left open elsewhere notices by itself and goes back to sign-in.
    await browser.sign_in_host(ada, base, host.email, host.password)
    await other.get_by_test_id("signin-reason").wait_for(state="visible", timeout=20_000)
    assert "somewhere else" in await other.get_by_test_id("signin-reason").inner_text()
    await browser.screenshot(other, "host-signed-in-elsewhere")

    # The meeting is still live for its host; End from the dashboard ends it.
    await card(ada, first["meeting_number"]).get_by_test_id("end-meeting").click()
    await ada.get_by_test_id("confirm-ok").click()
    await browser.wait_for(ada, f"document.querySelector(\"[data-meeting-number='{browser.digits(first['meeting_number'])}']\")"
                                ".dataset.status === 'ended'", what="the meeting to show as ended")
    # Delete takes it off the list.
    await card(ada, second["meeting_number"]).get_by_test_id("delete-meeting").click()
    await ada.get_by_test_id("confirm-ok").click()
    await card(ada, second["meeting_number"]).wait_for(state="detached")


async def test_deny_mute_lock_and_end_for_all(conclave_server, accounts, chromium):
    customer = await accounts.customer("Acme")
    host = await accounts.host(customer, "Ada Lovelace")
    meeting = await accounts.meeting(host, title="Moderated", waiting_room=True)
    base = conclave_server.base_url

    ada = await browser.open_host_page(chromium, base, host.email, host.password)
    await browser.start_from_dashboard(ada, meeting["meeting_number"])
    ada_id = await browser.participant_id(ada)
    grace = await browser.open_meeting_page(chromium, base, meeting, "Grace", state="waiting")
    linus = await browser.open_meeting_page(chromium, base, meeting, "Linus", state="waiting")
    grace_id, linus_id = await browser.participant_id(grace), await browser.participant_id(linus)
    await browser.wait_waiting_listed(ada, linus_id)
    await browser.wait_waiting_listed(ada, grace_id)

    # Deny Linus, admit Grace (from the waiting list in the people panel).
    if await ada.get_by_test_id("waiting-list").is_hidden():
        await ada.get_by_test_id("toggle-people").click()
    waiting_row = ada.locator(f"[data-testid=waiting-person][data-participant-id='{linus_id}']")
    await waiting_row.get_by_test_id("deny").click()
    await browser.wait_for(linus, "window.conclave.state === 'left'", what="Linus to be denied")
    screen = await browser.ended_screen(linus)
    assert screen["kind"] == "denied" and "did not let you in" in screen["title"], screen
    await browser.screenshot(linus, "denied")
    await ada.locator(f"[data-testid=waiting-person][data-participant-id='{grace_id}']").get_by_test_id("admit").click()
    await browser.wait_for(grace, "window.conclave.state === 'joined'", what="Grace to be admitted")
    await browser.wait_media_from(ada, grace_id, timeout=MEDIA_TIMEOUT)

    # Mute Grace's microphone from the host's list: she is told, her button shows it, and
    # the server stops forwarding it (the host's packet counter stops rising).
    row = ada.locator(f"[data-testid=participant][data-participant-id='{grace_id}']")
    await row.get_by_test_id("host-mute-mic").click()
    await grace.get_by_test_id("toast").filter(has_text="muted your microphone").wait_for()
    mic_label = "document.querySelector('[data-testid=toggle-mic]').getAttribute('aria-label')"
    await browser.wait_for(grace, f"{mic_label} === 'The host muted your microphone'",
                           what="Grace's mic button to show the host muted it")
    await browser.screenshot(grace, "muted-by-host")
    await browser.wait_for(ada, f"window.conclave.participants().find((p) => p.participant_id === '{grace_id}')"
                                ".muted.microphone === true", what="Grace shown muted to the host")
    await wait_counter_still(ada, grace_id, "microphone")
    # Her own button cannot turn it back on: she is told why, and it stays off.
    await grace.get_by_test_id("toggle-mic").click()
    await grace.get_by_test_id("toast").filter(has_text="turned off your microphone").wait_for()
    assert await grace.evaluate(mic_label) == "The host muted your microphone"
    await wait_counter_still(ada, grace_id, "microphone")
    await browser.screenshot(ada, "host-muted-someone")

    # The host lets her again; she unmutes herself and is heard again.
    allow = row.get_by_test_id("host-mute-mic")
    assert (await allow.get_attribute("aria-label")).startswith("Let them turn the microphone on again")
    await allow.click()
    await grace.get_by_test_id("toast").filter(has_text="lets you turn your microphone").wait_for()
    await browser.wait_for(grace, f"{mic_label} === 'Unmute microphone'", what="Grace's button to be hers again")
    await grace.get_by_test_id("toggle-mic").click()
    await browser.wait_media_from(ada, grace_id, ("microphone",), timeout=MEDIA_TIMEOUT)

    # Stop her video the same way: her camera stops reaching the host.
    await row.get_by_test_id("host-stop-video").click()
    await browser.wait_for(grace, "document.querySelector('[data-testid=toggle-camera]').getAttribute('aria-label') "
                                  "=== 'The host turned off your camera'", what="Grace's camera button to show off")
    await wait_counter_still(ada, grace_id, "camera")

    # Lock: a newcomer is refused at the door.
    await ada.get_by_test_id("toggle-lock").click()
    await ada.get_by_test_id("lock-chip").wait_for(state="visible")
    assert await ada.evaluate("window.conclave.locked") is True
    await browser.screenshot(ada, "host-locked")
    late = await browser.open_meeting_page(chromium, base, meeting, "Late", state=None)
    await late.get_by_test_id("join-error").wait_for(state="visible")
    assert "locked" in await late.get_by_test_id("join-error").inner_text()
    await browser.screenshot(late, "join-locked")

    # End for all (confirmed): both pages show that the meeting ended.
    await ada.get_by_test_id("end-for-all").click()
    await ada.get_by_test_id("confirm-ok").click()
    for page in (ada, grace):
        await browser.wait_for(page, "window.conclave.state === 'left'", what="the meeting to end")
        screen = await browser.ended_screen(page)
        assert screen["kind"] == "meeting_ended" and screen["title"] == "The meeting has ended", screen
    assert "host ended" in (await browser.ended_screen(grace))["detail"]
    await browser.screenshot(grace, "meeting-ended-by-host")
    assert ada_id


async def wait_counter_still(page, pid: str, source: str, timeout: float = 20.0) -> None:
    """Waits until the page's counter for `pid`'s `source` (packets for audio, frames for
    video) stays the same over two seconds: the server no longer forwards it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while True:
        entry = await browser.received_from(page, pid, source)
        value = browser._progress(entry)
        if last is not None and value == last:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"{source} of {pid} still flowing: {entry}{browser.page_errors(page)}")
        last = value
        await asyncio.sleep(2.0)
