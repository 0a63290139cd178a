"""The child processes control runs and talks to over a channel: what the SFU worker
supervisor (control.processes.workers) and the recorder supervisor (control.processes.recorders) share.

A child gets one end of a socketpair as `--channel-fd FD` and runs in its own session (a
terminal's Ctrl-C reaches control only, and control stops its children in order). Its
environment is allow-listed (`child_environment`): what Python, the locale and the
children's own settings need, never control's secrets (the operator key, the token
secret, `CONCLAVE_AUTH__*`, S3 or other cloud credentials, anything not listed). It is
alive until its process exits or its channel closes, whichever comes first; it is stopped
with SIGTERM, then SIGKILL after a timeout; and it is restarted after a backoff that
doubles (capped) while it keeps dying quickly, so a crash loop does not spin.

Each supervisor passes its own logger and label ("worker 0", "recorder"), so log lines
read and are filtered as they were before this module existed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from common.channel import ChannelClient, NotificationHandler

# A child that dies sooner than this after starting counts as a quick failure: each one in
# a row doubles the restart backoff, up to this factor.
QUICK_FAILURE_S = 30.0
MAX_BACKOFF_FACTOR = 32

READY_TIMEOUT_S = 30.0

# What a child may inherit of control's environment: names, and prefixes ending in "_".
CHILD_ENVIRONMENT = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "TZ", "LANG", "LANGUAGE", "LC_",
    "PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONFAULTHANDLER",
    "PYTHONIOENCODING", "PYTHONUTF8", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "CONCLAVE_WORKER_LOG_LEVEL",
)  # fmt: skip
# And what the recorder needs besides to reach customer storage through TLS and proxies.
RECORDER_ENVIRONMENT = (
    "SSL_CERT_FILE", "SSL_CERT_DIR", "AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
)  # fmt: skip


def child_environment(
    extra: Sequence[str] = (), base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The allow-listed part of `base` (control's environment) for a child process."""
    allowed = (*CHILD_ENVIRONMENT, *extra)
    names = {name for name in allowed if not name.endswith("_")}
    prefixes = tuple(name for name in allowed if name.endswith("_"))
    source = os.environ if base is None else base
    return {key: value for key, value in source.items() if key in names or key.startswith(prefixes)}


# argv and environment (None: inherit control's) of a child, given its channel fd.
CommandFor = Callable[[int], tuple[Sequence[str], Mapping[str, str] | None]]


class ChildSupervisor:
    """Base of control.processes.workers.WorkerSupervisor and control.processes.recorders.RecorderSupervisor:
    how their children are started, restarted, polled and stopped.

    A subclass sets DEFAULT_COMMAND, STOP_TIMEOUT_S, LABEL ("worker", "recorder": log
    lines) and _log (its module's logger), and defines `refresh_stats`."""

    DEFAULT_COMMAND: tuple[str, ...] = ()
    STOP_TIMEOUT_S = 5.0
    LABEL = "child"
    _log = logging.getLogger(__name__)

    def __init__(
        self,
        config_json: str,
        *,
        restart_backoff_s: float = 1.0,
        stats_interval_s: float = 5.0,
        command: Sequence[str] | None = None,  # None: DEFAULT_COMMAND
        ready_timeout_s: float = READY_TIMEOUT_S,
        stop_timeout_s: float | None = None,  # None: STOP_TIMEOUT_S
    ) -> None:
        self._config_json = config_json
        self._restart_backoff_s = restart_backoff_s
        self._stats_interval_s = stats_interval_s
        self._command = tuple(self.DEFAULT_COMMAND if command is None else command)
        self._ready_timeout_s = ready_timeout_s
        self._stop_timeout_s = self.STOP_TIMEOUT_S if stop_timeout_s is None else stop_timeout_s
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def refresh_stats(self) -> None:
        raise NotImplementedError

    async def _poll_stats(self) -> None:
        await every(self._stats_interval_s, self.refresh_stats)

    async def _supervise_child(
        self, run_once: Callable[[], Awaitable[None]], label: str, restarted: Callable[[], None]
    ) -> None:
        await supervise(
            run_once,
            label=label,
            log=self._log,
            restart_backoff_s=self._restart_backoff_s,
            stopping=lambda: self._stopping,
            restarted=restarted,
        )

    async def _terminate(self, process: asyncio.subprocess.Process) -> None:
        await terminate(process, self._stop_timeout_s, self.LABEL, self._log)

    async def _shut(self, child: ChildChannel) -> None:
        await child.shut(self._stop_timeout_s, self.LABEL, self._log)

    async def _cancel_tasks(self) -> None:
        await cancel_all(self._tasks)


async def supervise(
    run_once: Callable[[], Awaitable[None]],
    *,
    label: str,
    log: logging.Logger,
    restart_backoff_s: float,
    stopping: Callable[[], bool],
    restarted: Callable[[], None],
) -> None:
    """Run `run_once` (one child's whole life) again and again until `stopping()`.

    An error in `run_once` is logged, never raised; `restarted` is called after each
    backoff, just before the next start."""
    quick_failures = 0
    while not stopping():
        started = time.monotonic()
        try:
            await run_once()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: supervision error", label)
        if stopping():
            return
        quick_failures = quick_failures + 1 if time.monotonic() - started < QUICK_FAILURE_S else 0
        delay = restart_backoff_s * min(2 ** max(quick_failures - 1, 0), MAX_BACKOFF_FACTOR)
        log.warning("%s: restarting in %.1f s", label, delay)
        await asyncio.sleep(delay)
        restarted()


async def spawn_with_channel(command_for: CommandFor) -> tuple[asyncio.subprocess.Process, socket.socket]:
    """Start the child with one end of a new socketpair; return it and the other end."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        argv, env = command_for(child.fileno())
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            pass_fds=(child.fileno(),),
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches control only; control stops it in order
        )
    except BaseException:
        parent.close()
        raise
    finally:
        child.close()
    return process, parent


class ChildChannel:
    """A started child and the channel to it; `exited` and `closed` end its life."""

    def __init__(self, process: asyncio.subprocess.Process, client: ChannelClient) -> None:
        self.process = process
        self.client = client
        self.exited: asyncio.Future[Any] = asyncio.ensure_future(process.wait())
        self.closed: asyncio.Future[Any] = asyncio.ensure_future(client.wait_closed())

    @classmethod
    async def open(
        cls, process: asyncio.subprocess.Process, sock: socket.socket, on_notification: NotificationHandler
    ) -> ChildChannel:
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(process, ChannelClient(reader, writer, on_notification))

    def gone(self) -> bool:
        return self.exited.done() or self.closed.done()

    async def wait_gone(self) -> None:
        await asyncio.wait([self.exited, self.closed], return_when=asyncio.FIRST_COMPLETED)

    async def shut(self, stop_timeout_s: float, label: str, log: logging.Logger) -> None:
        """Close the channel and stop the process (see terminate)."""
        self.client.close()
        self.exited.cancel()
        self.closed.cancel()
        await terminate(self.process, stop_timeout_s, label, log)


async def terminate(
    process: asyncio.subprocess.Process, stop_timeout_s: float, label: str, log: logging.Logger
) -> None:
    """SIGTERM, then SIGKILL if the process has not exited after `stop_timeout_s`."""
    if process.returncode is not None:
        return
    try:
        process.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        await asyncio.wait_for(process.wait(), stop_timeout_s)
    except asyncio.TimeoutError:
        log.warning("%s pid %d ignored SIGTERM for %.0f s, killing it", label, process.pid, stop_timeout_s)
        try:
            process.kill()
        except ProcessLookupError:
            return
        await process.wait()


def kill_now(pids: Iterable[int]) -> None:
    """Forced exit: SIGKILL at once (no awaiting)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    tasks.clear()


async def every(interval_s: float, action: Callable[[], Awaitable[None]]) -> None:
    """Run `action` every `interval_s` (first after one interval), until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        await action()
