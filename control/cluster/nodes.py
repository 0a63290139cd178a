"""This node's registration in Redis, renewed by a heartbeat, and the list of the living.

A node is a key `conclave:node:<id>` holding its `NodeLoad` (JSON) with a TTL of
`cluster.node_ttl_s`, rewritten every `cluster.heartbeat_s`, plus its id in the set
`conclave:nodes`. A node killed outright stops renewing: its key expires, and from then on
it is not chosen and its meetings are placed again at their next join. Ids left in the set
by an expired node are pruned by whoever lists the nodes.

While Redis does not answer, the heartbeat goes on trying (each failure is logged once per
outage, not once per beat) and `reachable` is False, which /readyz reports.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from control.cluster.placement import KEY_PREFIX, NodeLoad
from control.tasks import cancel_until_done

log = logging.getLogger(__name__)

NODES_KEY = f"{KEY_PREFIX}nodes"


def node_key(node_id: str) -> str:
    return f"{KEY_PREFIX}node:{node_id}"


class NodeRegistry:
    def __init__(self, redis: Redis, node_id: str, load: Callable[[], NodeLoad], *,
                 heartbeat_s: float, ttl_s: float) -> None:  # fmt: skip
        self._redis = redis
        self.node_id = node_id
        self._load = load  # this node as it is now (its load, whether it drains)
        self.heartbeat_s = heartbeat_s
        self.ttl_s = ttl_s
        self.reachable = False
        self.beats = 0
        self.living: dict[str, NodeLoad] = {}  # the nodes as the last heartbeat listed them
        self._warned = False  # this outage was logged
        self._task: asyncio.Task | None = None

    async def beat(self) -> None:
        """Write this node's registration once (raises RedisError when Redis fails)."""
        load = self._load()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(node_key(self.node_id), load.encode(), px=int(self.ttl_s * 1000))
            pipe.sadd(NODES_KEY, self.node_id)
            await pipe.execute()
        self.beats += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"cluster-heartbeat-{self.node_id}")

    async def beat_soon(self) -> None:
        """Write the registration now (a change others must see before the next beat, such
        as draining); a Redis that does not answer leaves it to the heartbeat."""
        try:
            await self.beat()
        except (RedisError, OSError) as exc:
            log.warning("cluster: could not renew the registration now: %s", exc)

    async def stop(self, *, deregister: bool = True) -> None:
        """Stop the heartbeat; `deregister`: leave the registry now rather than at the TTL."""
        task, self._task = self._task, None
        await cancel_until_done(task)
        if deregister:
            try:
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.delete(node_key(self.node_id))
                    pipe.srem(NODES_KEY, self.node_id)
                    await pipe.execute()
            except RedisError as exc:
                log.warning("cluster: could not leave the registry (it expires by itself): %s", exc)

    async def nodes(self) -> dict[str, NodeLoad]:
        """The living nodes by id (this one included while its registration holds)."""
        ids = sorted(member.decode() for member in await self._redis.smembers(NODES_KEY))
        if not ids:
            return {}
        values = await self._redis.mget([node_key(node_id) for node_id in ids])
        living, gone = {}, []
        for node_id, value in zip(ids, values):
            if value is None:
                gone.append(node_id)
            else:
                living[node_id] = NodeLoad.decode(value)
        if gone:
            await self._redis.srem(NODES_KEY, *gone)
        return living

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
                self.living = await self.nodes()
                if not self.reachable:
                    log.info("cluster: node %s registered in Redis", self.node_id)
                self.reachable, self._warned = True, False
            except (RedisError, OSError) as exc:
                if not self._warned:
                    log.warning("cluster: Redis does not answer the heartbeat (retrying): %s", exc)
                self.reachable, self._warned = False, True
            await asyncio.sleep(self.heartbeat_s)
