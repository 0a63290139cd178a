"""The web client in real Chromium against the real server (control + SFU workers).

Pages join through the UI (the meeting's join link with `?name=...`, or the Meeting ID and
passcode typed into the form), media comes from Chromium's fake camera and microphone,
and "media flows" means the receiving page's own WebRTC stats rise: frames decoded for
video, packets received for audio.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support import browser
from tests.support.browser_fixtures import chromium  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser.chromium_available(), reason="needs /usr/bin/chromium and playwright"),
    pytest.mark.timeout(240),
]

MEDIA_TIMEOUT = 40.0


async def join_all(chromium, base_url: str, meeting: dict, names: list[str]) -> list:
    pages = []
    for name in names:  # one after another: the order of arrival is part of what is tested
        pages.append(await browser.open_meeting_page(chromium, base_url, meeting, name))
    return pages


async def wait_everyone_receives_everyone(pages: list, pids: list[str], sources=("microphone", "camera")) -> None:
    """`pids[i]` is the participant of `pages[i]`; every page must receive every other."""
    await asyncio.gather(*(
        browser.wait_media_from(page, other, sources, timeout=MEDIA_TIMEOUT)
        for page, own in zip(pages, pids)
        for other in pids
        if other != own
    ))


async def tile_names(page, source: str = "camera") -> dict[str, str]:
    """participant_id -> label of the remote tiles of `source` shown on the page."""
    return await page.evaluate(
        """(source) => Object.fromEntries(
            [...document.querySelectorAll(`[data-testid=tile][data-source=${source}]`)]
              .map((t) => [t.dataset.participantId, t.querySelector('[data-testid=tile-name]').textContent]))""",
        source,
    )


async def chat_shown(page) -> list[list[str]]:
    """[[sender label, text], ...] as rendered in the page's chat list."""
    return await page.evaluate(
        """() => [...document.querySelectorAll('[data-testid=chat-message]')].map((li) => [
            li.querySelector('[data-testid=chat-name]').textContent,
            li.querySelector('[data-testid=chat-text]').textContent])"""
    )


async def test_three_participants_media_screen_chat_and_leave(conclave_server, chromium):
    meeting = await conclave_server.create_meeting()
    names = ["Ada", "Grace", "Linus"]
    pages = await join_all(chromium, conclave_server.base_url, meeting, names)
    ada, grace, linus = pages
    pids = [await browser.participant_id(page) for page in pages]
    assert len(set(pids)) == 3, pids

    # Everyone decodes everyone else's camera and receives their microphone.
    await wait_everyone_receives_everyone(pages, pids)
    for page, name in zip(pages, names):
        expected = {pid: other for pid, other in zip(pids, names) if other != name}
        await browser.wait_for(page, f"document.querySelectorAll('[data-testid=tile]').length === 2",
                               what=f"{name}: two remote tiles")
        assert await tile_names(page) == expected, browser.page_errors(page)

    # Muting the microphone shows on the others' tiles.
    await ada.get_by_test_id("toggle-mic").click()
    for page in (grace, linus):
        await browser.wait_for(
            page, f"document.querySelector('[data-testid=tile][data-participant-id=\"{pids[0]}\"]')"
                  f".dataset.micMuted === 'true'", what="Ada's muted icon")
    await ada.get_by_test_id("toggle-mic").click()

    # Ada shares a (canvas) screen: the two others decode it as source "screen".
    await browser.share_canvas_screen(ada)
    await asyncio.gather(*(
        browser.wait_media_from(page, pids[0], ("screen",), timeout=MEDIA_TIMEOUT) for page in (grace, linus)
    ))
    for page in (grace, linus):
        await browser.wait_for(page, "document.querySelectorAll('[data-testid=tile][data-source=screen]').length === 1",
                               what="Ada's screen tile")
        assert await tile_names(page, "screen") == {pids[0]: "Ada (screen)"}

    # A chat message typed in Grace's UI reaches the others, with her name, in order.
    await browser.send_chat_via_ui(grace, "hello from the chat box")
    for page in pages:
        messages = await browser.wait_for(
            page, "window.conclave.chatMessages().filter((m) => m.text === 'hello from the chat box').length && "
                  "window.conclave.chatMessages()", what="the chat message")
        assert [(m["name"], m["text"]) for m in messages] == [("Grace", "hello from the chat box")]
    for page in (ada, linus):
        await browser.wait_for(page, "document.querySelectorAll('[data-testid=chat-message]').length === 1",
                               what="the rendered chat message")
        assert await chat_shown(page) == [["Grace", "hello from the chat box"]], browser.page_errors(page)

    # Stopping the share removes the screen tile everywhere.
    await ada.get_by_test_id("toggle-screen").click()
    for page in (grace, linus):
        await browser.wait_for(page, "document.querySelectorAll('[data-testid=tile][data-source=screen]').length === 0",
                               what="the screen tile to go away")

    # Linus leaves with the button; Ada and Grace keep receiving each other.
    await linus.get_by_test_id("leave").click()
    await browser.wait_for(linus, "window.conclave.state === 'left'", what="Linus to have left")
    assert await linus.get_by_test_id("left-screen").is_visible()
    for page in (ada, grace):
        await browser.wait_for(page, f"!window.conclave.participants().some((p) => p.participant_id === '{pids[2]}')",
                               what="Linus to leave the participant list")
        await browser.wait_for(page, "document.querySelectorAll('[data-testid=tile]').length === 1",
                               what="Linus's tile to go away")
    await wait_everyone_receives_everyone([ada, grace], pids[:2])


async def test_rejoins_by_itself_after_the_socket_drops(conclave_server, chromium):
    meeting = await conclave_server.create_meeting()
    ada, bob = await join_all(chromium, conclave_server.base_url, meeting, ["Ada", "Bob"])
    pids = [await browser.participant_id(ada), await browser.participant_id(bob)]
    await wait_everyone_receives_everyone([ada, bob], pids)

    await ada.evaluate("window.conclave.simulateDisconnect()")
    await browser.wait_for(ada, "window.conclave.reconnects === 1 && window.conclave.state === 'joined'",
                           timeout=30, what="Ada to notice the drop and rejoin")
    assert await browser.participant_id(ada) == pids[0], "the participant id must survive a reconnect"
    await wait_everyone_receives_everyone([ada, bob], pids)

    # Publishing renegotiates on the new connection; the browser's own "Stop sharing"
    # (the track ends) stops the share like the button does.
    await browser.share_canvas_screen(ada)
    await browser.wait_media_from(bob, pids[0], ("screen",), timeout=MEDIA_TIMEOUT)
    await browser.end_screen_track(ada)
    await browser.wait_for(bob, "document.querySelectorAll('[data-testid=tile][data-source=screen]').length === 0",
                           what="the screen tile to go away after the track ended")
    assert (await browser.received_from(bob, pids[0], "screen")) is None
    await browser.wait_for(ada, "!document.querySelector('[data-testid=tile-local-screen]')",
                           what="Ada's own screen preview to go away")


async def test_everyone_comes_back_after_the_media_worker_crashes(conclave_server, chromium):
    meeting = await conclave_server.create_meeting()
    ada, bob = await join_all(chromium, conclave_server.base_url, meeting, ["Ada", "Bob"])
    pids = [await browser.participant_id(ada), await browser.participant_id(bob)]
    await wait_everyone_receives_everyone([ada, bob], pids)

    worker = conclave_server.services.workers.workers[0]
    crashed_generation = worker.generation
    worker.process.kill()  # the server sends `reconnect` and restarts the worker
    for page in (ada, bob):
        await browser.wait_for(page, "window.conclave.reconnects >= 1 && window.conclave.state === 'joined'",
                               timeout=40, what="the reconnect and the rejoin")
    assert worker.generation > crashed_generation
    assert [await browser.participant_id(ada), await browser.participant_id(bob)] == pids
    await wait_everyone_receives_everyone([ada, bob], pids)


async def test_leave_then_rejoin_from_the_button(conclave_server, chromium):
    meeting = await conclave_server.create_meeting()
    ada, bob = await join_all(chromium, conclave_server.base_url, meeting, ["Ada", "Bob"])
    await ada.get_by_test_id("leave").click()
    await browser.wait_for(ada, "window.conclave.state === 'left'")
    await ada.get_by_test_id("rejoin").click()
    await browser.wait_for(ada, "window.conclave.state === 'joined'", timeout=30, what="Ada to rejoin")
    pids = [await browser.participant_id(ada), await browser.participant_id(bob)]
    await wait_everyone_receives_everyone([ada, bob], pids)

    # A publish renegotiation asked for while another is in flight waits for it; the
    # publish connection stays usable afterwards.
    await ada.evaluate(
        """async () => {
            const canvas = document.createElement('canvas');
            canvas.width = 320; canvas.height = 180;
            const ctx = canvas.getContext('2d');
            setInterval(() => { ctx.fillStyle = `hsl(${Date.now() % 360} 50% 50%)`; ctx.fillRect(0, 0, 320, 180); }, 100);
            const sharing = window.conclave.shareScreen(canvas.captureStream(10));
            await new Promise((resolve) => setTimeout(resolve, 5));
            await Promise.all([sharing, window.conclave.stopScreen()]);
        }"""
    )
    await browser.share_canvas_screen(ada)
    await browser.wait_media_from(bob, pids[0], ("camera", "screen"), timeout=MEDIA_TIMEOUT)
    assert await ada.get_by_test_id("error-toast").count() == 0, await ada.get_by_test_id("error-toast").all_inner_texts()


async def test_home_page_takes_a_meeting_id_then_the_passcode(conclave_server, chromium):
    meeting = await conclave_server.create_meeting()
    page = await browser.new_media_page(chromium, conclave_server.base_url)
    await page.goto(conclave_server.base_url + "/")
    await browser.screenshot(page, "home")
    await page.get_by_test_id("join-id-input").fill("12-34")
    await page.get_by_test_id("join-id-submit").click()
    await page.get_by_test_id("join-id-error").wait_for(state="visible")
    await page.get_by_test_id("join-id-input").fill(meeting["meeting_number"])
    await page.get_by_test_id("join-id-submit").click()
    await page.wait_for_url(f"**/m/{browser.digits(meeting['meeting_number'])}")
    # The Meeting ID is filled in from the address; the passcode and name are asked.
    await page.get_by_test_id("passcode-input").wait_for(state="visible")
    assert await page.get_by_test_id("meeting-number-input").input_value() == meeting["meeting_number"]
    await browser.screenshot(page, "join-meeting-page")
    await page.get_by_test_id("passcode-input").fill(meeting["passcode"])
    await page.get_by_test_id("name-input").fill("Margaret")
    await page.get_by_test_id("join-button").click()
    await browser.wait_for(page, "window.conclave.state === 'joined'", timeout=30, what="joining from the form")
    assert await page.evaluate("localStorage.getItem('conclave.name')") == "Margaret"


async def test_invitation_link_asks_only_for_a_name(conclave_server, chromium):
    meeting = await conclave_server.create_meeting()
    page = await browser.new_media_page(chromium, conclave_server.base_url)
    await page.goto(meeting["join_url"])
    await page.get_by_test_id("name-input").wait_for(state="visible")
    assert await page.get_by_test_id("passcode-input").is_hidden()
    assert await page.get_by_test_id("meeting-number-input").is_hidden()
    await browser.screenshot(page, "join-by-link")
    await page.get_by_test_id("name-input").fill("Katherine")
    await page.get_by_test_id("join-button").click()
    await browser.wait_for(page, "window.conclave.state === 'joined'", timeout=30, what="joining from the link")


async def test_unknown_meeting_and_wrong_passcode_look_the_same(conclave_server, chromium):
    meeting = await conclave_server.create_meeting()
    page = await browser.new_media_page(chromium, conclave_server.base_url)
    answers = []
    for number, passcode in ((meeting["meeting_number"], "wrong-passcode"), ("999-0000-0001", meeting["passcode"])):
        await browser.join_through_form(page, conclave_server.base_url, number, passcode, "Eve")
        error = page.get_by_test_id("join-error")
        await error.wait_for(state="visible")
        answers.append(await error.inner_text())
        assert await page.evaluate("window.conclave.state") == "idle"
    assert answers[0] == answers[1] and "Meeting ID or passcode" in answers[0], answers


async def test_a_link_that_is_not_valid_falls_back_to_the_passcode(conclave_server, chromium):
    meeting = await conclave_server.create_meeting()
    page = await browser.new_media_page(chromium, conclave_server.base_url)
    await page.goto(f"{conclave_server.base_url}/m/{meeting['meeting_number']}?t=not.a.token&name=Eve")
    await page.get_by_test_id("join-error").wait_for(state="visible")
    assert "not valid" in await page.get_by_test_id("join-error").inner_text()
    assert await page.get_by_test_id("passcode-input").is_visible()
    assert "t=" not in page.url
    await page.get_by_test_id("passcode-input").fill(meeting["passcode"])
    await page.get_by_test_id("join-button").click()
    await browser.wait_for(page, "window.conclave.state === 'joined'", timeout=30, what="joining with the passcode")
