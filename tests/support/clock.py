"""A clock for control's services that moves only when the test says so.

    clock = FakeClock()
    services = build_services(cfg, clock=clock)      # or any service taking a Clock
    clock.advance(30)                                # fires every timer due by then, in order

It implements control.clock.Clock: `time()` and `call_later(delay, callback)`.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable


class FakeTimer:
    __slots__ = ("due", "callback", "cancelled")

    def __init__(self, due: float, callback: Callable[[], None]) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self._heap: list[tuple[float, int, FakeTimer]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + max(0.0, delay), callback)
        heapq.heappush(self._heap, (timer.due, next(self._order), timer))
        return timer

    def pending(self) -> list[FakeTimer]:
        return sorted((t for _, _, t in self._heap if not t.cancelled), key=lambda t: t.due)

    def advance(self, seconds: float) -> int:
        """Move time forward, firing due timers in order (a callback may set new ones, which
        fire too if they are due by the end). How many fired."""
        end = self.now + seconds
        fired = 0
        while self._heap and self._heap[0][0] <= end:
            due, _, timer = heapq.heappop(self._heap)
            self.now = max(self.now, due)
            if not timer.cancelled:
                fired += 1
                timer.callback()
        self.now = end
        return fired
