"""Supervises the SFU worker processes: spawn, readiness, restarts, stats, stop.

Each worker is `python -m sfu.worker --index I --channel-fd FD --config-json JSON`, FD
being one end of a socketpair passed to the child. A worker is "up" from its
WORKER_READY notification until its process exits or its channel closes; then every
listener hears `on_worker_down(index, generation)` and the worker is restarted after a
backoff. A worker crash never propagates out of this module. What it shares with the
recorder's supervisor (spawning, the backoff, stopping) is control.processes.supervision.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from common.channel import ChannelClient, ChannelError
from common.messages import Message
from control.processes import supervision as processes
from sfu import api

log = logging.getLogger(__name__)

DEFAULT_COMMAND = (sys.executable, "-m", "sfu.worker")
READY_TIMEOUT_S = processes.READY_TIMEOUT_S
STOP_TIMEOUT_S = 5.0
# Stats requests in a row that a live worker leaves unanswered before it counts as hung.
HUNG_AFTER_UNANSWERED = 3

DownListener = Callable[[int, int], None]
NotificationListener = Callable[[int, int, str, Message], None]


class WorkerHandle:
    """One worker slot; its process changes on restart, `generation` counts them."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.generation = 0
        self.process: asyncio.subprocess.Process | None = None
        self.client: ChannelClient | None = None
        self.up = False
        self.port: int | None = None
        self.tcp_port = 0  # its ICE-TCP port (0: off)
        self.announced_ips: list[str] = []
        self.restarts = 0
        self.routers: set[str] = set()  # meeting ids placed here (this generation)
        self.stats: api.WorkerStats | None = None
        # Counters of previous processes of this slot, so exported totals never go back.
        self.past_counters: dict[str, int] = {}
        self.past_dropped: dict[str, int] = {}
        self.unanswered_stats = 0  # consecutive stats requests that timed out
        self._ready: asyncio.Future[None] | None = None

    @property
    def pid(self) -> int | None:
        if self.process is None or self.process.returncode is not None:
            return None
        return self.process.pid

    def counters(self) -> dict[str, int]:
        return _add(self.past_counters, self.stats.counters if self.stats else {})

    def dropped(self) -> dict[str, int]:
        return _add(self.past_dropped, self.stats.dropped if self.stats else {})

    def gauge(self, name: str) -> float:
        if not self.up or self.stats is None:
            return 0.0
        return float(self.stats.gauges.get(name, 0.0))

    def _retire_stats(self) -> None:
        if self.stats is not None:
            self.past_counters = _add(self.past_counters, self.stats.counters)
            self.past_dropped = _add(self.past_dropped, self.stats.dropped)
        self.stats = None


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    total = dict(a)
    for key, value in b.items():
        total[key] = total.get(key, 0) + int(value)
    return total


def worker_config_json(cfg: Any) -> str:
    return json.dumps({
        "sfu": dataclasses.asdict(cfg.sfu), "media": dataclasses.asdict(cfg.media),
        "logging": dataclasses.asdict(cfg.logging),  # level, format, per-component levels (no secret)
    })  # fmt: skip


class WorkerSupervisor(processes.ChildSupervisor):
    DEFAULT_COMMAND = DEFAULT_COMMAND
    STOP_TIMEOUT_S = STOP_TIMEOUT_S
    LABEL = "worker"
    _log = log

    def __init__(self, count: int, config_json: str, **options: Any) -> None:
        """options: those of processes.ChildSupervisor (restart_backoff_s, command, ...)."""
        super().__init__(config_json, **options)
        self.workers = [WorkerHandle(i) for i in range(count)]
        self._down_listeners: list[DownListener] = []
        self._notification_listeners: list[NotificationListener] = []
        self._live_changed = asyncio.Event()  # set whenever a worker becomes ready

    # ------------------------------------------------------------------ listeners

    def add_down_listener(self, listener: DownListener) -> None:
        self._down_listeners.append(listener)

    def add_notification_listener(self, listener: NotificationListener) -> None:
        self._notification_listeners.append(listener)

    # ------------------------------------------------------------------ queries

    def all_up(self) -> bool:
        return bool(self.workers) and all(w.up for w in self.workers)

    def pids(self) -> list[int]:
        return [pid for pid in (w.pid for w in self.workers) if pid is not None]

    def pick_worker(self) -> WorkerHandle | None:
        """The live worker with the fewest routers (meetings), lowest index on ties."""
        live = [w for w in self.workers if w.up and w.client is not None]
        return min(live, key=lambda w: (len(w.routers), w.index), default=None)

    async def wait_for_live_worker(self, timeout: float) -> WorkerHandle | None:
        """The least-loaded live worker, waiting up to `timeout` while workers restart."""
        worker = self.pick_worker()
        if worker is not None or self._stopping:
            return worker
        self._live_changed.clear()
        try:
            await asyncio.wait_for(self._live_changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return self.pick_worker()

    def handle_for(self, index: int, generation: int) -> WorkerHandle:
        """The worker running `generation` of slot `index`, or ChannelError if it is gone."""
        worker = self.workers[index]
        if not worker.up or worker.generation != generation or worker.client is None:
            raise ChannelError("worker_down", f"worker {index} is not running")
        return worker

    async def request(self, index: int, generation: int, message: Message) -> Message:
        worker = self.handle_for(index, generation)
        assert worker.client is not None
        return await worker.client.request(message)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, wait_ready_s: float | None = None) -> None:
        """Spawn every worker; wait (bounded) until all are ready. Never raises for a worker."""
        for worker in self.workers:
            self._tasks.append(asyncio.create_task(self._supervise(worker), name=f"worker-{worker.index}"))
        self._tasks.append(asyncio.create_task(self._poll_stats(), name="worker-stats"))
        deadline = time.monotonic() + (self._ready_timeout_s if wait_ready_s is None else wait_ready_s)
        while not self.all_up() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not self.all_up():
            log.error("not every SFU worker became ready; serving anyway, restarts continue")

    async def stop(self) -> None:
        """Stop every worker by PID: SIGTERM, then SIGKILL after the stop timeout."""
        self._stopping = True
        running = [w.process for w in self.workers if w.process is not None]
        await asyncio.gather(*(self._terminate(p) for p in running), return_exceptions=True)
        await self._cancel_tasks()

    def kill_now(self) -> None:
        """Forced exit: SIGKILL every worker immediately (no awaiting)."""
        processes.kill_now(self.pids())

    async def _supervise(self, worker: WorkerHandle) -> None:
        def restarted() -> None:
            worker.restarts += 1

        await self._supervise_child(lambda: self._run_once(worker), f"worker {worker.index}", restarted)

    def _command_for(self, worker: WorkerHandle, channel_fd: int) -> tuple[list[str], dict[str, str]]:
        argv = [*self._command, "--index", str(worker.index), "--channel-fd", str(channel_fd)]
        return [*argv, "--config-json", self._config_json], processes.child_environment()

    async def _run_once(self, worker: WorkerHandle) -> None:
        process, parent = await processes.spawn_with_channel(lambda fd: self._command_for(worker, fd))
        worker.generation += 1
        worker.unanswered_stats = 0
        generation = worker.generation
        worker.process = process
        worker._ready = asyncio.get_running_loop().create_future()
        log.info("worker %d: started pid %d", worker.index, process.pid)
        child = await processes.ChildChannel.open(
            process, parent, lambda entity, msg: self._on_notification(worker, generation, entity, msg)
        )
        worker.client = child.client
        try:
            await asyncio.wait(
                [worker._ready, child.exited, child.closed],
                timeout=self._ready_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if worker._ready.done() and not child.gone():
                worker.up = True
                self._live_changed.set()
                log.info(
                    "worker %d: ready, UDP port %s, ICE-TCP port %s, announced %s",
                    worker.index, worker.port, worker.tcp_port or "off", worker.announced_ips,
                )  # fmt: skip
                await child.wait_gone()
            elif not child.gone():
                log.error("worker %d: not ready after %.0f s, killing it", worker.index, self._ready_timeout_s)
        finally:
            was_up = worker.up
            worker.up = False
            worker.client = None
            await self._shut(child)
            worker._retire_stats()
            worker.routers.clear()
            if not self._stopping:
                log.error("worker %d: pid %d exited with code %s", worker.index, process.pid, process.returncode)
            if was_up and not self._stopping:
                self._notify_down(worker.index, generation)

    def _notify_down(self, index: int, generation: int) -> None:
        for listener in self._down_listeners:
            try:
                listener(index, generation)
            except Exception:
                log.exception("worker-down listener failed")

    def _on_notification(self, worker: WorkerHandle, generation: int, entity_id: str, message: Message) -> None:
        if generation != worker.generation:
            return
        if isinstance(message, api.WorkerReady):
            worker.port = message.port
            worker.tcp_port = message.tcp_port
            worker.announced_ips = list(message.announced_ips)
            if worker._ready is not None and not worker._ready.done():
                worker._ready.set_result(None)
            return
        for listener in self._notification_listeners:
            try:
                listener(worker.index, generation, entity_id, message)
            except Exception:
                log.exception("worker notification listener failed for %s", message.NAME)

    async def refresh_stats(self) -> None:
        """Ask every live worker for a stats snapshot (bounded; failures only logged)."""
        timeout = max(1.0, min(self._stats_interval_s, 10.0))

        async def one(worker: WorkerHandle) -> None:
            client, generation = worker.client, worker.generation
            if not worker.up or client is None:
                return
            try:
                stats = await client.request(api.WorkerGetStats(), timeout=timeout)
            except ChannelError as exc:
                log.warning("worker %d: stats request failed: %s", worker.index, exc)
                if exc.code == "timeout" and worker.generation == generation:
                    self._count_unanswered(worker)
                return
            if isinstance(stats, api.WorkerStats) and worker.up and worker.generation == generation:
                worker.stats = stats
                worker.unanswered_stats = 0

        await asyncio.gather(*(one(w) for w in self.workers))

    def _count_unanswered(self, worker: WorkerHandle) -> None:
        """A worker that stops answering is hung: kill it so that it is restarted."""
        worker.unanswered_stats += 1
        if worker.unanswered_stats >= HUNG_AFTER_UNANSWERED and worker.process is not None:
            log.error("worker %d: %d stats requests unanswered, killing it", worker.index, worker.unanswered_stats)
            worker.unanswered_stats = 0
            try:
                worker.process.kill()
            except ProcessLookupError:
                pass
