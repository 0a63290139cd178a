"""A flood of malformed datagrams at a live worker while a meeting's media flows through it.

`conclave_server` (control in this process, a real worker process): alice publishes
audio and video, bob receives them (an aiortc bot, or a Chromium page running the web
client), mallory is a connected participant whose own ICE path we send raw bytes on.
Then 10^5 malformed datagrams (CONCLAVE_FLOOD_DATAGRAMS, paced at CONCLAVE_FLOOD_RATE per
second, 20000 by default: ~5 s, the whole test ~8 s on the project's machine) go to the
worker's port from 127.0.0.1: truncated and garbled STUN, STUN checks for nobody,
DTLS/RTP/RTCP bytes from an address no ICE check selected, bytes of no protocol, oversized
datagrams, and from mallory's address SRTP/SRTCP with bad authentication tags, RTP shorter
than its header and broken DTLS records (tests/support/flood.py). The worker's process must
be the same, every datagram counted under its drop reason (or the kernel's
"socket_buffer_full"), none under "internal_error", and the subscriber must decode
alice's frames during the flood and after it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import pytest

from tests.support import browser, flood
from tests.support.browser_fixtures import chromium  # noqa: F401  (fixture)

COUNT = int(os.environ.get("CONCLAVE_FLOOD_DATAGRAMS", "100000"))
RATE = int(os.environ.get("CONCLAVE_FLOOD_RATE", "20000"))  # datagrams per second


async def flood_during_meeting(server, mallory, frames: Callable[[], Awaitable[int]]) -> None:
    """Flood the worker once alice's video reaches the subscriber (`frames()`: how many it
    decoded so far), then check the worker and the subscriber."""
    supervisor = server.services.workers
    worker = supervisor.workers[0]
    pid = worker.pid
    await mallory.start(publish_audio=True, publish_video=False)
    await mallory.publisher.wait_connected()
    ice = mallory.publisher.pc.getSenders()[0].transport.transport  # aiortc RTCIceTransport

    await supervisor.refresh_stats()
    before = dict(worker.dropped())
    frames_before = await frames()
    started = time.monotonic()
    sent = await flood.flood(worker.port, COUNT, ice._send, rate=RATE, deadline_s=max(60.0, COUNT / 1000))
    flood_seconds = time.monotonic() - started
    frames_during = await frames() - frames_before

    # Media still flows: the subscriber decodes new frames from alice.
    deadline = time.monotonic() + 30
    while await frames() < frames_before + frames_during + 15:
        assert time.monotonic() < deadline, f"no new frames after the flood ({await frames()})"
        await asyncio.sleep(0.2)
    await supervisor.refresh_stats()
    after = worker.dropped()
    delta = {reason: after.get(reason, 0) - before.get(reason, 0) for reason in set(after) | set(before)}
    kernel = delta.get("socket_buffer_full", 0)
    print(f"\n{sum(sent.values())} datagrams in {flood_seconds:.1f} s; {frames_during} frames decoded "
          f"meanwhile; dropped: { {r: d for r, d in sorted(delta.items()) if d} }")  # fmt: skip

    assert worker.pid == pid and worker.restarts == 0, "the worker went down"
    assert frames_during > 0, "nothing decoded while the flood lasted"
    assert sum(sent.values()) == COUNT
    assert delta.get("internal_error", 0) == 0, delta
    for reason, count in sent.items():
        # Each kind under its own reason; the kernel may have dropped some of any kind
        # before the worker read them (the count of those is its own reason).
        assert count - kernel <= delta.get(reason, 0) <= count + 10, (reason, count, delta)
    assert sum(delta.get(reason, 0) for reason in sent) + kernel >= COUNT, delta


@pytest.mark.process
async def test_a_flood_of_malformed_datagrams_is_counted_and_the_meeting_goes_on(conclave_server):
    meeting = await conclave_server.create_meeting()
    alice, bob, mallory = (conclave_server.bot(meeting, name) for name in ("alice", "bob", "mallory"))
    try:
        await alice.start()
        await bob.start(publish_audio=False, publish_video=False)
        await bob.wait_for_frames(alice.participant_id, "camera", count=5, timeout=30)

        async def frames() -> int:
            return bob.find_stats(alice.participant_id, "camera").frames

        await flood_during_meeting(conclave_server, mallory, frames)
    finally:
        for bot in (alice, bob, mallory):
            await bot.stop()


@pytest.mark.browser
@pytest.mark.skipif(not browser.chromium_available(), reason="Chromium or Playwright missing")
async def test_a_chromium_page_keeps_decoding_through_the_flood(conclave_server, chromium):
    meeting = await conclave_server.create_meeting()
    alice, mallory = conclave_server.bot(meeting, "alice"), conclave_server.bot(meeting, "mallory")
    page = None
    try:
        await alice.start()
        page = await browser.open_meeting_page(chromium, conclave_server.base_url, meeting, "page")
        await browser.wait_media_from(page, alice.participant_id, ("camera",), timeout=30)

        async def frames() -> int:
            entry = await browser.received_from(page, alice.participant_id, "camera")
            return int((entry or {}).get("framesDecoded") or 0)

        await flood_during_meeting(conclave_server, mallory, frames)
    finally:
        if page is not None:
            await browser.close_page(page)
        for bot in (alice, mallory):
            await bot.stop()
