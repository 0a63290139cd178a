"""sfu.engine.nack_cache: the packet cache NACKs are answered from."""

from __future__ import annotations

import pytest

from sfu.engine.nack_cache import PacketCache
from tests.support.engine import packet


def test_packet_cache_checks_sequence():
    cache = PacketCache(4)
    cache.put(1, packet(1))
    cache.put(5, packet(5))  # same slot
    assert cache.get(1) is None and cache.get(5) is not None
    with pytest.raises(ValueError):
        PacketCache(3)
