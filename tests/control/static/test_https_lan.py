"""`http.tls: self-signed` as a LAN trial really is: the server on an address that is not
localhost, Chromium on another "machine" (a network namespace behind a veth pair) that
trusts the certificate only by the SPKI the server printed. Browsers give camera and
microphone only to secure contexts, so the page must be https, trusted, and publish.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl

import pytest

from control.cli.tls import Tls, certificate_files, fingerprints
from tests.support import browser
from tests.support.servers import conclave_test_config
from tests.support.shaped_link import unavailable_reason
from tests.support.shaped_meeting import TlsServer, stop_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not browser.chromium_available(), reason="Chromium or Playwright missing"),
    pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or ""),
]


async def _serve_self_signed(tmp_path, ip: str):
    """Control and its worker on `ip` over HTTPS, the certificate made by the self-signed
    mode exactly as `conclave serve` makes and loads it (control.cli.tls)."""
    from aiohttp import web

    from control.app import create_app

    with socket.socket() as probe:  # a port known before start: it is in public_url
        probe.bind((ip, 0))
        port = probe.getsockname()[1]
    base = conclave_test_config(tmp_path, sfu={"listen_ip": ip, "announced_ips": (ip,)})
    http = dataclasses.replace(base.http, host=ip, port=port, tls="self-signed", public_url=f"https://{ip}:{port}")
    cfg = dataclasses.replace(base, http=http)
    tls = Tls(certificate_files(cfg))
    runner = web.AppRunner(create_app(cfg), handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, ip, port, ssl_context=tls.context).start()
    except BaseException:
        await stop_server(runner)
        raise
    client_ssl = ssl.create_default_context(cafile=tls.files.cert)
    return TlsServer(f"https://{ip}:{port}", runner.app, client_ssl), runner, tls


async def test_a_lan_browser_trusting_the_printed_spki_joins_and_publishes_over_https(tmp_path):
    from playwright.async_api import async_playwright

    from tests.support.shaped_link import create_link

    link = create_link()
    runner = None
    try:
        server, runner, tls = await _serve_self_signed(tmp_path, link.host_ip)
        _, spki = fingerprints(tls.files.cert)
        assert spki in tls.describe()  # what the operator is shown at start
        meeting = await server.create_meeting("lan trial")
        async with async_playwright() as playwright:
            chromium = await playwright.chromium.launch(
                executable_path=str(link.chromium_wrapper(tmp_path)), headless=True,
                args=[*browser.CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={spki}"],
            )  # fmt: skip
            try:
                page = await browser.new_media_page(chromium, server.base_url)
                await page.goto(browser._with_name(meeting["join_url"], "lan"))
                await browser.wait_for(page, "window.conclave && window.conclave.state === 'joined'", 30, "joined")
                assert await page.evaluate("window.isSecureContext && location.hostname") == link.host_ip
                # getUserMedia worked: the camera and microphone leave the page.
                await browser.wait_for(
                    page,
                    "window.conclave.publishEncodings().then(e => e.some(x => (x.bytesSent || 0) > 20000))",
                    30,
                    "camera bytes sent",
                )
            finally:
                await chromium.close()
    finally:
        if runner is not None:
            await stop_server(runner)
        link.remove()
