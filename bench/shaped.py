"""A WebRTC scenario with constrained subscribers: what each one really receives.

    python -m bench.shaped [--rates none,1000,350] [--duration 60] [--warmup 10] [--json out.json]

One Chromium publisher (a fixed 1280x720 15 fps camera, three simulcast layers) and one
Chromium subscriber per rate, each inside a network namespace whose download is limited by
`tbf` to that rate in kbit/s (`none`: not limited), a large (1280x720) tile each: what
they are given is the server's choice under each link. After `--warmup` seconds, a window
of `--duration` seconds is measured on every subscriber's inbound-rtp (Chromium's own
counters, sampled in the page every 100 ms): resolution at the end and every width seen
(the switches), decoded fps, Chromium's freezes and the longest time without a new
frame, bytes and rate, keyframe requests and losses. Then the server's conclave_sfu_*
figures from /metrics, whatever exists (per-subscriber estimates once the worker has them).

Needs root (namespaces, veth, tc), /usr/bin/chromium, Playwright and ffmpeg. Bounded: at
most MAX_SUBSCRIBERS links, a window of at most MAX_DURATION s; everything it made
(namespaces, browsers, the server and its worker, the temporary directory) is removed at
the end, also on failure or Ctrl-C. Reuses the proof harness: tests/support/shaped_link.py
and tests/support/shaped_meeting.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.support.shaped_link import unavailable_reason
from tests.support.shaped_meeting import (
    Stage,
    make_source_video,
    page_now,
    samples,
    set_tile,
    sfu_metrics,
    start_sampler,
    wait_top_encoding,
)
from tests.support.video_series import summarize, window

MAX_SUBSCRIBERS = 6
MAX_DURATION = 300.0
MAX_WARMUP = 120.0
COLUMNS = ("rate", "width", "widths seen", "fps", "freezes", "freeze s", "stall ms", "kbit/s", "MB", "PLIs", "lost")


def parse_rates(text: str) -> list[int | None]:
    rates: list[int | None] = []
    for item in text.split(","):
        item = item.strip().lower()
        rates.append(None if item in ("none", "0", "") else int(item))
        if rates[-1] is not None and rates[-1] < 50:
            raise argparse.ArgumentTypeError(f"{item}: a rate in kbit/s of at least 50")
    if not 1 <= len(rates) <= MAX_SUBSCRIBERS:
        raise argparse.ArgumentTypeError(f"1 to {MAX_SUBSCRIBERS} rates")
    return rates


def rate_name(rate: int | None) -> str:
    return "unlimited" if rate is None else f"{rate} kbit/s"


async def run(rates: list[int | None], duration: float, warmup: float, workdir: Path) -> dict[str, Any]:
    source = make_source_video(workdir)
    async with Stage(workdir, source) as stage:
        links = [stage.add_link(rate) for rate in rates]
        await stage.start()
        publisher = await stage.publisher()
        pid = stage.publisher_id
        pages = []
        for index, link in enumerate(links):
            page = await stage.watcher(f"Sub{index} {rate_name(link.rate_kbit)}", link)
            await set_tile(page, pid, 1280, 720)
            await start_sampler(page, pid)
            pages.append(page)
        await wait_top_encoding(publisher)
        progress(f"joined; warming up {warmup:.0f} s")
        await asyncio.sleep(warmup)
        starts = [await page_now(page) for page in pages]
        progress(f"measuring {duration:.0f} s")
        await asyncio.sleep(duration)
        subscribers = []
        for rate, page, start in zip(rates, pages, starts):
            series = window(await samples(page), start)
            summary = summarize(series).as_dict()
            summary["lost"] = int(series[-1]["packetsLost"] - series[0]["packetsLost"]) if len(series) > 1 else 0
            # frameWidth is the last decoded frame's: only a frame decoded in the window counts.
            decoded = summary["frames"] > 0
            summary["resolution"] = f"{series[-1]['frameWidth']}x{series[-1]['frameHeight']}" if decoded else "-"
            subscribers.append({"rate_kbit": rate, **summary})
        return {
            "duration_s": duration,
            "subscribers": subscribers,
            "publisher": await publisher.evaluate("window.conclave.publishEncodings()"),
            "sfu_metrics": [line for line in sfu_metrics(await stage.server.metrics()) if "_bucket{" not in line],
        }


def progress(text: str) -> None:
    print(f"bench.shaped: {text}", file=sys.stderr, flush=True)


def table(result: dict[str, Any]) -> str:
    rows = [COLUMNS]
    for sub in result["subscribers"]:
        rows.append((
            rate_name(sub["rate_kbit"]), sub["resolution"], "→".join(map(str, sub["widths"])) or "-",
            f"{sub['fps']:.1f}", str(sub["freezes"]), f"{sub['freeze_s']:.2f}", f"{sub['longest_stall_ms']:.0f}",
            f"{sub['kbit_s']:.0f}", f"{sub['bytes'] / 1e6:.2f}", str(sub["plis"]), str(sub["lost"]),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows]
    lines.append("")
    lines.append("publisher encodings: " + ", ".join(
        f"{e['rid']} {e['frameWidth']}x{e['frameHeight']} {e['bytesSent'] * 8 / 1e3:.0f} kbit sent"
        f" ({e['qualityLimitationReason']})" for e in result["publisher"]))
    lines.append("server conclave_sfu_* (/metrics):")
    lines.extend(f"  {line}" for line in result["sfu_metrics"] or ["(none)"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shaped", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=parse_rates, default=parse_rates("none,1000,350"),
                        help="one subscriber per rate, kbit/s or none (default none,1000,350)")
    parser.add_argument("--duration", type=float, default=60.0, help=f"measured window, s (<= {MAX_DURATION:.0f})")
    parser.add_argument("--warmup", type=float, default=10.0, help=f"before the window, s (<= {MAX_WARMUP:.0f})")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= MAX_DURATION or not 0 <= args.warmup <= MAX_WARMUP:
        parser.error(f"--duration 1..{MAX_DURATION:.0f}, --warmup 0..{MAX_WARMUP:.0f}")
    reason = unavailable_reason()
    if reason:
        print(f"bench.shaped: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="conclave-bench-shaped-") as workdir:
        result = asyncio.run(run(args.rates, args.duration, args.warmup, Path(workdir)))
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
