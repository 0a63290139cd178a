"""Draining a node (issue 13, item 5; docs/cluster.md): it takes no new meeting, lets its
running ones go on until they end or `timeout_s` passes, then hands the rest over: their
placement is released and everyone in them is told to reconnect, which brings them (the
bot SDK and the web client both follow `reconnect`, then a `redirect`) to the node the
meeting is placed on next. The meeting itself goes on: nothing of it ends in the store.

Several nodes only (a single node has nowhere to send anyone: it ends meetings on stop)."""

from __future__ import annotations

import asyncio
import logging

from control.clock import Clock
from control.cluster.placement import NoNodeAvailable
from control.cluster.service import Cluster, ClusterUnavailable
from control.meeting import numbers
from control.meeting.conference import Conference
from control.meeting.model import LiveMeeting, MeetingRegistry

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often the drain looks whether the node's meetings have ended
REASON = "node_draining"


class Drain:
    def __init__(self, *, cluster: Cluster, registry: MeetingRegistry, conference: Conference, clock: Clock) -> None:
        self._cluster = cluster
        self._registry = registry
        self._conference = conference
        self._clock = clock
        self._task: asyncio.Task | None = None
        self.handed_over = 0  # meetings given to other nodes (a metric, tests)

    @property
    def draining(self) -> bool:
        return self._cluster.draining

    def start(self, timeout_s: float) -> bool:
        """Drain now (idempotent: a drain in progress keeps its own timeout); False when one runs."""
        if self._task is not None and not self._task.done():
            return False
        self._cluster.draining = True  # the next heartbeat says so: no new placement here
        self._task = asyncio.create_task(self.run(timeout_s), name="drain")
        return True

    async def run(self, timeout_s: float) -> int:
        """Wait for the meetings to end (at most `timeout_s`), then hand the rest over."""
        self._cluster.draining = True
        await self._cluster.registry.beat_soon()
        deadline = self._clock.time() + timeout_s
        while len(self._registry) and self._clock.time() < deadline:
            await asyncio.sleep(POLL_S)
        count = 0
        for meeting in list(self._registry):
            url = await self._next_home(meeting)
            told = await self._conference.hand_over(meeting, REASON, url)
            self._registry.discard(meeting)
            count += 1
            log.info("drain: meeting %s handed over (%d told to reconnect)", meeting.meeting_id, told)
        self.handed_over += count
        return count

    async def _next_home(self, meeting: LiveMeeting) -> str | None:
        """Release the meeting's placement here and place it on another node: its socket
        URL there (told to everyone: this node may be about to stop), or None when no
        node can take it now (they reconnect here and are redirected, or wait)."""
        try:
            node = await self._cluster.place_elsewhere(meeting.meeting_id)
        except (ClusterUnavailable, NoNodeAvailable) as exc:
            log.warning("drain: meeting %s has no other node now: %s", meeting.meeting_id, exc)
            return None
        if node.node_id == self._cluster.node_id:
            return None
        return numbers.signaling_url(node.public_url, meeting.number)

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
