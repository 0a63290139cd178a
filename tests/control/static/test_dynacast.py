"""Dynacast, the client side, in real Chromium: the web client publishes its camera as
three encodings (simulcast is on by default); when the server says only the lowest is
wanted (`publish_layers`), the encoder stops sending the others, and sends them again
when they are wanted; a renegotiation (a screen share added) keeps a paused encoding
paused. The server's side is driven where the worker's news enters control:
`control.meeting.adaptive.AdaptiveMedia.worker_notification` with the
`sfu.api.ProducerLayersWanted` a worker sends (today's worker does not send it yet)."""

from __future__ import annotations

import asyncio

import pytest

from sfu import api
from sfu.engine import dynacast
from tests.control.static.test_simulcast import chromium_15fps  # noqa: F401  (fixture)
from tests.support import browser
from tests.support.shaped_meeting import wait_top_encoding

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser.chromium_available(), reason="needs /usr/bin/chromium and playwright"),
    pytest.mark.timeout(150),
]

ENCODINGS = "window.conclave.publishEncodings()"


async def bytes_sent(page) -> dict[str, int]:
    return {e["rid"]: e["bytesSent"] for e in await page.evaluate(ENCODINGS) if e["rid"]}


async def wait_sending(page, rid: str, growing: bool, timeout: float, what: str) -> float:
    """Waits until `rid`'s bytesSent grows (or stops growing: equal over a full second);
    returns the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    before = (await bytes_sent(page)).get(rid, 0)
    while loop.time() - started < timeout:
        await asyncio.sleep(1.0)
        now = (await bytes_sent(page)).get(rid, 0)
        if (now > before) == growing:
            return loop.time() - started
        before = now
    raise AssertionError(f"{what}: {rid} {'not' if growing else 'still'} sending after {timeout}s: "
                         f"{await page.evaluate(ENCODINGS)}{browser.page_errors(page)}")


def tell_layers(server, meeting_id: str, participant_id: str, rids: list[str]) -> None:
    """What the worker's dynacast says of the participant's camera, handed to control as
    the worker supervisor hands a worker's notification."""
    services = server.services
    meeting = services.registry.get(meeting_id)
    track = next(t for t in meeting.participants[participant_id].tracks.values() if t.source == "camera")
    placement = meeting.placement
    message = api.ProducerLayersWanted(active_rids=rids)
    services.adaptive.worker_notification(placement.worker_index, placement.generation, track.producer_id, message)


async def test_the_publisher_pauses_the_encodings_nobody_wants_and_resumes_them(conclave_server_factory,
                                                                                 chromium_15fps):  # noqa: F811
    server = await conclave_server_factory()  # media.accept_simulcast: on by default
    meeting = await server.create_meeting()
    publisher = await browser.open_meeting_page(chromium_15fps, server.base_url, meeting, "Pub")
    pid = await browser.participant_id(publisher)
    # Alone, the publisher is told by the worker's own dynacast, once, after its hold, that
    # nobody takes h or f. Let that happen first, then speak for the worker from here on.
    await asyncio.sleep(dynacast.HOLD_S + 1.0)
    tell_layers(server, meeting["meeting_id"], pid, ["q", "h", "f"])
    await wait_top_encoding(publisher)
    timings = {}

    tell_layers(server, meeting["meeting_id"], pid, ["q"])
    timings["f stopped after"] = await wait_sending(publisher, "f", False, 5.0, "only q wanted")
    await wait_sending(publisher, "h", False, 2.0, "only q wanted")
    await wait_sending(publisher, "q", True, 3.0, "q is still wanted")
    # Told again (a worker's repeat, or the same after a renegotiation): nothing changes.
    tell_layers(server, meeting["meeting_id"], pid, ["q"])
    await wait_sending(publisher, "f", False, 2.0, "only q wanted, told twice")
    # A renegotiation of the publish connection (a screen share added) keeps what was
    # paused paused: nothing told the client otherwise.
    await browser.share_canvas_screen(publisher)
    live = server.services.registry.get(meeting["meeting_id"])
    for _ in range(100):  # the server has the screen track: the renegotiation is done
        if any(t.source == "screen" for t in live.participants[pid].tracks.values()):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the screen share was not published")
    await wait_sending(publisher, "f", False, 3.0, "only q wanted, after a renegotiation")
    await wait_sending(publisher, "q", True, 3.0, "q still wanted, after a renegotiation")

    tell_layers(server, meeting["meeting_id"], pid, ["q", "h", "f"])
    timings["f resumed after"] = await wait_sending(publisher, "f", True, 3.0, "every layer wanted again")

    tell_layers(server, meeting["meeting_id"], pid, [])  # nobody wants any: the lowest stays on
    await wait_sending(publisher, "f", False, 5.0, "none wanted")
    await wait_sending(publisher, "q", True, 3.0, "none wanted: q is kept")
    await browser.close_page(publisher)
    print("dynacast timings (s):", timings)
