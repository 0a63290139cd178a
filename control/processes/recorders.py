"""Supervises the recorder process: spawn, readiness, restarts, stats, stop.

The recorder is `python -m recorder --channel-fd FD` with its configuration in the
environment (recorder.api.recorder_command: it may hold an API key), FD being one end of
a socketpair, like an SFU worker (control.processes.workers). It is "up" once it
answers RECORDER_GET_STATS on its channel, until its process exits or its channel closes.
Then it is restarted after a backoff (doubling while it keeps dying quickly), and every
listener hears `on_up(generation)` again: control.recording.service resumes its active recordings
into new segments of the same recordings (attempt + 1). A recorder crash never propagates
out of this module. What it shares with the workers' supervisor is control.processes.supervision.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from common.channel import ChannelClient, ChannelError
from common.messages import Message
from control.processes import supervision as processes
from recorder import api as recorder_api

log = logging.getLogger(__name__)

DEFAULT_COMMAND = (sys.executable, "-m", "recorder")  # then --channel-fd N
READY_TIMEOUT_S = processes.READY_TIMEOUT_S
# The recorder closes its last segments on SIGTERM (up to a segment of work per track).
STOP_TIMEOUT_S = 15.0
PROBE_INTERVAL_S = 0.1

UpListener = Callable[[int], None]
NotificationListener = Callable[[str, Message], None]
StatsListener = Callable[[recorder_api.RecorderStats], None]
RestartListener = Callable[[], None]
DownListener = Callable[[int], None]


def recorder_config_json(cfg: Any) -> str:
    """What the recorder process gets (recorder.api.recorder_config_json)."""
    if getattr(cfg, "recorder", None) is None:  # settings without a recorder section
        return json.dumps({"data_dir": os.path.abspath(cfg.data_dir), "log_level": cfg.logging.level})
    return recorder_api.recorder_config_json(cfg)


class RecorderSupervisor(processes.ChildSupervisor):
    DEFAULT_COMMAND = DEFAULT_COMMAND
    STOP_TIMEOUT_S = STOP_TIMEOUT_S
    LABEL = "recorder"
    _log = log

    def __init__(self, config_json: str, **options: Any) -> None:
        """options: those of processes.ChildSupervisor (restart_backoff_s, command, ...)."""
        super().__init__(config_json, **options)
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
        self._down_listeners: list[DownListener] = []
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

    def add_down_listener(self, listener: DownListener) -> None:
        """Called with the generation when a recorder that was up is gone (its process
        exited or its channel closed; not at shutdown): what lived in it (live mixes)
        went with it."""
        self._down_listeners.append(listener)

    def add_restart_listener(self, listener: RestartListener) -> None:
        """Called each time the recorder is started again after it died."""
        self._restart_listeners.append(listener)

    # ------------------------------------------------------------------ queries

    @property
    def pid(self) -> int | None:
        if self.process is None or self.process.returncode is not None:
            return None
        return self.process.pid

    async def request(self, message: Message, timeout: float = 10.0) -> Message:
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
        await self._cancel_tasks()

    def kill_now(self) -> None:
        pid = self.pid
        processes.kill_now([] if pid is None else [pid])

    async def _supervise(self) -> None:
        await self._supervise_child(self._run_once, "recorder", self._restarted)

    def _restarted(self) -> None:
        self.restarts += 1
        self.stats = None
        self._call(self._restart_listeners)

    def _command_for(self, channel_fd: int) -> tuple[list[str], dict[str, str]]:
        # The configuration travels in the environment (recorder.api.recorder_command), over
        # an allow-listed copy of control's (no operator key, token secret, credentials).
        base = processes.child_environment(processes.RECORDER_ENVIRONMENT)
        env = recorder_api.recorder_command(channel_fd, self._config_json, base_env=base).env
        return [*self._command, "--channel-fd", str(channel_fd)], env

    async def _run_once(self) -> None:
        process, parent = await processes.spawn_with_channel(self._command_for)
        self.generation += 1
        generation = self.generation
        self.process = process
        log.info("recorder: started pid %d", process.pid)
        child = await processes.ChildChannel.open(
            process, parent, lambda entity, msg: self._on_notification(generation, entity, msg)
        )
        self.client = child.client
        try:
            if await self._probe(child) and not self._stopping:
                self.up = True
                self._up_changed.set()
                log.info("recorder: ready (pid %d)", process.pid)
                for listener in list(self._up_listeners):
                    try:
                        listener(generation)
                    except Exception:
                        log.exception("recorder up listener failed")
                await child.wait_gone()
        finally:
            was_up, self.up = self.up, False
            self.client = None
            if was_up and not self._stopping:  # at shutdown nobody needs to fall back
                self._tell_down(generation)
            await self._shut(child)
            if not self._stopping:
                log.error("recorder: pid %d exited with code %s", process.pid, process.returncode)

    async def _probe(self, child: processes.ChildChannel) -> bool:
        """Ready = answers a stats request (whatever it does before that)."""
        deadline = time.monotonic() + self._ready_timeout_s
        while time.monotonic() < deadline and not (child.gone() or self._stopping):
            try:
                stats = await child.client.request(recorder_api.RecorderGetStats(), timeout=1.0)
            except ChannelError:
                await asyncio.sleep(PROBE_INTERVAL_S)
                continue
            self._take_stats(stats)
            return True
        if not child.gone():
            log.error("recorder: not ready after %.0f s, killing it", self._ready_timeout_s)
        return False

    def _on_notification(self, generation: int, entity_id: str, message: Message) -> None:
        if generation != self.generation:
            return
        for listener in list(self._notification_listeners):
            try:
                listener(entity_id, message)
            except Exception:
                log.exception("recorder notification listener failed for %s", message.NAME)

    # ------------------------------------------------------------------ stats

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

    def _take_stats(self, stats: Message) -> None:
        if not isinstance(stats, recorder_api.RecorderStats):
            return
        self.stats = stats
        for listener in list(self._stats_listeners):
            try:
                listener(stats)
            except Exception:
                log.exception("recorder stats listener failed")

    def _tell_down(self, generation: int) -> None:
        for listener in list(self._down_listeners):
            try:
                listener(generation)
            except Exception:
                log.exception("recorder down listener failed")

    @staticmethod
    def _call(listeners: list[RestartListener]) -> None:
        for listener in list(listeners):
            try:
                listener()
            except Exception:
                log.exception("recorder restart listener failed")
