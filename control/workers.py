"""Supervises the SFU worker processes: spawn, readiness, restarts, stats, stop.

Each worker is `python -m sfu.worker --index I --channel-fd FD --config-json JSON`, FD
being one end of a socketpair passed to the child. A worker is "up" from its
WORKER_READY notification until its process exits or its channel closes; then every
listener hears `on_worker_down(index, generation)` and the worker is restarted after a
backoff. A worker crash never propagates out of this module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from sfu import api
from sfu.channel import ChannelClient, ChannelError

log = logging.getLogger(__name__)

DEFAULT_COMMAND = (sys.executable, "-m", "sfu.worker")
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
# A worker that dies sooner than this after starting counts as a quick failure: each one
# in a row doubles the restart backoff (capped), so a crash loop does not spin.
QUICK_FAILURE_S = 30.0
MAX_BACKOFF_FACTOR = 32
# Stats requests in a row that a live worker leaves unanswered before it counts as hung.
HUNG_AFTER_UNANSWERED = 3

DownListener = Callable[[int, int], None]
NotificationListener = Callable[[int, int, str, api.Message], None]


class WorkerHandle:
    """One worker slot; its process changes on restart, `generation` counts them."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.generation = 0
        self.process: asyncio.subprocess.Process | None = None
        self.client: ChannelClient | None = None
        self.up = False
        self.port: int | None = None
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
    return json.dumps({"sfu": dataclasses.asdict(cfg.sfu), "media": dataclasses.asdict(cfg.media)})


class WorkerSupervisor:
    def __init__(
        self,
        count: int,
        config_json: str,
        *,
        restart_backoff_s: float = 1.0,
        stats_interval_s: float = 5.0,
        command: Sequence[str] = DEFAULT_COMMAND,
        ready_timeout_s: float = READY_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        self.workers = [WorkerHandle(i) for i in range(count)]
        self._config_json = config_json
        self._restart_backoff_s = restart_backoff_s
        self._stats_interval_s = stats_interval_s
        self._command = tuple(command)
        self._ready_timeout_s = ready_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
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

    async def request(self, index: int, generation: int, message: api.Message) -> api.Message:
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
        processes = [w.process for w in self.workers if w.process is not None]
        await asyncio.gather(*(self._terminate(p) for p in processes), return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def kill_now(self) -> None:
        """Forced exit: SIGKILL every worker immediately (no awaiting)."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def _supervise(self, worker: WorkerHandle) -> None:
        quick_failures = 0
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._run_once(worker)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker %d: supervision error", worker.index)
            if self._stopping:
                return
            quick_failures = quick_failures + 1 if time.monotonic() - started < QUICK_FAILURE_S else 0
            factor = min(2 ** max(quick_failures - 1, 0), MAX_BACKOFF_FACTOR)
            delay = self._restart_backoff_s * factor
            log.warning("worker %d: restarting in %.1f s", worker.index, delay)
            await asyncio.sleep(delay)
            worker.restarts += 1

    async def _run_once(self, worker: WorkerHandle) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command,
                "--index",
                str(worker.index),
                "--channel-fd",
                str(child.fileno()),
                "--config-json",
                self._config_json,
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                # Own process group: a terminal's Ctrl-C reaches control only, and
                # control stops the workers in order.
                start_new_session=True,
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        worker.generation += 1
        worker.unanswered_stats = 0
        generation = worker.generation
        worker.process = process
        worker._ready = asyncio.get_running_loop().create_future()
        log.info("worker %d: started pid %d", worker.index, process.pid)
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        client = ChannelClient(
            reader, writer, lambda entity, msg: self._on_notification(worker, generation, entity, msg)
        )
        worker.client = client
        exited = asyncio.ensure_future(process.wait())
        closed = asyncio.ensure_future(client.wait_closed())
        try:
            await asyncio.wait(
                [worker._ready, exited, closed], timeout=self._ready_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if worker._ready.done() and not exited.done() and not closed.done():
                worker.up = True
                self._live_changed.set()
                log.info("worker %d: ready, UDP port %s, announced %s", worker.index, worker.port, worker.announced_ips)
                await asyncio.wait([exited, closed], return_when=asyncio.FIRST_COMPLETED)
            elif not (exited.done() or closed.done()):
                log.error("worker %d: not ready after %.0f s, killing it", worker.index, self._ready_timeout_s)
        finally:
            was_up = worker.up
            worker.up = False
            worker.client = None
            client.close()
            exited.cancel()
            closed.cancel()
            await self._terminate(process)
            worker._retire_stats()
            worker.routers.clear()
            if not self._stopping:
                log.error("worker %d: pid %d exited with code %s", worker.index, process.pid, process.returncode)
            if was_up and not self._stopping:
                self._notify_down(worker.index, generation)

    async def _terminate(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is not None:
            return
        try:
            process.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(process.wait(), self._stop_timeout_s)
        except asyncio.TimeoutError:
            log.warning("worker pid %d ignored SIGTERM for %.0f s, killing it", process.pid, self._stop_timeout_s)
            try:
                process.kill()
            except ProcessLookupError:
                return
            await process.wait()

    def _notify_down(self, index: int, generation: int) -> None:
        for listener in self._down_listeners:
            try:
                listener(index, generation)
            except Exception:
                log.exception("worker-down listener failed")

    def _on_notification(self, worker: WorkerHandle, generation: int, entity_id: str, message: api.Message) -> None:
        if generation != worker.generation:
            return
        if isinstance(message, api.WorkerReady):
            worker.port = message.port
            worker.announced_ips = list(message.announced_ips)
            if worker._ready is not None and not worker._ready.done():
                worker._ready.set_result(None)
            return
        for listener in self._notification_listeners:
            try:
                listener(worker.index, generation, entity_id, message)
            except Exception:
                log.exception("worker notification listener failed for %s", message.NAME)

    async def _poll_stats(self) -> None:
        while True:
            await asyncio.sleep(self._stats_interval_s)
            await self.refresh_stats()

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
