"""The cluster as the app sees it: one Redis connection, this node's registration, the
placements and the event bus (`Cluster`), made only when `cluster.redis_url` is set."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from config import Config
from control.cluster.bus import ClusterBus
from control.cluster.nodes import NodeRegistry
from control.cluster.placement import NodeLoad, Placements

# A Redis that does not answer within this is down, for a request that waits on it.
REDIS_TIMEOUT_S = 2.0


def node_id_of(cfg: Config) -> str:
    return cfg.cluster.node_id or f"{socket.gethostname()}:{cfg.http.port}"


class ClusterUnavailable(Exception):
    """Redis does not answer: what needs it (placing a new meeting) cannot be done now."""


class Cluster:
    def __init__(self, cfg: Config, load: Callable[[], NodeLoad]) -> None:
        self.node_id = node_id_of(cfg)
        self.redis = Redis.from_url(
            cfg.cluster.redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S,
            health_check_interval=10,
        )  # fmt: skip
        self.registry = NodeRegistry(self.redis, self.node_id, load, heartbeat_s=cfg.cluster.heartbeat_s,
                                     ttl_s=cfg.cluster.node_ttl_s)  # fmt: skip
        self.placements = Placements(self.redis)
        self.bus = ClusterBus(self.redis, self.node_id)
        self.draining = False  # set by a drain: published by the heartbeat, honoured by placement

    @property
    def reachable(self) -> bool:
        return self.registry.reachable

    async def start(self) -> None:
        try:
            await self.registry.beat()  # registered before the first request, when Redis answers
            self.registry.reachable = True
        except (RedisError, OSError):
            pass  # the heartbeat keeps trying and logs it
        self.registry.start()
        self.bus.start()

    async def stop(self) -> None:
        await self.bus.stop()
        await self.registry.stop()
        await self.redis.aclose()

    async def place(self, meeting_id: str) -> str:
        """The node that holds the meeting (placing it now if it has none that lives)."""
        return (await self.host_of(meeting_id)).node_id

    async def host_of(self, meeting_id: str) -> NodeLoad:
        """The node that holds the meeting, as registered (placed now if none lives)."""
        try:
            living = await self.registry.nodes()
            return living[await self.placements.place(meeting_id, living)]
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable("the cluster's Redis does not answer") from exc

    async def place_elsewhere(self, meeting_id: str) -> NodeLoad:
        """Give up this node's placement of the meeting and place it again (a drain: this
        node is marked draining, so another one is chosen when any may take it)."""
        try:
            await self.placements.release(meeting_id, self.node_id)
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable("the cluster's Redis does not answer") from exc
        return await self.host_of(meeting_id)

    async def elsewhere(self, meeting_id: str) -> NodeLoad | None:
        """The other node that holds the meeting, or None when it is this one."""
        host = await self.host_of(meeting_id)
        return None if host.node_id == self.node_id else host

    def node_origins(self) -> frozenset[str]:
        """The public origins of the living nodes (a page of one opens sockets on another)."""
        return frozenset(origin_of(node.public_url) for node in self.registry.living.values() if node.public_url)


def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, lower-cased: what a browser sends as Origin."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
