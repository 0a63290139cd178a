"""Issue 16, item 1's suite proof: 200 light participants (signaling sockets, no media)
join one meeting; what each receives about the others is O(n), not O(n²).

Unbatched, the k-th joiner would be followed by n - k `participant_joined` messages: for
n = 205 that is 20,910 messages in all, about 100 per participant on average. Batched
(control.meeting.roster), each participant hears of each other one exactly once (204
entries: O(n) bytes), in at most one message per window the server flushed. Assertions
are on counts only; nothing here measures time."""

from __future__ import annotations

import asyncio
import collections
import json
from typing import Any

import aiohttp
import pytest

from control.meeting.roster import PAGE_SIZE
from tests.support.servers import ConclaveServer

pytestmark = [pytest.mark.process, pytest.mark.timeout(240)]

# Just over 200: the last joiners find more than a page (200) of others, so their list
# comes as `joined` and one `participants_changed` page.
PARTICIPANTS = 205
JOINS_AT_ONCE = 20  # joins in flight at a time (REST join, socket, join)
ROSTER = "participants_changed"


class LightParticipant:
    """A signaling socket and what it was told: messages by type, bytes, the others."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.participant_id = ""
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.counts: collections.Counter[str] = collections.Counter()
        self.bytes_by_type: collections.Counter[str] = collections.Counter()
        self.others: set[str] = set()
        self.entries = 0  # participants listed to it, in `joined` and in batches
        self.in_joined = 0  # of which in `joined` itself
        self.joined = asyncio.Event()
        self.changed = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None

    async def join(self, server: ConclaveServer, meeting: dict[str, Any], session: aiohttp.ClientSession) -> None:
        token = (await server.join(meeting, self.name))["token"]
        self.ws = await session.ws_connect(server.ws_url(meeting))
        self.reader = asyncio.create_task(self._read())
        await self.ws.send_str(json.dumps({"type": "join", "token": token}))
        await asyncio.wait_for(self.joined.wait(), 60)

    async def _read(self) -> None:
        assert self.ws is not None
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(frame.data)
            kind = message["type"]
            self.counts[kind] += 1
            self.bytes_by_type[kind] += len(frame.data)
            if kind == "joined":
                self.participant_id = message["participant_id"]
                self.in_joined = len(message["participants"])
                self._listed(message["participants"])
                self.joined.set()
            elif kind == ROSTER:
                self._listed(message.get("joined", []))
                self.others.difference_update(message.get("left", []))
                self.changed.set()

    def _listed(self, participants: list[dict[str, Any]]) -> None:
        self.entries += len(participants)
        self.others.update(p["participant_id"] for p in participants)

    async def knows(self, everyone: set[str]) -> None:
        while self.others != everyone - {self.participant_id}:
            self.changed.clear()
            await self.changed.wait()


async def test_205_participants_each_hear_of_everyone_once_in_batches(conclave_server_factory):
    server = await conclave_server_factory(
        signaling={"max_participants_per_meeting": 250, "max_unjoined_sockets_per_address": 250},  # fmt: skip
        auth={"joins_per_address_per_minute": 1000, "passcode_attempts_per_minute": 1000,
              "passcode_attempts_per_address_per_minute": 1000},
        limits={"max_participants_per_meeting": 250},
    )  # fmt: skip
    meeting = await server.create_meeting()
    people = [LightParticipant(f"p{i}") for i in range(PARTICIPANTS)]
    gate = asyncio.Semaphore(JOINS_AT_ONCE)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:  # 200 sockets at once

        async def join(person: LightParticipant) -> None:
            async with gate:
                await person.join(server, meeting, session)

        try:
            await asyncio.gather(*(join(person) for person in people))
            everyone = {person.participant_id for person in people}
            await asyncio.wait_for(asyncio.gather(*(person.knows(everyone) for person in people)), 60)
            roster = server.services.registry.get(meeting["meeting_id"]).roster
            flushes = roster.flushes
        finally:
            for person in people:
                if person.ws is not None:
                    await person.ws.close()
                if person.reader is not None:
                    await asyncio.gather(person.reader, return_exceptions=True)

    n = PARTICIPANTS
    # Bytes O(n): everyone was listed to each participant exactly once (`joined` or a batch).
    assert all(person.entries == n - 1 for person in people), sorted({p.entries for p in people})
    assert max(person.in_joined for person in people) == PAGE_SIZE  # the rest came as a page
    # Messages: at most one batch per window for each participant, whatever the timing.
    assert all(person.counts[ROSTER] <= flushes for person in people)
    assert all(person.counts["participant_joined"] == 0 for person in people)
    # And batching happened: together far fewer than the n(n-1)/2 messages of one per join
    # (20,910 here; 3,263 in 31 windows with 200 when this was written). Half of it would mean
    # fewer than two joins per window on average.
    total = sum(person.counts[ROSTER] for person in people)
    assert total <= n * (n - 1) / 4, (total, flushes)
    # Nothing else about the others grows with the square either: all messages per participant.
    assert max(sum(person.counts.values()) for person in people) <= 2 * n
