"""Rate-limit windows every node shares (issue 13: "the per-meeting and per-address rate
limits shared across nodes").

A node's own limits (`control.http.limiter`) count what reaches that node. Behind a load
balancer a client spreads its guesses over every node, so with N nodes it would get N
times the passcode attempts a meeting allows. A `RedisWindow` counts them once, for all
nodes: one sorted set per key in Redis, a member per attempt scored by its time, and a Lua
script (atomic on the Redis server, like `control.cluster.placement`'s) that drops what
left the window, refuses when the window is full (with the seconds until one more
fits) and otherwise adds the attempt, all in one step: two nodes can never both take
the last place. Time is the Redis server's (`TIME`), so the nodes' clocks need not agree.

An attempt is reserved before the credential is checked and stays counted when it
failed (nothing to do: its member is in the window); a right credential gives it back
(`release`, which removes the member, in the background: a moment late it only means
one attempt counts a moment longer). The node keeps its own limits too: they still hold
when Redis does not answer, in which case a shared window lets the attempt through
(logged, at most once a minute) rather than lock everyone out of every meeting.

Bounded: a window holds at most `limit` members (a refused attempt adds none) and
expires with its last member's window.
"""

from __future__ import annotations

import logging
import secrets
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from control.tasks import BackgroundTasks

log = logging.getLogger(__name__)

KEY_PREFIX = "conclave:limit:"
MAX_KEY_CHARS = 300  # the limiter's keys are bounded already (a number or an email, and a client)
UNAVAILABLE_LOG_S = 60.0

# KEYS[1]: the window; ARGV: limit, window in ms, this attempt's member.
# Returns -1 when reserved, else the milliseconds until one more attempt fits.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then
  local leaving = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
  return math.max(1, tonumber(leaving[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return -1
"""


class RedisWindows:
    """Makes the shared windows of one node (`control.http.limiter.SharedWindows`)."""

    def __init__(self, redis: Redis, tasks: BackgroundTasks, window_s: float = 60.0) -> None:
        self._redis = redis
        self._tasks = tasks
        self._window_s = window_s
        self._reserve = redis.register_script(_RESERVE)
        self._unavailable_logged = -UNAVAILABLE_LOG_S

    def __call__(self, name: str, limit: int) -> RedisWindow:
        return RedisWindow(self, name, limit, self._window_s)

    async def reserve(self, key: str, limit: int, window_s: float) -> tuple[str | None, float | None]:
        member = secrets.token_hex(8)
        try:
            answer = await self._reserve(keys=[key], args=[limit, int(window_s * 1000), member])
        except (RedisError, OSError) as exc:
            self._unavailable(exc)
            return None, None  # the node's own limit has already counted this attempt
        wait_ms = int(answer)
        if wait_ms >= 0:
            return None, wait_ms / 1000
        return member, None

    def release(self, key: str, member: str) -> None:
        self._tasks.spawn(self._remove(key, member), name="limit-release")

    async def _remove(self, key: str, member: str) -> None:
        try:
            await self._redis.zrem(key, member)
        except (RedisError, OSError) as exc:
            self._unavailable(exc)  # it leaves the window with time

    def _unavailable(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._unavailable_logged >= UNAVAILABLE_LOG_S:
            self._unavailable_logged = now
            log.warning("shared rate limits: Redis does not answer (%s); this node's own limits apply meanwhile", exc)


class RedisWindow:
    """One limit (`name`: a RateLimited label, e.g. passcode_per_client) shared by every node."""

    __slots__ = ("_windows", "name", "limit", "window_s")

    def __init__(self, windows: RedisWindows, name: str, limit: int, window_s: float) -> None:
        self._windows = windows
        self.name = name
        self.limit = limit
        self.window_s = window_s

    def _key(self, key: str) -> str:
        return f"{KEY_PREFIX}{self.name}:{key[:MAX_KEY_CHARS]}"

    async def reserve(self, key: str) -> tuple[str | None, float | None]:
        """(a hold to give back, None) when reserved; (None, seconds to wait) when full;
        (None, None) when Redis does not answer (nothing held, nothing refused)."""
        return await self._windows.reserve(self._key(key), self.limit, self.window_s)

    def release(self, key: str, hold: str) -> None:
        self._windows.release(self._key(key), hold)
