"""The proof of TURN (issue 12, item 1): Chromium with iceTransportPolicy 'relay' (the web
client's `?ice=relay` switch) joins through the managed coturn over TURN/UDP, TURN/TCP and
TURN/TLS, and media flows both ways with a second Chromium participant.

Each run offers the pages one TURN URL only (what a deployment offering one transport
tells its clients), and checks in the pages' own stats that the path in use is a relay
candidate of that protocol: a page cannot reach the SFU any other way.
"""

from __future__ import annotations

import dataclasses

import pytest

from control.cli.tls import ensure_self_signed, fingerprints
from tests.support import browser
from tests.support.turn import coturn_available, turn_test_settings

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser.chromium_available(), reason="needs /usr/bin/chromium and playwright"),
    pytest.mark.skipif(not coturn_available(), reason="needs coturn (apt-get install coturn)"),
    pytest.mark.timeout(90),
]

MEDIA_TIMEOUT = 30.0


@pytest.fixture
async def chromium_trusting(tmp_path):
    """Chromium that trusts the TURN server's self-signed certificate (by its SPKI)."""
    files = ensure_self_signed(tmp_path / "turn-tls", "127.0.0.1")
    _, spki = fingerprints(files.cert)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=browser.CHROMIUM, headless=True,
            args=[*browser.CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={spki}"],
        )  # fmt: skip
        try:
            yield instance, files
        finally:
            await instance.close()


@pytest.mark.parametrize(("url_scheme", "protocol"), [("turn", "udp"), ("turn", "tcp"), ("turns", "tls")])
async def test_chromium_relay_only_through_managed_coturn(conclave_server_factory, chromium_trusting, url_scheme, protocol):
    chromium, files = chromium_trusting
    server = await conclave_server_factory(turn=turn_test_settings(tls_cert=str(files.cert), tls_key=str(files.key)))
    turn = server.services.turn
    assert await turn.wait_up(15), "coturn did not start"
    transport = "udp" if protocol == "udp" else "tcp"
    [url] = [u for u in turn.settings.urls if u.startswith(f"{url_scheme}:") and u.endswith(f"transport={transport}")]
    turn.settings = dataclasses.replace(turn.settings, urls=(url,))  # the one TURN URL the pages are told

    meeting = await server.create_meeting()
    relayed = {**meeting, "join_url": meeting["join_url"] + ("&" if "?" in meeting["join_url"] else "?") + "ice=relay"}
    pages = [await browser.open_meeting_page(chromium, server.base_url, relayed, name) for name in ("Ada", "Grace")]
    pids = [await browser.participant_id(page) for page in pages]
    try:
        await browser.wait_media_from(pages[1], pids[0], timeout=MEDIA_TIMEOUT)  # Grace decodes Ada
        await browser.wait_media_from(pages[0], pids[1], timeout=MEDIA_TIMEOUT)  # and Ada Grace
        for page in pages:  # both connections of both pages go through the relay, over `protocol`
            paths = await page.evaluate("window.conclave.selectedCandidates()")
            assert paths == [{"candidateType": "relay", "relayProtocol": protocol}] * 2, paths
        assert turn.log.allocations >= 4, turn.log.allocations
    finally:
        for page in pages:
            await browser.close_page(page)
