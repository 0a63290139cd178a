"""Retention: what control keeps about people goes after a while, on a timer.

Every `retention.purge_interval_s` (the first time a minute after the start, or sooner
when the interval is shorter) one purge runs as a background task (control.tasks, so the
app drains it at shutdown):

- webhook delivery attempts older than `webhook_deliveries_days` (their payloads name
  participants);
- participant rows that joined more than `participants_days` ago, except those of a live
  session that is still open;
- storage deletions still `pending` are tried again (control.recording.deletion), and
  `done` ones older than `deleted_recordings_days` are forgotten (with the storage
  settings they kept).

Chat has its own bound (`retention.chat_messages_per_meeting`, kept by the store at each
message: control.meeting.chat). Times come from the injected clock, so a test moves them.
"""

from __future__ import annotations

import logging

from config import RetentionConfig
from control.clock import Clock, Timer
from control.recording.deletion import StorageDeletions
from control.store.base import Store
from control.tasks import BackgroundTasks

log = logging.getLogger(__name__)

DAY_S = 86_400.0
FIRST_PURGE_AFTER_S = 60.0


class Retention:
    def __init__(
        self,
        *,
        store: Store,
        deletions: StorageDeletions,
        settings: RetentionConfig,
        clock: Clock,
        tasks: BackgroundTasks,
    ) -> None:
        self._store = store
        self._deletions = deletions
        self._settings = settings
        self._clock = clock
        self._tasks = tasks
        self._timer: Timer | None = None
        self.purges = 0  # how many ran (for tests and people reading a debugger)

    def start(self) -> None:
        """Schedule the purges (the first soon, then every interval)."""
        self._schedule(min(FIRST_PURGE_AFTER_S, self._settings.purge_interval_s))

    def stop(self) -> None:
        """No more purges; one running is the background tasks' to drain."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, delay: float) -> None:
        self._timer = self._clock.call_later(delay, self._due)

    def _due(self) -> None:
        self._timer = None
        self._tasks.spawn(self._purge_then_schedule(), "retention-purge")  # nothing after shutdown

    async def _purge_then_schedule(self) -> None:
        try:
            await self.purge()
        finally:
            if not self._tasks.closed:
                self._schedule(self._settings.purge_interval_s)

    async def purge(self) -> dict[str, int]:
        """One purge now: counts of what went (and of storage deletions still pending)."""
        now = self._clock.time()
        settings = self._settings
        counts = {
            "webhook_deliveries": await self._store.purge_webhook_deliveries(now - settings.webhook_deliveries_days * DAY_S),
            "participants": await self._store.purge_participants(now - settings.participants_days * DAY_S),
            "storage_deletions_pending": len(await self._deletions.retry_pending()),
            "storage_deletions_forgotten": await self._store.purge_storage_deletions(
                now - settings.deleted_recordings_days * DAY_S
            ),
        }
        self.purges += 1
        if any(counts.values()):
            log.info("retention purge: %s", ", ".join(f"{name} {count}" for name, count in counts.items()))
        return counts
