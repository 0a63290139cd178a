"""Adaptive media proven in real Chromium behind real shaped links (issue 11, "Proof").

A Chromium publisher on the host sends its camera, a fixed 1280x720 15 fps file, as three
simulcast layers (320x180, 640x360, 1280x720). Subscribers that only watch run in the same
host Chromium (unconstrained) or in a Chromium inside a network namespace whose download
is shaped by `tbf` on the host side of its veth (tests/support/shaped_link.py). The
server listens on that veth's host address (tests/support/shaped_meeting.py). Every
subscriber's camera tile is sized (or hidden) through the page, as a user's layout would;
the client reports it as `tile_size`.

Each test measures every point it proves before failing, so one run reports all numbers:
the measurements are printed and put in the failure message.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.support import browser
from tests.support.shaped_link import unavailable_reason
from tests.support.shaped_meeting import (  # noqa: F401  (fixtures: source_video, stage)
    page_now,
    sample_bandwidth,
    samples,
    set_tile,
    source_video,
    stage,
    start_sampler,
    tile_quality,
    video_stats,
    wait_top_encoding,
    wait_video,
)
from tests.support.video_series import first_time, longest_stall_ms, summarize, window

pytestmark = [
    pytest.mark.browser,
    # One more run on failure: four Chromiums coding 720p on two cores shared with the rest
    # of the suite. Starved, the publisher's and the watchers' own timing decides the last
    # hundred milliseconds (CI once measured a 1.1 s stall where this machine sees 0.6 s).
    # Both runs must miss for the test to fail; each run reports all its measurements.
    pytest.mark.flaky(reruns=1),
    pytest.mark.skipif(not browser.chromium_available(), reason="needs /usr/bin/chromium and playwright"),
    pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or ""),
]

SHAPED_KBIT = 350
LOW_LAYER_MAX_WIDTH = 340  # 320x180, whatever rounding the encoder does
TOP_WIDTH = 1280
FLOWING_FRAMES = 5  # in one second, of 15


class Checks:
    """Soft assertions: every measurement recorded, all failures reported together."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.observed: dict[str, Any] = {}
        self.failed: list[str] = []

    def note(self, key: str, value: Any) -> None:
        self.observed[key] = value

    def expect(self, claim: str, ok: bool, observed: Any) -> None:
        self.observed[claim] = {"ok": bool(ok), "observed": observed}
        if not ok:
            self.failed.append(f"{claim}: observed {observed}")

    def verify(self) -> None:
        report = json.dumps(self.observed, indent=1, default=str)
        print(f"\n{self.name} measurements:\n{report}")
        assert not self.failed, f"{self.name}: " + "; ".join(self.failed) + f"\nall measurements: {report}"


async def reach_width(page, pid: str, width: int, timeout: float, loop) -> float | None:
    """Seconds until `page` decodes frames `width` wide and goes on decoding them: a run of
    polls, each with new frames at that width, lasting a second with FLOWING_FRAMES or more
    (frameWidth alone is the last decoded frame's, however old). None: not within `timeout`."""
    started = loop.time()
    run: list[tuple[float, int]] = []  # (time, framesDecoded) of the current run
    previous = None
    while loop.time() - started < timeout + 1.0:  # the last second only confirms
        entry = await video_stats(page, pid) or {}
        now, frames = loop.time(), entry.get("framesDecoded", 0)
        moving = previous is not None and frames > previous
        previous = frames
        if entry.get("frameWidth") != width or not moving:
            run.clear()
        else:
            run.append((now, frames))
            flowing = run[-1][0] - run[0][0] >= 1.0 and run[-1][1] - run[0][1] >= FLOWING_FRAMES
            if flowing and run[0][0] - started <= timeout:
                return round(run[0][0] - started, 2)
        await asyncio.sleep(0.25)
    return None


async def indicator_within(page, pid: str, wanted, timeout: float) -> dict:
    """The tile's quality indicator once `wanted(it)`, or as it is after `timeout`
    (track_quality follows the allocation that chose the layer: a moment after the frames)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        shown = await tile_quality(page, pid)
        if wanted(shown) or asyncio.get_running_loop().time() > deadline:
            return shown
        await asyncio.sleep(0.2)


@pytest.mark.timeout(300)
async def test_three_subscribers_unconstrained_shaped_and_hidden(stage):
    checks = Checks("unconstrained / shaped 350 kbit/s / hidden")
    loop = asyncio.get_running_loop()
    link = stage.add_link(rate_kbit=SHAPED_KBIT)
    await stage.start()
    publisher = await stage.publisher()
    pid = stage.publisher_id
    free = await stage.watcher("Unconstrained")
    hidden = await stage.watcher("Hidden")
    shaped = await stage.watcher("Shaped", link)
    for page in (free, shaped):
        await set_tile(page, pid, 1280, 720)
    await set_tile(hidden, pid, 320, 180)
    for page in (free, shaped, hidden):
        await start_sampler(page, pid)

    # Unconstrained: 1280 within 10 s of the publisher sending its top layer (Chromium
    # sends it only once its own estimate covers all three: its doing, not the SFU's).
    tiles_set = loop.time()
    await wait_top_encoding(publisher)
    checks.note("publisher: top encoding flowing after the tiles were set (s)", round(loop.time() - tiles_set, 2))
    checks.expect("unconstrained: frameWidth 1280 within 10 s of the top encoding flowing (s)",
                  (took := await reach_width(free, pid, TOP_WIDTH, 10, loop)) is not None, took)
    # The tile's quality indicator says what it gets: the top layer, full bars.
    shown = await indicator_within(free, pid, lambda q: q["shown"] and q["bars"] == 3 and not q["paused"], 3.0)
    checks.expect("unconstrained: tile shows 3 bars (layer 3 of 3) within 3 s of 1280",
                  "layer 3 of 3" in shown["label"], shown)  # fmt: skip

    # Hidden: it saw video first (so silence later means something), then the tile goes.
    await wait_video(hidden, pid, lambda s: s["framesDecoded"] > 0, 20, "hidden watcher: video before hiding")
    await set_tile(hidden, pid, 320, 180, hidden=True)
    await asyncio.sleep(2.0)  # the 250 ms report delay, the worker's request, packets in flight

    # Shaped: 60 s at 350 kbit/s, from now (the subscriber joined ~10 s ago).
    start = {page: await page_now(page) for page in (shaped, hidden)}
    await asyncio.sleep(60.0)
    slow = summarize(window(await samples(shaped), start[shaped]))
    checks.note("shaped: 60 s window", slow.as_dict())
    checks.expect("shaped: low layer (frameWidth <= 340 at the end of 60 s)",
                  0 < slow.last_width <= LOW_LAYER_MAX_WIDTH, slow.last_width)
    checks.expect("shaped: >= 10 fps over 60 s", slow.fps >= 10, round(slow.fps, 2))
    checks.expect("shaped: totalFreezesDuration growth < 1 s over 60 s", slow.freeze_s < 1.0, round(slow.freeze_s, 2))
    # Chromium counts a freeze only once the next frame comes: a stream that stopped has none.
    checks.expect("shaped: no stall over 1 s in 60 s (longest time without a new frame, ms)",
                  slow.longest_stall_ms < 1000, round(slow.longest_stall_ms))
    shown = await tile_quality(shaped, pid)
    checks.expect("shaped: tile shows 1 bar, layer 1 of 3", shown["shown"] and shown["bars"] == 1
                  and "layer 1 of 3" in shown["label"] and not shown["paused"], shown)  # fmt: skip
    unseen = window(await samples(hidden), start[hidden])
    hidden_bytes = unseen[-1]["bytesReceived"] - unseen[0]["bytesReceived"] if unseen else None
    checks.expect("hidden: no video bytes over the 60 s", hidden_bytes == 0, hidden_bytes)
    shown = await tile_quality(hidden, pid)
    # Hiding it was the page's own doing: no "paused" look, no indicator (nothing to say).
    checks.expect("hidden: no indicator, not marked paused", not shown["shown"] and not shown["paused"], shown)

    # Lifted: back to 1280 within 15 s.
    link.lift()
    recovery = asyncio.ensure_future(sample_bandwidth(stage.server, 18))
    checks.expect("shaped, lifted: frameWidth 1280 within 15 s (s)",
                  (took := await reach_width(shaped, pid, TOP_WIDTH, 15, loop)) is not None, took)
    shown = await indicator_within(shaped, pid, lambda q: q["bars"] == 3 and not q["paused"], 3.0)
    checks.expect("shaped, lifted: tile back to 3 bars", shown["bars"] == 3 and not shown["paused"], shown)
    checks.note("shaped after lifting", await video_stats(shaped, pid))
    checks.note("publisher encodings", await publisher.evaluate("window.conclave.publishEncodings()"))
    checks.note("after lifting: estimates (sum over subscribers) and probes sent", await recovery)
    checks.verify()


async def watching_at_the_top(stage, link, name: str, loop) -> tuple[Any, str]:
    """The server, the publisher, and one watcher behind `link` with a 1280x720 tile,
    sampled, once it decodes the top layer: (its page, the publisher's id)."""
    await stage.start()
    publisher = await stage.publisher()
    pid = stage.publisher_id
    page = await stage.watcher(name, link)
    await set_tile(page, pid, 1280, 720)
    await start_sampler(page, pid)
    await wait_top_encoding(publisher)
    took = await reach_width(page, pid, TOP_WIDTH, 20, loop)
    assert took is not None, f"{name}: no 1280 to start from: {await video_stats(page, pid)}"
    return page, pid


@pytest.mark.timeout(180)
async def test_step_down_mid_call(stage):
    checks = Checks("step down unconstrained -> 350 kbit/s")
    loop = asyncio.get_running_loop()
    link = stage.add_link()  # unconstrained at first
    page, pid = await watching_at_the_top(stage, link, "Stepped", loop)
    await asyncio.sleep(3.0)

    stepped = await page_now(page)
    link.shape(SHAPED_KBIT)
    await asyncio.sleep(15.0)
    after = window(await samples(page), stepped)
    lower = first_time(after, lambda s: 0 < s["frameWidth"] < TOP_WIDTH)
    lower_s = None if lower is None else round((lower - stepped) / 1000, 2)
    continuing = window(after, lower) if lower is not None else []
    checks.note("15 s after the step", summarize(after).as_dict())
    checks.expect("a lower layer within 3 s (s)", lower_s is not None and lower_s <= 3.0, lower_s)
    checks.expect("frames decoded at the lower layer",
                  len(continuing) > 1 and continuing[-1]["framesDecoded"] > continuing[0]["framesDecoded"],
                  summarize(continuing).as_dict() if continuing else None)
    stall = longest_stall_ms(after)
    checks.expect("no freeze over 1 s (longest time without a new frame, ms)", stall < 1000, round(stall))
    checks.verify()


@pytest.mark.timeout(180)
async def test_switching_up_and_down_ten_times(stage):
    checks = Checks("switching 10 times")
    loop = asyncio.get_running_loop()
    link = stage.add_link()  # unconstrained: the switches are the tile's doing
    page, pid = await watching_at_the_top(stage, link, "Switched", loop)

    started = await page_now(page)
    marks = []
    for n in range(10):
        small = n % 2 == 0
        await set_tile(page, pid, *((320, 180) if small else (1280, 720)))
        marks.append(await page_now(page))
        await asyncio.sleep(1.5)
    series = window(await samples(page), started)
    whole = summarize(series)
    checks.note("over the 10 switches", whole.as_dict())
    slices = [window(series, a, b) for a, b in zip(marks, [*marks[1:], series[-1]["t"]])]
    per_slice = [int(s[-1]["framesDecoded"] - s[0]["framesDecoded"]) if len(s) > 1 else 0 for s in slices]
    checks.expect("framesDecoded rises in each of the 10 intervals (frames per 1.5 s)",
                  all(n > 0 for n in per_slice), per_slice)
    checks.expect("the layer really switched (frame widths seen, >= 5 changes)",
                  len(whole.widths) >= 6, whole.widths)
    checks.expect("no decoder error (no keyframe request by the subscriber, no page error)",
                  whole.plis == 0 and not page.conclave_errors, {"plis": whole.plis, "errors": page.conclave_errors})
    checks.expect("no freeze over 500 ms (longest time without a new frame, ms)",
                  whole.longest_stall_ms < 500, round(whole.longest_stall_ms))
    checks.note("chromium freezes (count, s)", (whole.freezes, round(whole.freeze_s, 2)))
    checks.verify()
