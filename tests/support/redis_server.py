"""A real Redis for tests: Debian's `redis-server` (control.cli.local_servers.LocalRedis),
on a free loopback port, in memory only, with its working directory under the test's
tmp_path. Stopped by PID. `stop()` then `start()` keeps the port, so a test can take Redis
away and bring it back."""

from __future__ import annotations

import pytest

from control.cli.local_servers import LocalRedis, MissingServer


class RedisServer(LocalRedis):
    def __init__(self, directory) -> None:
        try:
            super().__init__(directory)
        except MissingServer as exc:
            pytest.skip(f"{exc}; scripts/test installs it")


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
