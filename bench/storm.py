"""The join storm at several sizes (issue 16's proof): what control pays per join as the
meeting grows.

    python -m bench run join-storm --sizes 100,300,1000 --publishers 2 --media video ...

For each size, on a server of its own: the publishers join and publish, then the M light
participants (codec-less bench clients, bench/client.py) join within `--spread` seconds.
Measured from the first joiner's start until every joiner receives every publisher's
streams (audio: a first packet; video: a first keyframe), bounded by MEDIA_DEADLINE_S:

- whether all joined and all received within TARGET_S of the first join;
- control's CPU seconds (the `conclave serve` process, /proc) per join;
- the signaling bytes and messages every client received (publishers' included) per join,
  and the participant-list messages (`participants_changed`) per participant.

Then the per-join costs at the largest size over the smallest (the proof: <= 2).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from bench import scenarios
from bench.media import load_clip
from bench.meetings import HostLogin, MeetingMaker
from bench.plainrtp.procfs import cpu_seconds_stat
from bench.pool import ClientPool
from bench.runner import JOIN_TIMEOUT_S, RunOptions, plan_cpus, progress
from bench.server import INITIAL_HOST_EMAIL, ServerUnderTest

TARGET_S = 20.0  # all joined and receiving within this of the first join
MEDIA_DEADLINE_S = 90.0  # the wait for media is bounded by this (after the first join)
POLL_S = 0.5
PUBLISHERS_SETTLE_S = 2.0  # the publishers' media flowing before the storm
ROSTER_TYPES = ("participants_changed", "participant_joined", "participant_left", "participant_updated")
MAX_SIZES = 5
STATS_INTERVAL_S = 2.0


@dataclass
class StormResult:
    joiners: int
    publishers: int
    media: list[str]
    joined: int = 0
    receiving: int = 0  # joiners receiving every publisher's streams
    all_media_s: float | None = None  # first join -> the last joiner receiving everything
    control_cpu_s: float = 0.0
    signaling_bytes: int = 0  # received by every client during the storm
    signaling_messages: int = 0
    messages_by_type: dict[str, int] = field(default_factory=dict)
    roster_messages_max: int = 0  # per participant
    roster_messages_mean: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)
    server_log: list[str] = field(default_factory=list)  # its last warnings when the storm failed

    @property
    def within_target(self) -> bool:
        return (
            self.joined == self.joiners
            and self.receiving == self.joiners
            and self.all_media_s is not None
            and self.all_media_s <= TARGET_S
        )

    def per_join(self) -> dict[str, float]:
        joins = max(1, self.joiners)
        return {
            "control_cpu_ms": 1000 * self.control_cpu_s / joins,
            "signaling_bytes": self.signaling_bytes / joins,
            "signaling_messages": self.signaling_messages / joins,
        }


def storm_once(joiners: int, publishers: int, spread_s: float, media: list[str], options: RunOptions) -> StormResult:
    """One storm of `joiners` on a server of its own, stopped (with its clients) at the end."""
    result = StormResult(joiners, publishers, media)
    plan = scenarios.join_storm(joiners, publishers, spread_s, media)
    server_cpus, client_cpus = plan_cpus(options.workers, options.pin, options.url is None)
    server = ServerUnderTest(
        url=None, workers=options.workers, cpus=server_cpus, control_cpus=client_cpus,
        root=options.server_root, extra_config=options.server_config,
        # A worker busy with hundreds of DTLS handshakes at once answers its stats late;
        # at the bench's 0.25 s (1 s timeout, 3 unanswered) control took it for hung.
        stats_interval_s=STATS_INTERVAL_S,
    )  # fmt: skip
    pool = ClientPool(options.processes or max(1, len(client_cpus or []) or 1), client_cpus, options.media, options.log_level)
    try:
        server.start()
        pool.start()
        password = server.initial_host_password()
        login = HostLogin(INITIAL_HOST_EMAIL, password) if password else None
        meeting = asyncio.run(_create_meeting(MeetingMaker(server.url or "", login)))
        publishers_batch, joiners_batch = plan.batches
        for reply in pool.join([{**s, "meeting": meeting} for s in publishers_batch.specs], 0.0, JOIN_TIMEOUT_S, 1, serial=True):
            result.failures.update(reply["failed"])
        time.sleep(PUBLISHERS_SETTLE_S)
        streams = publishers * len(media)
        before = _media(pool, streams)
        cpu_before = cpu_seconds_stat(server.control_pid)
        progress(options, f"storm of {joiners}: joining within {spread_s:g} s")
        # Light participants: once every stream has started they stop reading (the kernel
        # drops what follows), so the clients' CPU goes to joining, not to counting packets.
        specs = [{**s, "meeting": meeting, "passive": True, "passive_after": streams} for s in joiners_batch.specs]
        for reply in pool.join(specs, spread_s, JOIN_TIMEOUT_S, options.join_concurrency):
            result.failures.update(reply["failed"])
        now = _wait_for_media(pool, streams, {s["name"] for s in specs}, options)
        result.control_cpu_s = cpu_seconds_stat(server.control_pid) - cpu_before
        _account(result, before, now, {s["name"] for s in specs})
        progress(options, f"storm of {joiners}: {result.receiving}/{joiners} receiving, last after {result.all_media_s} s")
        if not result.within_target:  # what the server said about it
            result.server_log = [line for line in server.log_tail(20000).splitlines() if " INFO " not in line][-20:]
        return result
    finally:
        pool.stop()
        server.stop()


async def _create_meeting(maker: MeetingMaker) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        return (await maker.create(session, "join storm")).to_dict()


def _media(pool: ClientPool, streams: int) -> dict[str, dict[str, Any]]:
    participants: dict[str, dict[str, Any]] = {}
    for reply in pool.command({"cmd": "media", "streams": streams}, 30.0):
        participants.update(reply["participants"])
    return participants


def _wait_for_media(pool: ClientPool, streams: int, joiners: set[str], options: RunOptions) -> dict[str, dict[str, Any]]:
    """Poll the clients until every joiner has `streams` streams, bounded in time."""
    first = None
    while True:
        now = _media(pool, streams)
        starts = [now[n]["join_started"] for n in joiners if n in now]
        first = min(starts) if starts else time.time()
        done = sum(1 for n in joiners if now.get(n, {}).get("media_at") is not None)
        if done == len(joiners) or time.time() - first > MEDIA_DEADLINE_S:
            return now
        progress(options, f"  {done}/{len(joiners)} receiving")
        time.sleep(POLL_S)


def _account(result: StormResult, before: dict[str, dict[str, Any]], now: dict[str, dict[str, Any]], joiners: set[str]) -> None:
    present = [n for n in joiners if n in now]
    result.joined = sum(1 for n in present if now[n]["joined"] and n not in result.failures)
    media_at = [now[n]["media_at"] for n in present if now[n]["media_at"] is not None]
    result.receiving = sum(1 for n in present if now[n]["media_at"] is not None and n not in result.failures)
    first = min((now[n]["join_started"] for n in present), default=None)
    if first is not None and media_at and result.receiving == len(joiners):
        result.all_media_s = round(max(media_at) - first, 2)
    by_type: dict[str, int] = {}
    roster_counts = []
    for name, counters in now.items():
        base = before.get(name, {"signaling_bytes": 0, "signaling_messages": {}})
        result.signaling_bytes += counters["signaling_bytes"] - base["signaling_bytes"]
        roster = 0
        for kind, count in counters["signaling_messages"].items():
            delta = count - base["signaling_messages"].get(kind, 0)
            by_type[kind] = by_type.get(kind, 0) + delta
            if kind in ROSTER_TYPES:
                roster += delta
        roster_counts.append(roster)
    result.messages_by_type = dict(sorted(by_type.items(), key=lambda item: -item[1]))
    result.signaling_messages = sum(by_type.values())
    result.roster_messages_max = max(roster_counts, default=0)
    result.roster_messages_mean = round(sum(roster_counts) / max(1, len(roster_counts)), 1)


def run_sizes(
    sizes: list[int], publishers: int, spread_s: float, media: list[str], options: RunOptions, rate: float | None = None
) -> dict[str, Any]:
    """The storm at each size (joining within `spread_s`, or at `rate` joins a second); the
    report with the ratios of the largest to the smallest."""
    if not 1 <= len(sizes) <= MAX_SIZES:
        raise SystemExit(f"--sizes: 1 to {MAX_SIZES} sizes")
    for size in sizes:
        scenarios.join_storm(size, publishers, spread_s, media)  # bounded (MAX_PARTICIPANTS) before anything starts
    load_clip(options.media)
    results = [storm_once(size, publishers, size / rate if rate else spread_s, media, options) for size in sizes]
    smallest, largest = results[0].per_join(), results[-1].per_join()
    ratios = {key: round(largest[key] / smallest[key], 2) if smallest[key] else None for key in largest}
    return {
        "scenario": "join-storm",
        "command": " ".join(["python", "-m", "bench", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "cpus": len(os.sched_getaffinity(0)),
        "target_s": TARGET_S,
        "joins_per_second": rate,
        "spread_s": None if rate else spread_s,
        "results": [{**asdict(r), "per_join": r.per_join(), "within_target": r.within_target} for r in results],
        "ratio_largest_over_smallest": ratios,
    }


def format_sizes(report: dict[str, Any]) -> str:
    rows = [
        "| joiners (+ publishers) | joined | receiving all | first join → all receiving (s) | control CPU ms / join "
        "| signaling bytes / join | signaling messages / join | participant-list messages per participant (max / mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        per = r["per_join"]
        rows.append(
            f"| {r['joiners']} (+{r['publishers']}) | {r['joined']} | {r['receiving']} | {r['all_media_s']} "
            f"| {per['control_cpu_ms']:.2f} | {per['signaling_bytes']:,.0f} | {per['signaling_messages']:.1f} "
            f"| {r['roster_messages_max']} / {r['roster_messages_mean']} |"
        )
    ratios = report["ratio_largest_over_smallest"]
    rows.append("")
    rows.append("per join, largest / smallest: " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
    for r in report["results"]:
        if r["failures"]:
            rows.append(f"failures at {r['joiners']}: " + json.dumps(dict(list(r["failures"].items())[:5])))
    return "\n".join(rows)
