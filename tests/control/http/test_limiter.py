"""The brute-force limiter (control/http/limiter.py): reservations make the check and the
count one step, a right credential gives its reservation back, keys are per client
(IPv6 /64), the window slides on an injected clock, and the number of keys is bounded
without scanning them."""

from __future__ import annotations

import time

import pytest

from control.http.limiter import AttemptLimiter, FailureLimits, RateLimit, RateLimited, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_reservations_count_before_they_are_settled():
    limiter = AttemptLimiter(5, clock=Clock())
    assert [limiter.reserve("k") for _ in range(5)] == [None] * 5
    assert limiter.reserve("k") is not None  # five in flight: the sixth waits, none settled yet
    limiter.release("k")  # one was right: its place comes back
    assert limiter.reserve("k") is None


def test_failures_stay_for_the_window_and_slide_out():
    clock = Clock()
    limiter = AttemptLimiter(3, window_s=60, clock=clock)
    for step in range(3):
        assert limiter.reserve("k") is None
        limiter.count("k")
        clock.now += 10
    wait = limiter.reserve("k")
    assert wait == pytest.approx(30)  # the first failure (at 1000) leaves at 1060; now 1030
    clock.now += 30.5
    assert limiter.reserve("k") is None


async def test_failure_limits_key_on_the_target_and_the_client():
    clock = Clock()
    limits = FailureLimits(per_target=2, per_client=100, clock=clock)
    for _ in range(2):
        (await limits.reserve("meeting", "198.51.100.7")).failed()
    with pytest.raises(RateLimited) as refused:
        await limits.reserve("meeting", "198.51.100.7")
    assert 1 <= refused.value.retry_after_s <= 60
    # Another client with the same meeting is not held back by the stranger's failures...
    (await limits.reserve("meeting", "203.0.113.9")).succeeded()
    # ...but the same /64 is the same client, whatever its last 64 bits.
    (await limits.reserve("meeting", "2001:db8:1:2::1")).failed()
    (await limits.reserve("meeting", "2001:db8:1:2:ffff::9")).failed()
    with pytest.raises(RateLimited):
        await limits.reserve("meeting", "2001:db8:1:2:abcd::1")
    (await limits.reserve("meeting", "2001:db8:1:3::1")).succeeded()  # the next /64 is another client


async def test_the_client_limit_covers_every_target_and_a_refusal_reserves_nothing():
    limits = FailureLimits(per_target=10, per_client=3, clock=Clock())
    for target in ("a", "b", "c"):
        (await limits.reserve(target, "192.0.2.1")).failed()
    with pytest.raises(RateLimited):
        await limits.reserve("d", "192.0.2.1")
    assert limits.targets.reserve("d\x00192.0.2.1") is None  # the refused attempt held no place there


async def test_an_attempt_settles_once_and_defaults_to_given_back():
    limits = FailureLimits(per_target=1, per_client=10, clock=Clock())
    with await limits.reserve("m", "192.0.2.1"):
        pass  # an error or a 400 inside: nothing counts
    attempt = await limits.reserve("m", "192.0.2.1")
    attempt.failed()
    attempt.succeeded()  # too late: it was settled as failed
    with pytest.raises(RateLimited):
        await limits.reserve("m", "192.0.2.1")


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not an address", "not an address"),
        ("", "unknown"),
    ],
)
def test_client_keys(address, key):
    assert client_key(address) == key


def test_keys_are_bounded_least_recently_used_first():
    clock = Clock()
    limiter = AttemptLimiter(1, clock=clock, max_keys=3)
    for key in ("a", "b", "c"):
        limiter.hit(key)
    limiter.hit("a")  # refused, and "a" is used again: "b" is now the oldest
    limiter.hit("d")
    assert len(limiter) == 3
    assert limiter.reserve("b") is None  # forgotten
    assert limiter.reserve("a") is not None  # remembered


async def test_a_failure_costs_the_same_with_many_keys():
    """The old limiter scanned every key on each failure once 50k were tracked (37 ms)."""
    limits = FailureLimits(per_target=5, per_client=10**9, clock=time.monotonic, max_keys=50_000)
    for n in range(50_000):
        (await limits.reserve(f"m{n}", "192.0.2.1")).failed()
    started = time.perf_counter()
    for n in range(1000):
        (await limits.reserve(f"x{n}", "192.0.2.1")).failed()
    per_failure = (time.perf_counter() - started) / 1000
    assert per_failure < 0.001, per_failure
    assert len(limits.targets) == 50_000


class SharedWindow:
    """What every node would count (control.cluster.limits.RedisWindow), in memory: a
    window with a limit, holds given back by `release`; `down` answers as Redis away."""

    def __init__(self, name: str, limit: int, counted: dict) -> None:
        self.name, self.limit, self.counted = name, limit, counted
        self.down = False

    async def reserve(self, key: str):
        if self.down:
            return None, None
        holds = self.counted.setdefault((self.name, key), [])
        if len(holds) >= self.limit:
            return None, 30.0
        holds.append(f"h{len(holds)}")
        return holds[-1], None

    def release(self, key: str, hold: str) -> None:
        self.counted[(self.name, key)].remove(hold)


def shared_windows(counted: dict, made: list):
    def make(name: str, limit: int) -> SharedWindow:
        made.append(SharedWindow(name, limit, counted))
        return made[-1]

    return make


async def test_failures_on_other_nodes_count_through_the_shared_window():
    counted, made = {}, []
    node_a = FailureLimits(per_target=3, per_client=100, clock=Clock(), shared=shared_windows(counted, made),
                           names=("passcode_per_meeting", "passcode_per_client"))  # fmt: skip
    node_b = FailureLimits(per_target=3, per_client=100, clock=Clock(), shared=shared_windows(counted, made),
                           names=("passcode_per_meeting", "passcode_per_client"))  # fmt: skip
    (await node_a.reserve("m", "192.0.2.1")).failed()
    (await node_b.reserve("m", "192.0.2.1")).failed()
    (await node_a.reserve("m", "192.0.2.1")).failed()
    # Node B has seen one failure of its own, but three happened: the fourth is refused.
    with pytest.raises(RateLimited) as refused:
        await node_b.reserve("m", "192.0.2.1")
    assert refused.value.limit == "passcode_per_meeting"
    # Refused by the shared window: node B's own reservation was given back.
    assert node_b.targets.reserve("m\x00192.0.2.1") is None and node_b.clients.reserve("192.0.2.1") is None
    # A right credential gives its shared hold back too.
    (await node_a.reserve("other", "192.0.2.1")).succeeded()
    assert counted[("passcode_per_meeting", "other\x00192.0.2.1")] == []
    assert len(counted[("passcode_per_client", "192.0.2.1")]) == 3  # the three failures


async def test_without_redis_the_nodes_own_limits_still_hold():
    counted, made = {}, []
    limits = FailureLimits(per_target=2, per_client=100, clock=Clock(), shared=shared_windows(counted, made))
    for window in made:
        window.down = True
    for _ in range(2):
        (await limits.reserve("m", "192.0.2.1")).failed()
    with pytest.raises(RateLimited):
        await limits.reserve("m", "192.0.2.1")


async def test_a_rate_is_counted_here_and_for_every_node():
    counted, made = {}, []
    here = RateLimit(2, "joins_per_client", clock=Clock(), shared=shared_windows(counted, made))
    elsewhere = RateLimit(2, "joins_per_client", clock=Clock(), shared=shared_windows(counted, made))
    assert await here.hit("192.0.2.1") is None
    assert await elsewhere.hit("192.0.2.1") is None
    assert await here.hit("192.0.2.1") == 30.0  # the other node's join counted
    assert here.local.reserve("192.0.2.1") is None  # and the refused one holds nothing here
    assert await RateLimit(1, "joins_per_client", clock=Clock()).hit("k") is None  # no cluster: local only
