"""Pieces of the web client checked inside Chromium without any media: the module is
imported from the running server's /static/ and its pure parts are called directly."""

from __future__ import annotations

import pytest

from tests import browser

pytestmark = pytest.mark.skipif(not browser.chromium_available(), reason="needs /usr/bin/chromium and playwright")


@pytest.fixture
async def page(conclave_server):
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await browser.launch_chromium(playwright)
        try:
            page = await browser.new_media_page(chromium, conclave_server.base_url)
            await page.goto(conclave_server.base_url + "/")
            yield page
        finally:
            await chromium.close()


async def test_chat_is_kept_in_server_order_without_duplicates(page):
    seqs = await page.evaluate(
        """async () => {
            const { MeetingSession } = await import('/static/session.js');
            const session = new MeetingSession('x', { wsUrl: 'ws://127.0.0.1:9/none', mediaDevices: {} });
            const arrivals = [3, 1, 2, 3, 5, 4, 1];
            for (const seq of arrivals) session.insertChat({ seq, name: 'n', text: `t${seq}` });
            return session.chat.map((m) => m.seq);
        }"""
    )
    assert seqs == [1, 2, 3, 4, 5]


async def test_reconnect_backoff_grows_and_is_capped(page):
    delays = await page.evaluate(
        """async () => {
            const { backoffDelay } = await import('/static/session.js');
            return [0, 1, 2, 3, 10, 50].map((n) => [backoffDelay(n, () => 0), backoffDelay(n, () => 0.999)]);
        }"""
    )
    lows = [low for low, _ in delays]
    assert lows == sorted(lows), delays
    assert all(low <= high for low, high in delays), delays
    assert delays[0][0] > 0
    assert delays[-1][1] <= 12500, "the backoff must stay capped"


async def test_signaling_url_follows_the_page_scheme(page):
    urls = await page.evaluate(
        """async () => {
            const { signalingUrl } = await import('/static/session.js');
            return [signalingUrl('a b', { protocol: 'http:', host: 'h:1' }),
                    signalingUrl('abc', { protocol: 'https:', host: 'meet.example' })];
        }"""
    )
    assert urls == ["ws://h:1/api/v1/meetings/a%20b/ws", "wss://meet.example/api/v1/meetings/abc/ws"]


async def test_meeting_ids_are_read_from_ids_and_links(page):
    ids = await page.evaluate(
        """async () => {
            const { meetingIdFrom } = await import('/static/index.js');
            return ['abc-123', ' https://meet.example/m/XyZ_9?x=1 ', '/m/q1', '', 'a b'].map(meetingIdFrom);
        }"""
    )
    assert ids == ["abc-123", "XyZ_9", "q1", None, None]


async def test_unknown_meeting_page_says_so(page, conclave_server):
    await page.goto(conclave_server.base_url + "/m/NoSuchMeeting1")
    await page.get_by_test_id("left-screen").wait_for(state="visible")
    assert "not found" in (await page.get_by_test_id("left-screen").inner_text()).lower()
    assert await page.evaluate("window.conclave.state") == "idle"
