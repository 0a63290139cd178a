"""The README's first steps, literally, as a newcomer takes them: `conclave serve` on its
embedded defaults (only the port and the data directory moved, so the test can run
beside anything), the printed path of the first host's password, /host to sign in as
admin@localhost, schedule and start a meeting, then a participant joins at / with the
Meeting ID and passcode the dashboard shows, and both see and hear each other."""

from __future__ import annotations

import asyncio
import os
import re
import select
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.support import browser
from tests.support.browser_fixtures import chromium  # noqa: F401
from tests.support.servers import REPO_ROOT, conclave_command, stop_process
from tests.support.turn import free_port

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser.chromium_available(), reason="needs /usr/bin/chromium and playwright"),
    pytest.mark.timeout(180),
]

MEDIA_TIMEOUT = 40.0


def serve(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """`conclave serve` as the README starts it; (process, its URL, what it printed)."""
    port = free_port()
    config = tmp_path / "conclave.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "http": {"port": port},
                                      "sfu": {"workers": 1, "port_base": 0}, "turn": {"mode": "off"}}))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_")}
    process = subprocess.Popen([*conclave_command(), "serve", "--config", str(config)], cwd=REPO_ROOT, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=open(tmp_path / "serve.log", "wb"))  # fmt: skip
    printed, deadline = b"", time.monotonic() + 60
    while time.monotonic() < deadline and b"conclave: ready." not in printed:
        if select.select([process.stdout], [], [], 0.2)[0]:
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            printed += chunk
    text = printed.decode()
    match = re.search(r"^conclave serving at (\S+)", text, re.M)
    if match is None:
        stop_process(process, [])
        raise AssertionError(f"conclave serve did not start: {text}")
    return process, match.group(1), text


async def test_the_readme_first_steps(tmp_path, chromium):
    process, url, printed = serve(tmp_path)
    try:
        # "sign in as admin@localhost with the password the first start wrote to ..."
        path = re.search(r"host admin@localhost created; its password is in (\S+)", printed).group(1)
        password = Path(path).read_text().strip()
        assert re.search(rf"Hosts sign in at {re.escape(url)}/host", printed), printed
        host = await browser.open_host_page(chromium, url, "admin@localhost", password)

        # "schedule and start a meeting"
        await host.get_by_test_id("schedule-title").fill("My first meeting")
        await host.get_by_test_id("schedule-button").click()
        card = host.locator("[data-testid=meeting]").filter(has_text="My first meeting")
        await card.wait_for()
        number = await card.get_by_test_id("meeting-number").inner_text()
        passcode = await card.get_by_test_id("meeting-passcode").inner_text()
        await browser.start_from_dashboard(host, number)

        # "send its ... Meeting ID and passcode around": someone joins at / with them.
        guest = await browser.new_media_page(chromium, url)
        guest.conclave_name = "Guest"
        await guest.goto(url + "/")
        await guest.get_by_test_id("join-id-input").fill(number)
        await guest.get_by_test_id("join-id-submit").click()
        await guest.get_by_test_id("passcode-input").fill(passcode)
        await guest.get_by_test_id("name-input").fill("Guest")
        await guest.get_by_test_id("join-button").click()
        await browser.wait_for(guest, "window.conclave && window.conclave.state === 'waiting'",
                               what="the guest to wait (the waiting room is on by default)")  # fmt: skip
        await host.get_by_test_id("knock-admit").click()
        await browser.wait_for(guest, "window.conclave.state === 'joined'", what="the guest to be admitted")
        host_id, guest_id = await browser.participant_id(host), await browser.participant_id(guest)
        await asyncio.gather(browser.wait_media_from(host, guest_id, timeout=MEDIA_TIMEOUT),
                             browser.wait_media_from(guest, host_id, timeout=MEDIA_TIMEOUT))
    finally:
        stop_process(process, [])
