"""A WHEP viewer of a meeting whose camera is simulcast (the web client's default with
`media.accept_simulcast`), in Chromium against the real server: the player's one video
slot takes the simulcast camera, then a bot's screen share, then the camera again. A
simulcast source cannot be re-pointed in place (sfu.transport.playback.switch_source
refuses it), so control replaces the slot's consumer (same SSRC and payload type): the
player keeps decoding on its one video receiver, never renegotiated."""

from __future__ import annotations

import pytest

from client.media import GeneratedVideoTrack
from tests.control.http.test_whep_players import chromium, page_origin, wait_for  # noqa: F401  (fixture)
from tests.support import browser
from tests.support.browser_fixtures import chromium_autoplay  # noqa: F401  (fixture behind chromium)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]


async def test_a_viewer_follows_a_simulcast_camera_and_a_screen_share(conclave_server_factory, chromium):
    server = await conclave_server_factory(media={"accept_simulcast": True})
    host = await server.new_host(limits={"max_live_meetings_per_host": 5})
    meeting = await server.create_meeting(host=host, start=False)
    host_page = await browser.open_host_page(chromium, server.base_url, host["email"], host["password"])
    guest = server.bot(meeting, "Sam", width=640, height=360)
    try:
        await browser.start_from_dashboard(host_page, meeting["meeting_number"])
        # The browser's sign-in ended the REST one: the token straight from the services
        # (issuing over REST is tests/control/http/test_whep.py's).
        row = await server.services.store.create_viewer_token(meeting["meeting_id"], "simulcast viewer", 1e12)
        issued = {"token": server.services.tokens.make_viewer_token(row), "whep_url": f"/whep/{meeting['number']}"}
        async with page_origin() as origin:
            player = await chromium.new_page()
            await player.goto(origin)
            await player.evaluate("([url, token]) => startPlayer(url, token)",
                                  [server.base_url + issued["whep_url"], issued["token"]])  # fmt: skip
            assert await player.evaluate("player.error") is None

            async def showing(width: int | None, more_than: int, final: bool = False, not_width: int = 0):
                stats = await player.evaluate("videoStats()")
                good = stats["frames"] > more_than and (width is None or stats["width"] == width)
                return stats if final or (good and stats["width"] != not_width) else None

            first = await wait_for("the player to decode the simulcast camera",
                                   lambda final=False: showing(None, 10, final))  # fmt: skip
            await guest.start(publish_audio=False, publish_video=False)
            await guest.publish_screen(GeneratedVideoTrack(512, 288, fps=10))
            screen = await wait_for("the player to show the screen share",
                                    lambda final=False: showing(512, first["frames"], final))  # fmt: skip
            await guest.unpublish_screen()
            # The camera's layer is the allocation's (its estimate grows): any size but the screen's.
            back = await wait_for("the player to show the camera again",
                                  lambda final=False: showing(None, screen["frames"] + 10, final, 512))  # fmt: skip
            for stats in (screen, back):
                assert stats["ssrc"] == first["ssrc"] and stats["count"] == 1 and not stats["renegotiated"]
            await player.close()
    finally:
        await guest.stop()
        await host_page.close()
