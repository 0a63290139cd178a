"""Time for control's decisions and timers, injectable so tests need not sleep.

`Clock` is what services use: `time()` (wall clock, epoch seconds: what the store and the
webhooks record) and `call_later(delay, callback)` (a timer that can be cancelled). The
app uses `LoopClock` (the running event loop); tests use `tests.support.clock.FakeClock`,
which fires timers when the test advances it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


class LoopClock:
    """The real clock: wall time, and timers on the running event loop."""

    def time(self) -> float:
        return time.time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)


def iso_time(ts: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 UTC ("2026-05-09T07:35:25.123Z"), None stays None."""
    if ts is None:
        return None
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
