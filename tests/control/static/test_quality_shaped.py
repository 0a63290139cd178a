"""Connection quality proven in real Chromium behind a real shaped link (issue 14, item 1).

A Chromium publisher on the host sends its camera (a 1280x720 15 fps file, simulcast) and
microphone. A subscriber that only watches runs in a Chromium inside a network namespace
whose download is shaped by `tbf` on the host side of its veth (tests/support/shaped_link.py;
the server listens on that veth's host address, tests/support/shaped_meeting.py). Its tile
of the publisher is 1280x720, so it wants the top layer.

Unconstrained, its score is good or excellent; shaped to 64 kbit/s (less than the audio and
the lowest video layer: heavy loss at first, then its video paused for bandwidth and frozen)
it drops to poor, on its own tile, on the publisher's tile of it, in the `connection_quality`
events it received and in /metrics; once the shaping is lifted it recovers to good or
excellent (the hysteresis holds a better level back a few seconds: it is not instant).
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from tests.support import browser
from tests.support.shaped_link import unavailable_reason
from tests.support.shaped_meeting import set_tile, source_video, stage  # noqa: F401  (fixtures)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser.chromium_available(), reason="needs /usr/bin/chromium and playwright"),
    pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or ""),
]

SHAPED_KBIT = 64
FINE = ("good", "excellent")
SETTLE_TIMEOUT_S = 30.0
POOR_WITHIN_S = 20.0
RECOVER_WITHIN_S = 60.0


async def shown_level(page, pid: str, own: bool) -> dict:
    """What `pid`'s camera tile on `page` shows of its connection quality (`own`: the
    page's own tile): {quality ("" before a score), label, shown}."""
    return await page.evaluate(
        """([pid, own]) => {
            const selector = own ? '[data-testid=tile-local]'
                : `[data-testid=tile][data-participant-id="${pid}"][data-source=camera]`;
            const tile = document.querySelector(selector);
            if (!tile) return {quality: '', label: '', shown: false, tile: false};
            const dot = tile.querySelector('[data-testid=tile-connection]');
            return {quality: tile.dataset.connectionQuality || '', label: dot.getAttribute('aria-label') || '',
                    shown: !dot.hidden, tile: true};
        }""",
        [pid, own],
    )


async def level_within(page, pid: str, own: bool, wanted: tuple[str, ...], timeout: float) -> tuple[float | None, dict]:
    """(seconds until the tile shows a level in `wanted`, or None; what it shows then)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        shown = await shown_level(page, pid, own)
        if shown["quality"] in wanted:
            return round(loop.time() - started, 2), shown
        if loop.time() - started > timeout:
            return None, shown
        await asyncio.sleep(0.25)


async def events_for(page, pid: str) -> list[str]:
    """The levels `pid` was given in the `connection_quality` events `page` received, in order."""
    return [quality for quality, _ in await scored_events_for(page, pid)]


async def scored_events_for(page, pid: str) -> list[tuple[str, float]]:
    history = await page.evaluate("window.conclave.connectionQualityHistory()")
    return [(entry["quality"], entry["score"]) for entry in history if entry["participant_id"] == pid]


def sample(scrape: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", scrape, re.MULTILINE)
    return float(match.group(1)) if match else -1.0


def exported(scrape: str, level: str) -> float:
    match = re.search(rf'^conclave_participant_quality{{quality="{level}"}} (\S+)$', scrape, re.MULTILINE)
    return float(match.group(1)) if match else -1.0


@pytest.mark.timeout(300)
async def test_a_shaped_subscriber_drops_to_poor_and_recovers(stage):
    observed: dict = {}
    link = stage.add_link()  # unconstrained at first
    await stage.start()
    publisher = await stage.publisher()
    pid = stage.publisher_id
    watcher = await stage.watcher("Shaped", link)
    wid = await browser.participant_id(watcher)
    await set_tile(watcher, pid, 1280, 720)

    took, shown = await level_within(watcher, wid, True, FINE, SETTLE_TIMEOUT_S)
    observed["unconstrained: own tile good or excellent (s)"] = (took, shown)
    assert took is not None, observed
    assert shown["shown"] and shown["label"].startswith("Connection: "), observed
    took, shown = await level_within(publisher, wid, False, FINE, SETTLE_TIMEOUT_S)
    observed["unconstrained: the publisher's tile of it (s)"] = (took, shown)
    assert took is not None, observed

    link.shape(SHAPED_KBIT)
    took, shown = await level_within(watcher, wid, True, ("poor",), POOR_WITHIN_S)
    observed[f"shaped {SHAPED_KBIT} kbit/s: own tile poor (s)"] = (took, shown)
    took_there, shown_there = await level_within(publisher, wid, False, ("poor",), POOR_WITHIN_S)
    observed["shaped: the publisher's tile of it poor (s)"] = (took_there, shown_there)
    scrape = await stage.server.metrics()
    observed["shaped: /metrics poor, excellent+good"] = (exported(scrape, "poor"),
                                                         exported(scrape, "excellent") + exported(scrape, "good"))
    await asyncio.sleep(10.0)  # it stays poor while shaped (nothing better lasts long enough)
    observed["shaped, 10 s later: own tile"] = await shown_level(watcher, wid, True)
    observed["shaped: events for it"] = await events_for(watcher, wid)
    print(json.dumps(observed, indent=1, default=str))
    assert took is not None and shown["label"] == "Connection: Poor", observed
    assert took_there is not None, observed
    assert exported(scrape, "poor") == 1 and exported(scrape, "excellent") + exported(scrape, "good") == 1, observed
    assert observed["shaped, 10 s later: own tile"]["quality"] == "poor", observed

    link.lift()
    took, shown = await level_within(watcher, wid, True, FINE, RECOVER_WITHIN_S)
    observed["lifted: own tile good or excellent again (s)"] = (took, shown)
    took_there, _ = await level_within(publisher, wid, False, FINE, 10.0)
    observed["lifted: the publisher's tile of it (s)"] = took_there
    await asyncio.sleep(10.0)  # and it stays there: no flap back to poor
    observed["lifted, 10 s later: own tile"] = await shown_level(watcher, wid, True)
    levels = await events_for(watcher, wid)
    observed["events for it, in order"] = levels
    scrape = await stage.server.metrics()
    observed["lifted: /metrics poor"] = exported(scrape, "poor")
    observed["round trips measured (Chromium's LSR/DLSR), their sum (s)"] = (
        sample(scrape, "conclave_rtt_seconds_count"), sample(scrape, "conclave_rtt_seconds_sum"))
    observed["subscribe loss windows, their sum"] = (
        sample(scrape, 'conclave_loss_ratio_count{direction="subscribe"}'),
        sample(scrape, 'conclave_loss_ratio_sum{direction="subscribe"}'))
    observed["events for it with scores"] = await scored_events_for(watcher, wid)
    observed["events for the publisher"] = await scored_events_for(watcher, pid)
    observed["freeze reports sent"] = await watcher.evaluate("window.conclave.freezeReportsSent()")
    print(json.dumps(observed, indent=1, default=str))
    assert took is not None and took_there is not None, observed
    # The events tell the story in order: fine, then poor, then fine again.
    first_poor = levels.index("poor")
    assert levels[0] in FINE and levels[-1] in FINE and first_poor > 0, observed
    assert observed["lifted, 10 s later: own tile"]["quality"] in FINE, observed
    assert exported(scrape, "poor") == 0, observed
    assert sample(scrape, "conclave_rtt_seconds_count") > 0, observed
    # The freeze reports reached the server all along (the page sends one every 5 s).
    assert observed["freeze reports sent"] >= 3, observed
