"""ICE consent and recycled m-lines with real Chromium pages (the web client) against the
real server: Chromium's checks on the selected pair keep the worker's consent (here cut
to 4 s, so a page whose checks stopped would go dark within the test), and a screen
shared, stopped and shared again reaches the other page on a recycled m-line.
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
CONSENT_S = 4.0


async def test_chromium_keeps_consent_and_takes_a_recycled_m_line(conclave_server_factory, chromium):
    server = await conclave_server_factory(sfu={"workers": 1, "port_base": 0, "ice_consent_timeout_s": CONSENT_S})
    meeting = await server.create_meeting()
    ada = await browser.open_meeting_page(chromium, server.base_url, meeting, "Ada")
    bob = await browser.open_meeting_page(chromium, server.base_url, meeting, "Bob")
    ada_id = await browser.participant_id(ada)
    await browser.wait_media_from(bob, ada_id, timeout=MEDIA_TIMEOUT)

    # Three consent periods later, media still flows and no consent lapsed.
    await asyncio.sleep(3 * CONSENT_S)
    await browser.wait_media_from(bob, ada_id, timeout=MEDIA_TIMEOUT)
    workers = server.services.workers
    await workers.refresh_stats()
    counters = workers.workers[0].counters()
    assert counters["ice_consent_expired"] == 0
    # Chromium may move to another of its candidates once connected: only after it
    # answered the worker's check there (it does: media kept flowing above).
    assert counters["ice_path_switches"] <= counters["ice_probes_sent"]

    # Share, stop, share again: the second share rides the first one's recycled m-line.
    for _ in range(2):
        await browser.share_canvas_screen(ada)
        await browser.wait_media_from(bob, ada_id, ("screen",), timeout=MEDIA_TIMEOUT)
        await ada.get_by_test_id("toggle-screen").click()
        await browser.wait_for(bob, "document.querySelectorAll('[data-testid=tile][data-source=screen]').length === 0",
                               what="the screen tile to go away")  # fmt: skip
    # Bob's m-lines (control keeps one subscription per m-line offered): the announcer,
    # Ada's microphone and camera, and the one the screen used both times.
    live = server.services.registry.get(meeting["meeting_id"])
    bob_id = await browser.participant_id(bob)
    assert len(live.participants[bob_id].consumers) == 4
    await browser.wait_media_from(bob, ada_id, timeout=MEDIA_TIMEOUT)
