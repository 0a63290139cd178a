"""client.rejoin: which closes bring a bot back, and its backoff."""

from __future__ import annotations

import pytest

from client.rejoin import BACKOFF_MAX_S, backoff_delay, should_reconnect

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("code", "back"),
    [(1001, True), (1006, True), (1011, True), (1012, True), (None, True),  # the server went away, or the network
     (1000, False), (4001, False), (4002, False), (4003, False), (4004, False), (4010, False)],
)
def test_only_a_lost_connection_brings_the_bot_back(code: int | None, back: bool) -> None:
    assert should_reconnect(code) is back


def test_the_backoff_grows_with_jitter_and_stays_capped() -> None:
    lows = [backoff_delay(n, lambda: 0.0) for n in range(8)]
    highs = [backoff_delay(n, lambda: 0.999) for n in range(8)]
    assert lows == sorted(lows) and lows[0] > 0
    assert all(low < high for low, high in zip(lows, highs))
    assert max(highs) <= BACKOFF_MAX_S * 1.25 and backoff_delay(50, lambda: 0.5) == BACKOFF_MAX_S
