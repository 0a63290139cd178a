"""Meetings larger than one worker (issue 13, item 4): subscribers seated on several
workers of this node, the meeting's producers piped to them.

A meeting's router lives on its home worker (`LiveMeeting.placement`), and so do all its
publish transports, the server's tracks, the recorder's and the viewers' transports:
everything that produces or taps the meeting stays where it was. What grows with a big
meeting is the fan-out, so only subscribe transports move: with `sfu.spread_after_participants`
set (0: off, every subscriber at home as before), each worker the meeting uses takes that
many subscribers, then the next one is opened (`choose_worker`, pure). A participant's
publish transport stays at home while their subscribe transport may sit on another worker:
the client's two connections are separate anyway.

A worker the meeting spreads to gets a router of the same id and a pipe to home
(`sfu.transport.pipe`: a pair of `PIPE_TRANSPORT_CREATE`, connected to each other), and
each producer its subscribers receive is piped once (`PIPE_CONSUME` at home,
`PIPE_PRODUCER_CREATE` there), under its own id: every other request (consumers, tiles,
offers) names the same ids on whichever worker the subscriber is seated. Keyframe
requests, NACKs and audio levels travel as sfu/transport/pipe.py says. Everything of the
meeting's spread state is kept here, except `LiveMeeting.spread_workers`, which the
workers' news is matched against (control.meeting.model.MeetingRegistry.using_worker).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from common.channel import ChannelError
from common.messages import Message
from control.meeting.adaptive import effective_last_n
from control.meeting.model import LiveMeeting, Participant, PublishedTrack, new_id
from control.processes.workers import WorkerSupervisor
from control.tasks import BackgroundTasks
from sfu import api

log = logging.getLogger(__name__)

# The conference's maker of the server's tracks on a router: (worker client, router id)
# -> track id -> track (control.meeting.conference.SERVER_TRACKS).
ServerTracks = Callable[[Any, str], Awaitable[dict[str, PublishedTrack]]]


def choose_worker(seated: dict[int, int], home: int, live: list[int], share: int) -> int:
    """Where a meeting's next subscriber sits. `seated`: its subscribers per worker index
    it uses; `live`: the live workers, least loaded first; `share`: subscribers per worker
    before the next one is opened (0: never spread). Home first, then the workers already
    used in the order they were opened, then a new one; all full: the emptiest, home
    last among equals (it also receives every publisher and feeds the pipes)."""
    if share <= 0 or not live:
        return home
    used = [home, *(index for index in seated if index != home)]
    for index in used:
        if index in live and seated.get(index, 0) < share:
            return index
    for index in live:
        if index not in used:
            return index
    candidates = [index for index in used if index in live] or [home]
    return min(candidates, key=lambda index: (seated.get(index, 0), index == home, index))


class _Spread:
    """One meeting's spread state: who sits where, the pipes, what crossed them."""

    __slots__ = ("announcers", "piped", "pipes", "seats")

    def __init__(self) -> None:
        self.seats: dict[str, int] = {}  # participant id -> worker index of their subscribe transport
        self.pipes: dict[int, tuple[str, str]] = {}  # worker index -> (home's pipe id, its pipe id)
        self.piped: dict[int, set[str]] = {}  # worker index -> producer ids piped there
        # worker index -> the server's tracks made there (track id -> producer id): a
        # notice played to some subscribers only must be played where they sit.
        self.announcers: dict[int, dict[str, str]] = {}

    def seated(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for index in self.seats.values():
            counts[index] = counts.get(index, 0) + 1
        return counts


class SpreadMeetings:
    """The conference's seating of subscribers over workers and the pipes it needs.
    Called under the meeting's lock, as every media operation of the conference."""

    def __init__(self, supervisor: WorkerSupervisor, tasks: BackgroundTasks, share: int = 0) -> None:
        self._supervisor = supervisor
        self._tasks = tasks
        self.share = share  # sfu.spread_after_participants (0: off)
        self._meetings: dict[str, _Spread] = {}
        self.pipes_opened = 0  # pipe pairs made (each a worker joined to a meeting)
        self.producers_piped = 0

    def _state(self, meeting: LiveMeeting) -> _Spread:
        state = self._meetings.get(meeting.meeting_id)
        if state is None:
            state = self._meetings[meeting.meeting_id] = _Spread()
        return state

    def worker_of(self, meeting: LiveMeeting, participant: Participant) -> tuple[int, int] | None:
        """The worker (index, generation) serving `participant`'s subscribe transport; None: home."""
        state = self._meetings.get(meeting.meeting_id)
        index = state.seats.get(participant.participant_id) if state is not None else None
        placement = meeting.placement
        if index is None or placement is None or index == placement.worker_index:
            return None
        generation = meeting.spread_workers.get(index)
        return None if generation is None else (index, generation)

    async def request_for(self, meeting: LiveMeeting, participant: Participant, message: Message) -> Message:
        """A request about `participant`'s subscribe side, to the worker it sits on."""
        worker = self.worker_of(meeting, participant)
        if worker is None:
            placement = meeting.placement
            if placement is None:
                raise ChannelError("worker_down", "the meeting has no media server")
            worker = (placement.worker_index, placement.generation)
        return await self._supervisor.request(*worker, message)

    # ------------------------------------------------------------------ seating

    async def seat(self, meeting: LiveMeeting, participant: Participant, make_server_tracks: ServerTracks) -> None:
        """Choose the worker of `participant`'s subscribe transport (home unless the
        meeting spreads), with the meeting's router, the server's tracks
        (`make_server_tracks`, the conference's) and the pipe there. ChannelError: that
        worker could not take it (the caller's error)."""
        placement = meeting.placement
        assert placement is not None
        state = self._state(meeting)
        state.seats.pop(participant.participant_id, None)
        live = [w.index for w in sorted(self._live(), key=lambda w: (len(w.routers), w.index))]
        index = choose_worker(state.seated(), placement.worker_index, live, self.share)
        if index != placement.worker_index:
            await self._open(meeting, state, index, make_server_tracks)
        state.seats[participant.participant_id] = index

    def unseat(self, meeting: LiveMeeting, participant: Participant) -> None:
        state = self._meetings.get(meeting.meeting_id)
        if state is not None:
            state.seats.pop(participant.participant_id, None)

    def seated_elsewhere(self, meeting: LiveMeeting, index: int) -> list[str]:
        """The participant ids seated on worker `index` away from home."""
        state = self._meetings.get(meeting.meeting_id)
        return [] if state is None else [p for p, i in state.seats.items() if i == index]

    def _live(self) -> list:
        return [w for w in self._supervisor.workers if w.up and w.client is not None]

    async def _open(self, meeting: LiveMeeting, state: _Spread, index: int, make_server_tracks: ServerTracks) -> None:
        """The meeting's router on worker `index`, piped to home, unless it has one."""
        worker = self._supervisor.workers[index]
        if meeting.spread_workers.get(index) == worker.generation and index in state.pipes:
            return
        self._forget_worker(meeting, state, index)  # a previous process of that slot
        placement = meeting.placement
        assert placement is not None
        home = (placement.worker_index, placement.generation)
        there = (index, worker.generation)
        router_id = placement.router_id
        # Counted as opened before the first request: a failure half-way is undone by the
        # next attempt (`_forget_worker` above) or the meeting's end.
        worker.routers.add(meeting.meeting_id)  # its load for the next placements
        meeting.spread_workers[index] = worker.generation
        await self._supervisor.request(*there, api.RouterCreate(router_id=router_id))
        home_pipe, far_pipe = new_id(), new_id()
        home_end = await self._supervisor.request(*home, api.PipeTransportCreate(router_id, home_pipe))
        far_end = await self._supervisor.request(*there, api.PipeTransportCreate(router_id, far_pipe))
        assert isinstance(home_end, api.PipeTransportInfo) and isinstance(far_end, api.PipeTransportInfo)
        await self._supervisor.request(*home, api.PipeTransportConnect(home_pipe, far_end.ip, far_end.port))
        await self._supervisor.request(*there, api.PipeTransportConnect(far_pipe, home_end.ip, home_end.port))
        made = await make_server_tracks(worker.client, router_id)
        # A worker without the allocator refuses last-N: the meeting goes on there without it.
        await self._quiet(index, worker.generation, api.RouterSetLastN(router_id, effective_last_n(meeting)))
        state.announcers[index] = {track_id: track.producer_id for track_id, track in made.items()}
        state.piped[index] = set()
        state.pipes[index] = (home_pipe, far_pipe)  # last: open only once all of it is there
        self.pipes_opened += 1
        log.info("meeting %s spreads to worker %d (piped from worker %d)", meeting.meeting_id, index, home[0])

    def producer_for(self, meeting: LiveMeeting, participant: Participant, track: PublishedTrack) -> str:
        """The producer `participant` receives `track` from, where they sit: a server
        track's own there, any other's copy (under the same id)."""
        worker = self.worker_of(meeting, participant)
        if worker is None or track.participant_id is not None:
            return track.producer_id
        state = self._state(meeting)
        return state.announcers.get(worker[0], {}).get(track.track_id, track.producer_id)

    def server_producers(self, meeting: LiveMeeting, track_id: str) -> list[tuple[int, int, str]]:
        """(worker index, generation, producer id) of server track `track_id` on each
        other worker of the meeting: where a notice for everyone plays too."""
        state = self._meetings.get(meeting.meeting_id)
        if state is None:
            return []
        found = []
        for index, generation in meeting.spread_workers.items():
            producer_id = state.announcers.get(index, {}).get(track_id)
            if producer_id is not None:
                found.append((index, generation, producer_id))
        return found

    async def ensure_piped(self, meeting: LiveMeeting, participant: Participant, track: PublishedTrack) -> None:
        """`track`'s producer (at home) on the worker `participant` sits on; a server
        track is there already (made with the router)."""
        worker = self.worker_of(meeting, participant)
        if worker is None or track.participant_id is None:
            return
        producer_id = track.producer_id
        index, generation = worker
        state = self._state(meeting)
        piped = state.piped.setdefault(index, set())
        if producer_id in piped:
            return
        placement = meeting.placement
        assert placement is not None
        home_pipe, far_pipe = state.pipes[index]
        consume = api.PipeConsume(transport_id=home_pipe, consumer_id=new_id(), producer_id=producer_id)
        consumed = await self._supervisor.request(placement.worker_index, placement.generation, consume)
        assert isinstance(consumed, api.PipeConsumed)
        await self._supervisor.request(index, generation, api.PipeProducerCreate(far_pipe, consumed.producer))
        piped.add(producer_id)
        self.producers_piped += 1

    def unpipe(self, meeting: LiveMeeting, producer_ids: Iterable[str]) -> None:
        """Producers closed at home (their pipe consumers with them): their copies go
        from the other workers, with the consumers of them there."""
        state = self._meetings.get(meeting.meeting_id)
        if state is None:
            return
        for index, piped in state.piped.items():
            gone = [p for p in producer_ids if p in piped]
            generation = meeting.spread_workers.get(index)
            for producer_id in gone:
                piped.discard(producer_id)
                if generation is not None:
                    self._tasks.spawn(
                        self._quiet(index, generation, api.ProducerClose(producer_id)), f"unpipe-{producer_id}"
                    )

    # ------------------------------------------------------------------ the end

    async def close(self, meeting: LiveMeeting) -> None:
        """The meeting's routers on the other workers go (their pipes and subscribe
        transports with them); home's pipes go with home's router."""
        await self.close_routers(meeting.meeting_id, self.detach(meeting))

    def detach(self, meeting: LiveMeeting) -> dict[int, int]:
        """Forget the meeting's spread (it ends, or its home died): the other workers it
        had a router on (index -> generation), for `close_routers`."""
        self._meetings.pop(meeting.meeting_id, None)
        workers, meeting.spread_workers = meeting.spread_workers, {}
        for index, generation in workers.items():
            self._discard_router(meeting, index, generation)
        return workers

    async def close_routers(self, router_id: str, workers: dict[int, int]) -> None:
        for index, generation in workers.items():
            await self._quiet(index, generation, api.RouterClose(router_id=router_id))
        if workers:
            log.info("meeting %s: its routers on workers %s closed", router_id, sorted(workers))

    def worker_lost(self, meeting: LiveMeeting, index: int) -> None:
        """Worker `index` died: its router, pipe and subscribers there are gone."""
        state = self._meetings.get(meeting.meeting_id)
        if state is not None:
            self._forget_worker(meeting, state, index)

    def _forget_worker(self, meeting: LiveMeeting, state: _Spread, index: int) -> None:
        generation = meeting.spread_workers.pop(index, None)
        if generation is not None:
            self._discard_router(meeting, index, generation)
        pipes = state.pipes.pop(index, None)
        state.piped.pop(index, None)
        state.announcers.pop(index, None)
        placement = meeting.placement
        if pipes is not None and placement is not None:  # home's end of it
            close = api.TransportClose(transport_id=pipes[0])
            self._tasks.spawn(self._quiet(placement.worker_index, placement.generation, close), f"pipe-{pipes[0]}")

    def _discard_router(self, meeting: LiveMeeting, index: int, generation: int) -> None:
        worker = self._supervisor.workers[index]
        if worker.generation == generation:
            worker.routers.discard(meeting.meeting_id)

    async def _quiet(self, index: int, generation: int, message: Message) -> None:
        try:
            await self._supervisor.request(index, generation, message)
        except ChannelError as exc:
            log.debug("%s on worker %d failed (ignored): %s", message.NAME, index, exc)
