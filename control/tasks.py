"""Background tasks of control: one owner, drained at shutdown.

Control schedules work that nobody awaits (a webhook-worthy event's follow-up, a meeting
reset after its worker died, a late notice, the duration limit firing). Every such task
is spawned through the app's one `BackgroundTasks`, which keeps a reference (so the loop
does not garbage-collect it mid-flight), logs a failure once with its name, and at
shutdown waits for what is running, then cancels what is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any] | None:
        """Run `coro` in the background; None (and the coroutine closed) after shutdown."""
        if self.closed:
            coro.close()
            return None
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self, timeout: float) -> None:
        """Wait (bounded) for what runs now, without stopping anything."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def drain(self, timeout: float) -> None:
        """Shutdown: no new tasks; wait up to `timeout` for the running ones, cancel the rest."""
        self.closed = True
        await self.wait(timeout)
        leftovers = [task for task in self._tasks if not task.done()]
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.wait(leftovers, timeout=1.0)
            log.warning("%d background task(s) cancelled at shutdown", len(leftovers))


async def cancel_until_done(task: asyncio.Task[Any] | None, wait_s: float = 0.2) -> None:
    """Cancel `task` and wait until it has ended, cancelling again if it goes on: a client
    library that absorbs a cancellation landing mid-connect (redis-py retries a connect)
    must not keep a shutdown waiting."""
    while task is not None and not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=wait_s)
