"""A bot and Chromium (the real web client) in one meeting on the real server."""

import pytest

from tests.support import browser
from tests.support.browser_fixtures import chromium  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser.chromium_available(), reason="Chromium or Playwright missing"),
]


async def test_bot_and_chromium_decode_each_other(conclave_server, chromium):
    meeting = await conclave_server.create_meeting()
    bot = conclave_server.bot(meeting, "bot")
    page = None
    try:
        await bot.start()
        page = await browser.open_meeting_page(chromium, conclave_server.base_url, meeting, "page")
        # Bot -> page: Chromium decodes the bot's VP8 (framesDecoded rising) and gets its audio.
        await browser.wait_media_from(page, bot.participant_id, ("microphone", "camera"), timeout=30)
        # Page -> bot: aiortc decodes Chromium's fake camera and microphone.
        page_id = await browser.participant_id(page)
        video = await bot.wait_for_frames(page_id, "camera", count=10, timeout=30)
        audio = await bot.wait_for_frames(page_id, "microphone", count=25, timeout=30)
        assert video.width > 0 and video.height > 0
        assert audio.sample_rate == 48000
    finally:
        if page is not None:
            await browser.close_page(page)
        await bot.stop()


async def test_screen_shares_between_bot_and_chromium(conclave_server, chromium):
    meeting = await conclave_server.create_meeting()
    bot = conclave_server.bot(meeting, "bot")
    page = None
    try:
        await bot.start(publish_audio=False)
        page = await browser.open_meeting_page(chromium, conclave_server.base_url, meeting, "page")
        page_id = await browser.participant_id(page)
        await browser.share_canvas_screen(page)
        screen = await bot.wait_for_frames(page_id, "screen", count=5, timeout=30)
        assert screen.width == 640 and screen.height == 360
        await bot.publish_screen()
        await browser.wait_media_from(page, bot.participant_id, ("screen",), timeout=30)
    finally:
        if page is not None:
            await browser.close_page(page)
        await bot.stop()
