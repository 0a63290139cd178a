"""Run one scenario plan against a server and measure one window.

1. Start the server under test (or use --url), pinned to its CPUs; the client processes
   pinned to the others (os.sched_setaffinity; both only where the machine allows).
2. Create the meetings, join the batches (bounded in time), let media settle (warm-up).
3. Window: /metrics, worker CPU (/proc) and client counters at both ends; progress lines
   while it runs.
4. Stop every client process and the server by PID, whatever happened.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bench import scenarios
from bench.media import MediaParams, load_clip
from bench.meetings import HostLogin, MeetingMaker
from bench.plainrtp.procfs import cpu_seconds_stat
from bench.pool import ClientPool
from bench.report import Report, build_report
from bench.server import (
    INITIAL_HOST_EMAIL,
    ServerUnderTest,
    rss_bytes,
    runqueue_wait_seconds,
    scrape,
    system_busy_seconds,
)

T = TypeVar("T")

JOIN_TIMEOUT_S = 120.0
REPORT_TIMEOUT_S = 30.0
PROGRESS_EVERY_S = 5.0


@dataclass
class RunOptions:
    duration_s: float = 10.0
    warmup_s: float = 3.0
    workers: int = 1
    url: str | None = None
    worker_pids: dict[int, int] = field(default_factory=dict)  # with --url
    processes: int = 0  # 0: one per client CPU
    pin: bool = True
    media: MediaParams = field(default_factory=MediaParams)
    server_root: Path | None = None
    join_concurrency: int = 4
    host_login: HostLogin | None = None  # with --url, for a server with accounts
    realtime: bool = False  # workers SCHED_FIFO (pinned runs only)
    server_config: dict[str, dict[str, Any]] = field(default_factory=dict)  # --set: {section: {key: value}}
    quiet: bool = False
    log_level: str = "WARNING"


def plan_cpus(workers: int, pin: bool, managed: bool) -> tuple[list[int] | None, list[int] | None]:
    """(server CPUs, client CPUs): the server's workers get the first CPUs, clients the rest."""
    online = sorted(os.sched_getaffinity(0))
    if not pin or len(online) < 2:
        return None, None
    if not managed:
        return None, None
    if workers >= len(online):
        return None, None  # nothing left to pin clients away to
    return online[:workers], online[workers:]


def progress(options: RunOptions, text: str) -> None:
    if not options.quiet:
        print(f"[bench] {text}", file=sys.stderr, flush=True)


def run_plan(
    name: str,
    plan: scenarios.Plan,
    params: dict[str, Any],
    options: RunOptions,
    on_window: Callable[[ServerUnderTest], dict[str, Any]] | None = None,
) -> Report:
    load_clip(options.media)  # encode once now, not in every client process
    server_cpus, client_cpus = plan_cpus(options.workers, options.pin, options.url is None)
    server = ServerUnderTest(
        url=options.url,
        workers=options.workers,
        cpus=server_cpus,
        control_cpus=client_cpus,
        realtime=options.realtime and server_cpus is not None,
        root=options.server_root,
        extra_config=options.server_config,
    )
    processes = options.processes or max(1, len(client_cpus or []) or 1)
    pool = ClientPool(processes, client_cpus, options.media, options.log_level)
    try:
        server.start()
        if options.worker_pids:
            server.worker_pids = dict(options.worker_pids)
        elif not server.managed:
            server.worker_pids = {}
        progress(options, f"server {server.url} workers {server.worker_pids or '?'} cpus {server_cpus or 'any'}; clients cpus {client_cpus or 'any'} x {processes}")
        pool.start()
        rss_baseline = _rss(server.worker_pids)
        login = options.host_login
        password = server.initial_host_password()
        if login is None and password:
            login = HostLogin(INITIAL_HOST_EMAIL, password)
        meetings = asyncio.run(_create_meetings(MeetingMaker(server.url or "", login), plan.meetings))
        failures: dict[str, str] = {}
        for batch in plan.batches:
            specs = [{**spec, "meeting": meetings[spec["meeting"]].to_dict()} for spec in batch.specs]
            started = time.monotonic()
            concurrency = batch.concurrency or options.join_concurrency
            replies = pool.join(specs, batch.spread_s, JOIN_TIMEOUT_S, concurrency, serial=batch.concurrency == 1)
            for reply in replies:
                failures.update(reply["failed"])
            progress(options, f"joined {len(specs) - sum(len(r['failed']) for r in replies)}/{len(specs)} in {time.monotonic() - started:.1f} s")
        progress(options, f"warm-up {options.warmup_s:.0f} s")
        time.sleep(options.warmup_s)

        ours = {**server.worker_pids, "control": server.control_pid, **{f"client{i}": pid for i, pid in enumerate(pool.pids)}}
        ours = {k: v for k, v in ours.items() if v is not None}
        metrics_before = scrape(server.url or "")
        rss_window_start = _rss(server.worker_pids)
        cpu_before = _cpu(ours)
        waited_before = _waited(server.worker_pids)
        busy_before = system_busy_seconds()
        pool.command({"cmd": "mark"}, REPORT_TIMEOUT_S)
        started = time.monotonic()
        rss_samples = _window(options, server, started, metrics_before)
        metrics_after = scrape(server.url or "")
        cpu_after = _cpu(ours)
        waited_after = _waited(server.worker_pids)
        busy_after = system_busy_seconds()
        rss_after = _rss(server.worker_pids)
        window_s = time.monotonic() - started
        client_reports = pool.command({"cmd": "report"}, REPORT_TIMEOUT_S)
        ours_busy = sum(cpu_after[p] - cpu_before[p] for p in cpu_after if p in cpu_before)
        control_pid = server.control_pid
        extra = on_window(server) if on_window else {}
        report = build_report(
            scenario=name,
            params=params,
            command=" ".join(shlex.quote(a) for a in ["python", "-m", "bench", *sys.argv[1:]]),
            window_s=window_s,
            metrics_before=metrics_before,
            metrics_after=metrics_after,
            cpu_before=cpu_before,
            cpu_after=cpu_after,
            rss_baseline=rss_baseline,
            rss_after=rss_after,
            worker_pids=server.worker_pids,
            client_reports=client_reports,
            join_failures=failures,
            participants=plan.participants,
        )
        report.extra.update(extra)
        for worker in report.workers:
            if worker.pid in rss_window_start and worker.pid in rss_after:
                worker.rss_window_growth_mb = (rss_after[worker.pid] - rss_window_start[worker.pid]) / 2**20
            worker.rss_samples_mb = [round(sample.get(worker.pid, 0) / 2**20, 2) for sample in rss_samples]
            if worker.pid in waited_before and worker.pid in waited_after:
                worker.runqueue_wait_ms = (waited_after[worker.pid] - waited_before[worker.pid]) * 1000
        if control_pid in cpu_after and control_pid in cpu_before:
            report.extra["control CPU (cores)"] = (cpu_after[control_pid] - cpu_before[control_pid]) / window_s
        others = max(0.0, (busy_after - busy_before - ours_busy) / window_s)
        report.extra["CPU used by other processes (cores)"] = others
        if others > 0.2:
            report.notes.append(f"other processes kept {others:.2f} cores busy during the window: numbers are noisy")
        if server_cpus is None and options.url is None:
            report.notes.append("not pinned: clients and workers share the CPUs")
        return report
    finally:
        pool.stop()
        server.stop()


def _window(options: RunOptions, server: ServerUnderTest, started: float, first: dict) -> list[dict[int, int]]:
    """Sleep through the window, printing packets/s and sampling the workers' RSS every
    few seconds (a leak shows as a slope over a long run)."""
    end = started + options.duration_s
    last_time, last = started, first
    samples = [_rss(server.worker_pids)]
    while True:
        now = time.monotonic()
        if now >= end:
            return samples
        time.sleep(min(PROGRESS_EVERY_S, end - now))
        samples.append(_rss(server.worker_pids))
        if time.monotonic() >= end or options.quiet:
            continue
        try:
            current = scrape(server.url or "")
        except OSError:
            continue
        elapsed = time.monotonic() - last_time
        d_out = sum(w.counters.get("packets_sent", 0) for w in current.values()) - sum(
            w.counters.get("packets_sent", 0) for w in last.values()
        )
        progress(options, f"{time.monotonic() - started:5.1f}/{options.duration_s:.0f} s  out {d_out / elapsed:,.0f} pkt/s")
        last_time, last = time.monotonic(), current


async def _create_meetings(maker: MeetingMaker, count: int) -> list:
    async with aiohttp.ClientSession() as session:
        return [await maker.create(session, f"bench {i}") for i in range(count)]


def _per_pid(pids: dict[int, int], read: Callable[[int], T], errors: tuple[type[Exception], ...] = (OSError,)) -> dict[int, T]:
    """pid -> read(pid) for each process in `pids` (worker index -> pid) that could be read."""
    result = {}
    for pid in pids.values():
        try:
            result[pid] = read(pid)
        except errors:
            pass
    return result


def _cpu(pids: dict[int, int]) -> dict[int, float]:
    return _per_pid(pids, cpu_seconds_stat)


def _waited(pids: dict[int, int]) -> dict[int, float]:
    return _per_pid(pids, runqueue_wait_seconds, (OSError, IndexError, ValueError))


def _rss(pids: dict[int, int]) -> dict[int, int]:
    return _per_pid(pids, rss_bytes)
