"""Events every node must hear, over Redis pub/sub (`conclave:events`).

What one node decides and another must carry out: a host or customer suspended (their
meeting may run elsewhere), a meeting ended, a token revoked, a meeting's content removed.
Each event is JSON `{"kind", "origin", "data"}`; a node ignores its own (it acted already).
Pub/sub delivers to the nodes subscribed at that moment, which is what these need: a node
that was down holds no live state of them, and the store says the rest when it comes back.

The subscription is kept by one task that reconnects with a backoff while Redis is away;
a handler that raises is logged and the next event is still delivered.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from control.cluster.placement import KEY_PREFIX
from control.tasks import cancel_until_done

log = logging.getLogger(__name__)

CHANNEL = f"{KEY_PREFIX}events"
RECONNECT_S = (0.2, 0.5, 1.0, 2.0)  # waits between attempts, the last one repeated

Handler = Callable[[str, dict[str, Any]], Awaitable[None]]


class ClusterBus:
    def __init__(self, redis: Redis, node_id: str) -> None:
        self._redis = redis
        self.node_id = node_id
        self._handlers: list[Handler] = []
        self._task: asyncio.Task | None = None
        self.subscribed = asyncio.Event()  # set while the subscription is live
        self.received = 0
        self.handler_errors = 0

    def on_event(self, handler: Handler) -> None:
        self._handlers.append(handler)

    async def publish(self, kind: str, **data: Any) -> int:
        """Send an event to the other nodes; how many nodes' subscriptions received it
        (this one's included). While Redis is away: logged, 0 (the store holds the truth;
        a node catches up from it)."""
        message = json.dumps({"kind": kind, "origin": self.node_id, "data": data}, separators=(",", ":"))
        try:
            return await self._redis.publish(CHANNEL, message)
        except (RedisError, OSError) as exc:
            log.warning("cluster: could not tell the other nodes of %s: %s", kind, exc)
            return 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"cluster-bus-{self.node_id}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_until_done(task)
        self.subscribed.clear()

    async def _run(self) -> None:
        failures = 0  # in a row, since the subscription last held
        while True:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                if self.subscribed.is_set():
                    failures = 0
                if failures == 0:
                    log.warning("cluster: lost the event subscription (reconnecting): %s", exc)
            self.subscribed.clear()
            await asyncio.sleep(RECONNECT_S[min(failures, len(RECONNECT_S) - 1)])
            failures += 1

    async def _listen(self) -> None:
        async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(CHANNEL)
            self.subscribed.set()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    await self._deliver(message["data"])

    async def _deliver(self, raw: bytes) -> None:
        try:
            event = json.loads(raw)
            kind, origin, data = event["kind"], event["origin"], event["data"]
        except (ValueError, KeyError, TypeError):
            log.warning("cluster: an event that is not one was ignored")
            return
        if origin == self.node_id:
            return
        self.received += 1
        for handler in self._handlers:
            try:
                await handler(kind, data)
            except Exception:  # one handler's bug must not stop the next event
                self.handler_errors += 1
                log.exception("cluster: the handler of a %s event failed", kind)
