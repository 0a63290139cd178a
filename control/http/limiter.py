"""Brute-force limits: attempts per key in a sliding window, reserved before the check.

Used where a secret is guessed: meeting passcodes (per meeting number and client, and per
client) and host sign-in (per email and client, and per client); also how many joins
succeed per client. Past a limit every attempt gets 429 with Retry-After, whether or not
it would have been right.

Atomic: an attempt is *reserved* (`FailureLimits.reserve`) before anything is awaited;
the reservation counts against the limit while the credential is checked, so 60 wrong
passcodes sent at once are 5 evaluated and 55 refused, not 60 evaluated against a counter
that is still 0. The caller then settles it: `Attempt.failed()` keeps it in the window,
`Attempt.succeeded()` gives it back (a right credential never uses up anyone's budget).
Everything between reserve and settle that touches the counters is synchronous, so in
one event loop no other request can slip in between the check and the count.

Keys are the thing guessed at together with the client (`client_key`: the IPv4 address,
the IPv6 /64 — one subscriber's allocation, so rotating addresses inside it does not
help), so a stranger's failures never lock out a different client who has the right
credential; and the client alone, across everything it tries.

Bounded: at most `max_keys` keys per limiter, the least recently used forgotten first
(an OrderedDict: every operation is O(1), nothing scans all keys). Forgetting a key can
only give its client a fresh window, and creating keys costs attempts that the per-client
key counts, so a single client cannot flush its own entry.

Why not the `limits` library (the project prefers maintained libraries for rate
limiting): its strategies can consume (`hit`) but the moving window cannot give one
entry back, and its in-memory storage expires keys with a scan of every key on a timer
thread every 10 ms while any key exists (the O(n) cost this module exists to remove, on
a thread that holds the GIL), keeps no bound on the number of keys, and reads
`time.time()` directly (no injected clock for tests). A shared store for several control
nodes is `control.cluster.limits` (a sorted set per key and one Lua script).

Several nodes: every limit also has a window all nodes share (`SharedWindows`, made by
`control.cluster.limits.RedisWindows` when `cluster.redis_url` is set). The node's own
window is reserved first, synchronously as above; then the shared one, awaited, which is
atomic on the Redis server. A refusal by either gives back what the other reserved.
Without a cluster, nothing is awaited and everything is as described above.
Pure: the clock is injected.
"""

from __future__ import annotations

import collections
import ipaddress
import math
import time
from collections.abc import Callable
from typing import Protocol, Self

WINDOW_S = 60.0
MAX_TRACKED_KEYS = 50_000
IPV6_PREFIX = 64  # a client is an IPv6 /64 (or one IPv4 address)


def client_key(address: str) -> str:
    """The client an address belongs to, for counting: an IPv4 address (an IPv4-mapped
    IPv6 address is its IPv4 address), an IPv6 /64; anything unparsable as given."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:64] or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


class _Entry:
    __slots__ = ("pending", "times")

    def __init__(self) -> None:
        self.times: collections.deque[float] = collections.deque()  # counted attempts, oldest first
        self.pending = 0  # reserved, not settled yet


class AttemptLimiter:
    """Counted attempts plus reserved ones per key in a sliding window; pure (clock
    injected), bounded (least recently used keys forgotten past `max_keys`)."""

    def __init__(
        self,
        limit: int,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_TRACKED_KEYS,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def retry_after(self, key: str) -> float | None:
        """Seconds until an attempt may be reserved for `key`, or None when it may now."""
        entry = self._fresh(key)
        if entry is None or len(entry.times) + entry.pending < self.limit:
            return None
        # How many counted attempts must leave the window before one more fits.
        leaving = len(entry.times) + entry.pending - self.limit + 1
        if 0 < leaving <= len(entry.times):
            return max(entry.times[leaving - 1] + self.window_s - self._clock(), 0.001)
        return 1.0  # full of reservations in flight: they settle within a request's time

    def reserve(self, key: str) -> float | None:
        """Reserve an attempt for `key`: None when reserved, else the seconds to wait."""
        wait = self.retry_after(key)
        if wait is not None:
            return wait
        self._entry(key).pending += 1
        return None

    def release(self, key: str) -> None:
        """A reserved attempt that does not count (it succeeded, or never really ran)."""
        entry = self._entries.get(key)
        if entry is not None and entry.pending > 0:
            entry.pending -= 1
            if not entry.pending and not entry.times:
                del self._entries[key]

    def count(self, key: str) -> None:
        """A reserved attempt that counts for the window (it failed)."""
        entry = self._entry(key)
        if entry.pending > 0:
            entry.pending -= 1
        entry.times.append(self._clock())
        while len(entry.times) > self.limit:
            entry.times.popleft()

    def hit(self, key: str) -> float | None:
        """Reserve and count at once (a rate of events): None when allowed, else the wait."""
        wait = self.reserve(key)
        if wait is None:
            self.count(key)
        return wait

    def _entry(self, key: str) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
            while len(self._entries) > self.max_keys:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return entry

    def _fresh(self, key: str) -> _Entry | None:
        """The key's entry with attempts older than the window dropped (None when empty)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        horizon = self._clock() - self.window_s
        times = entry.times
        while times and times[0] <= horizon:
            times.popleft()
        if not times and not entry.pending:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)  # asked about: recently used (a refused client stays)
        return entry


class SharedWindow(Protocol):
    """A limit's window kept for every node (control.cluster.limits.RedisWindow)."""

    async def reserve(self, key: str) -> tuple[str | None, float | None]:
        """(hold, None): reserved; (None, wait): full; (None, None): not kept now."""
        ...

    def release(self, key: str, hold: str) -> None: ...


# (limit name, limit) -> the shared window of that limit
SharedWindows = Callable[[str, int], SharedWindow]


class Attempt:
    """One reserved attempt on several limiters; settle it once (`failed` or `succeeded`)."""

    __slots__ = ("_holds", "_shared", "_settled")

    def __init__(self, holds: list[tuple[AttemptLimiter, str]]) -> None:
        self._holds = holds
        self._shared: list[tuple[SharedWindow, str, str]] = []  # (window, key, hold)
        self._settled = False

    async def share(self, windows: list[tuple[SharedWindow, str, str]]) -> None:
        """Reserve on each shared (window, key, limit name) too, or raise RateLimited
        (what was reserved, here and shared, given back)."""
        for window, key, name in windows:
            hold, wait = await window.reserve(key)
            if wait is not None:
                self.succeeded()
                raise RateLimited(wait, name)
            if hold is not None:
                self._shared.append((window, key, hold))

    def failed(self) -> None:
        if not self._settled:
            self._settled = True
            for limiter, key in self._holds:
                limiter.count(key)
            # Shared holds stay: they are counted in their windows already.

    def succeeded(self) -> None:
        """The credential was right (or the attempt never got to check one): nothing counts."""
        if not self._settled:
            self._settled = True
            for limiter, key in self._holds:
                limiter.release(key)
            for window, key, hold in self._shared:
                window.release(key, hold)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.succeeded()  # anything not marked failed by then (an error, a 400) is given back


class FailureLimits:
    """Two limiters over one attempt: the thing guessed at (a meeting number, an email)
    together with the client, and the client alone (see the module's doc)."""

    def __init__(
        self, per_target: int, per_client: int, clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_TRACKED_KEYS, names: tuple[str, str] = ("per_target", "per_client"),
        shared: SharedWindows | None = None,
    ) -> None:  # fmt: skip
        # What a refusal says it hit (RateLimited.limit; a metric label: a fixed set).
        self.target_limit_name, self.client_limit_name = names
        self.targets = AttemptLimiter(per_target, clock=clock, max_keys=max_keys)
        self.clients = AttemptLimiter(per_client, clock=clock, max_keys=max_keys)
        self.shared_targets = shared(self.target_limit_name, per_target) if shared else None
        self.shared_clients = shared(self.client_limit_name, per_client) if shared else None

    async def reserve(self, target: str, address: str) -> Attempt:
        """Reserve one attempt on `target` from `address`, or raise RateLimited. Call it
        before awaiting anything that checks the credential: this node's reservation is
        made before the first await (then the shared windows', atomic in Redis)."""
        client = client_key(address)
        wait = self.clients.reserve(client)
        if wait is not None:
            raise RateLimited(wait, self.client_limit_name)
        target_key = f"{target}\0{client}"
        wait = self.targets.reserve(target_key)
        if wait is not None:
            self.clients.release(client)
            raise RateLimited(wait, self.target_limit_name)
        attempt = Attempt([(self.clients, client), (self.targets, target_key)])
        if self.shared_clients is not None and self.shared_targets is not None:
            await attempt.share([(self.shared_clients, client, self.client_limit_name),
                                 (self.shared_targets, target_key, self.target_limit_name)])  # fmt: skip
        return attempt


class RateLimit:
    """A rate of events per key (joins per client): this node's window, and the one all
    nodes share when there is a cluster."""

    def __init__(
        self, limit: int, name: str, clock: Callable[[], float] = time.monotonic, shared: SharedWindows | None = None
    ) -> None:
        self.name = name  # RateLimited.limit when it refuses
        self.local = AttemptLimiter(limit, clock=clock)
        self.shared = shared(name, limit) if shared else None

    async def hit(self, key: str) -> float | None:
        """Count one event for `key`: None when allowed, else the seconds to wait."""
        wait = self.local.reserve(key)
        if wait is not None:
            return wait
        if self.shared is not None:
            _, wait = await self.shared.reserve(key)  # counted there once reserved
            if wait is not None:
                self.local.release(key)
                return wait
        self.local.count(key)
        return None


class RateLimited(Exception):
    def __init__(self, retry_after_s: float, limit: str = "") -> None:
        seconds = max(1, math.ceil(retry_after_s))
        super().__init__(f"retry after {seconds} s")
        self.retry_after_s = seconds
        self.limit = limit  # which limit refused (conclave_http_rate_limited_total{limit})
