"""Supervises the recorder process: spawn, readiness, restarts, stats, stop.

The recorder is `python -m recorder --channel-fd FD` with its configuration in the
environment (recorder.api.recorder_command: it may hold an API key), FD being one end of
a socketpair, like an SFU worker (control.workers). It is "up" once it
answers RECORDER_GET_STATS on its channel, until its process exits or its channel closes.
Then it is restarted after a backoff (doubling while it keeps dying quickly), and every
listener hears `on_up(generation)` again: control.recording resumes its active recordings
into new segments of the same recordings (attempt + 1). A recorder crash never propagates
out of this module.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from recorder import api as recorder_api
from sfu import api
from sfu.channel import ChannelClient, ChannelError

log = logging.getLogger(__name__)

DEFAULT_COMMAND = (sys.executable, "-m", "recorder")  # then --channel-fd N
READY_TIMEOUT_S = 30.0
# The recorder closes its last segments on SIGTERM (up to a segment of work per track).
STOP_TIMEOUT_S = 15.0
PROBE_INTERVAL_S = 0.1
QUICK_FAILURE_S = 30.0  # dying sooner than this after start doubles the next backoff
MAX_BACKOFF_FACTOR = 32

UpListener = Callable[[int], None]
NotificationListener = Callable[[str, api.Message], None]
StatsListener = Callable[[recorder_api.RecorderStats], None]
RestartListener = Callable[[], None]


def recorder_config_json(cfg: Any) -> str:
    """What the recorder process gets (recorder.api.recorder_config_json)."""
    if getattr(cfg, "recorder", None) is None:  # settings without a recorder section
        return json.dumps({"data_dir": os.path.abspath(cfg.data_dir), "log_level": cfg.logging.level})
    return recorder_api.recorder_config_json(cfg)


class RecorderSupervisor:
    def __init__(
        self,
        config_json: str,
        *,
        restart_backoff_s: float = 1.0,
        stats_interval_s: float = 5.0,
        command: Sequence[str] = DEFAULT_COMMAND,
        ready_timeout_s: float = READY_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        self._config_json = config_json
        self._restart_backoff_s = restart_backoff_s
        self._stats_interval_s = stats_interval_s
        self._command = tuple(command)
        self._ready_timeout_s = ready_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self.process: asyncio.subprocess.Process | None = None
        self.client: ChannelClient | None = None
        self.up = False
        self.generation = 0
        self.restarts = 0  # conclave_recorder_restarts_total
        self.stats: Any = None  # the last recorder_api.RecorderStats
        self._up_listeners: list[UpListener] = []
        self._notification_listeners: list[NotificationListener] = []
        self._stats_listeners: list[StatsListener] = []
        self._restart_listeners: list[RestartListener] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._up_changed = asyncio.Event()

    # ------------------------------------------------------------------ listeners

    def add_up_listener(self, listener: UpListener) -> None:
        """Called with the generation each time a recorder process becomes ready."""
        self._up_listeners.append(listener)

    def add_notification_listener(self, listener: NotificationListener) -> None:
        self._notification_listeners.append(listener)

    def add_stats_listener(self, listener: StatsListener) -> None:
        """Called with each stats snapshot (metrics)."""
        self._stats_listeners.append(listener)

    def add_restart_listener(self, listener: RestartListener) -> None:
        """Called each time the recorder is started again after it died."""
        self._restart_listeners.append(listener)

    # ------------------------------------------------------------------ queries

    @property
    def pid(self) -> int | None:
        if self.process is None or self.process.returncode is not None:
            return None
        return self.process.pid

    async def request(self, message: api.Message, timeout: float = 10.0) -> api.Message:
        """ChannelError("recorder_down") when no recorder runs."""
        client = self.client
        if not self.up or client is None:
            raise ChannelError("recorder_down", "the recorder is not running")
        return await client.request(message, timeout=timeout)

    async def wait_up(self, timeout: float) -> bool:
        """True once a recorder is up (at once if it is), False after `timeout`."""
        deadline = time.monotonic() + timeout
        while not self.up and not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._up_changed.clear()
            try:
                await asyncio.wait_for(self._up_changed.wait(), remaining)
            except asyncio.TimeoutError:
                return self.up
        return self.up

    # ------------------------------------------------------------------ lifecycle

    async def start(self, wait_ready_s: float | None = None) -> None:
        """Spawn the recorder and wait (bounded) for it; never raises for the recorder."""
        self._tasks.append(asyncio.create_task(self._supervise(), name="recorder"))
        self._tasks.append(asyncio.create_task(self._poll_stats(), name="recorder-stats"))
        if wait_ready_s == 0:
            return  # the caller does not wait; a recording start waits for it instead
        if not await self.wait_up(self._ready_timeout_s if wait_ready_s is None else wait_ready_s):
            log.error("the recorder did not become ready; serving anyway, restarts continue")

    async def stop(self) -> None:
        """SIGTERM the recorder (it closes its segments), SIGKILL after the stop timeout."""
        self._stopping = True
        self._up_changed.set()
        if self.process is not None:
            await self._terminate(self.process)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def kill_now(self) -> None:
        pid = self.pid
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def _supervise(self) -> None:
        quick_failures = 0
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recorder: supervision error")
            if self._stopping:
                return
            quick_failures = quick_failures + 1 if time.monotonic() - started < QUICK_FAILURE_S else 0
            delay = self._restart_backoff_s * min(2 ** max(quick_failures - 1, 0), MAX_BACKOFF_FACTOR)
            log.warning("recorder: restarting in %.1f s", delay)
            await asyncio.sleep(delay)
            self.restarts += 1
            self.stats = None
            self._call(self._restart_listeners)

    async def _run_once(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # The configuration travels in the environment (recorder.api.recorder_command).
            command = recorder_api.recorder_command(child.fileno(), self._config_json)
            process = await asyncio.create_subprocess_exec(
                *self._command,
                "--channel-fd",
                str(child.fileno()),
                env=command.env,
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches control only; control stops it in order
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self.generation += 1
        generation = self.generation
        self.process = process
        log.info("recorder: started pid %d", process.pid)
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        client = ChannelClient(reader, writer, lambda entity, msg: self._on_notification(generation, entity, msg))
        self.client = client
        exited = asyncio.ensure_future(process.wait())
        closed = asyncio.ensure_future(client.wait_closed())
        try:
            if await self._probe(client, exited, closed) and not self._stopping:
                self.up = True
                self._up_changed.set()
                log.info("recorder: ready (pid %d)", process.pid)
                for listener in list(self._up_listeners):
                    try:
                        listener(generation)
                    except Exception:
                        log.exception("recorder up listener failed")
                await asyncio.wait([exited, closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.up = False
            self.client = None
            client.close()
            exited.cancel()
            closed.cancel()
            await self._terminate(process)
            if not self._stopping:
                log.error("recorder: pid %d exited with code %s", process.pid, process.returncode)

    async def _probe(self, client: ChannelClient, exited: asyncio.Future[Any], closed: asyncio.Future[Any]) -> bool:
        """Ready = answers a stats request (whatever it does before that)."""
        deadline = time.monotonic() + self._ready_timeout_s
        while time.monotonic() < deadline and not (exited.done() or closed.done() or self._stopping):
            try:
                stats = await client.request(recorder_api.RecorderGetStats(), timeout=1.0)
            except ChannelError:
                await asyncio.sleep(PROBE_INTERVAL_S)
                continue
            self._take_stats(stats)
            return True
        if not (exited.done() or closed.done()):
            log.error("recorder: not ready after %.0f s, killing it", self._ready_timeout_s)
        return False

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
            log.warning("recorder pid %d ignored SIGTERM for %.0f s, killing it", process.pid, self._stop_timeout_s)
            try:
                process.kill()
            except ProcessLookupError:
                return
            await process.wait()

    def _on_notification(self, generation: int, entity_id: str, message: api.Message) -> None:
        if generation != self.generation:
            return
        for listener in list(self._notification_listeners):
            try:
                listener(entity_id, message)
            except Exception:
                log.exception("recorder notification listener failed for %s", message.NAME)

    # ------------------------------------------------------------------ stats

    async def _poll_stats(self) -> None:
        while True:
            await asyncio.sleep(self._stats_interval_s)
            await self.refresh_stats()

    async def refresh_stats(self) -> None:
        """One stats snapshot (bounded; a failure is only logged), handed to the listeners."""
        if not self.up:
            return
        try:
            timeout = max(1.0, min(self._stats_interval_s, 10.0))
            stats = await self.request(recorder_api.RecorderGetStats(), timeout=timeout)
        except ChannelError as exc:
            log.warning("recorder: stats request failed: %s", exc)
            return
        self._take_stats(stats)

    def _take_stats(self, stats: api.Message) -> None:
        if not isinstance(stats, recorder_api.RecorderStats):
            return
        self.stats = stats
        for listener in list(self._stats_listeners):
            try:
                listener(stats)
            except Exception:
                log.exception("recorder stats listener failed")

    @staticmethod
    def _call(listeners: list[RestartListener]) -> None:
        for listener in list(listeners):
            try:
                listener()
            except Exception:
                log.exception("recorder restart listener failed")
