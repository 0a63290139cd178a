"""Brute-force limits: failed attempts per key in a sliding window, in this process.

Used where a secret is guessed: meeting passcodes (per meeting number and per source
address) and host sign-in (per email and per source address). Past the limit every
attempt gets 429 with Retry-After, whether or not it would have been right. Pure: the
clock is injected.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable

WINDOW_S = 60.0
MAX_TRACKED_KEYS = 50_000


class AttemptLimiter:
    """Failed attempts per key in a sliding window; pure (the clock is injected)."""

    def __init__(self, limit: int, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, collections.deque[float]] = {}

    def retry_after(self, key: str) -> float | None:
        """Seconds until the next attempt may be made, or None when it may be made now."""
        failures = self._prune(key)
        if failures is None or len(failures) < self.limit:
            return None
        return max(failures[0] + self.window_s - self._clock(), 0.001)

    def failed(self, key: str) -> None:
        if len(self._failures) >= MAX_TRACKED_KEYS:
            self._forget_old()
        failures = self._failures.setdefault(key, collections.deque())
        failures.append(self._clock())
        while len(failures) > self.limit:
            failures.popleft()

    def _prune(self, key: str) -> collections.deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        horizon = self._clock() - self.window_s
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def _forget_old(self) -> None:
        for key in list(self._failures):
            self._prune(key)


class FailureLimits:
    """Two limiters over one attempt: the thing guessed at (a meeting number, an email) and
    the source address."""

    def __init__(self, per_target: int, per_address: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.targets = AttemptLimiter(per_target, clock=clock)
        self.addresses = AttemptLimiter(per_address, clock=clock)

    def check(self, target: str, address: str) -> None:
        """RateLimited when either key is past its limit."""
        waits = [w for w in (self.targets.retry_after(target), self.addresses.retry_after(address)) if w]
        if waits:
            seconds = math.ceil(max(waits))
            raise RateLimited(seconds)

    def failed(self, target: str, address: str) -> None:
        self.targets.failed(target)
        self.addresses.failed(address)


class RateLimited(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s
