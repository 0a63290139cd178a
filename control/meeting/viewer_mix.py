"""The live audio mix of a meeting's WHEP viewers: control's side (issue 12, item 5).

A viewer's player has one audio slot; to hear two people talking at once it needs one
stream of all of them, and the SFU never decodes. The recorder process makes it (a job of
its own, apart from recordings: recorder/live_mixing.py); here is what exists for it on
the worker and the order it is made in, per meeting that has at least one viewer:

    MIX_START (recorder)          -> its socket, the SSRC and payload type it will send
    PLAIN_TRANSPORT_CREATE        -> on the meeting's router; connected to that socket
    PLAIN_PRODUCER_CREATE         -> the mix producer ("mix": no participant receives it,
                                     it is no PublishedTrack, the speaker detector never
                                     hears it: it has no audio-level extension)
    MIX_CONNECT (recorder)        -> the mix flows to the transport
    CONSUMER_CREATE per voice     -> every audio track and the announcer (the recording
                                     notice is in the mix, the others ducked under it
                                     while it plays), then MIX_TRACK_ADD by SSRC

Once made, `producer_for` names the producer and the viewers' audio slots are switched to
it (control.meeting.viewers, without renegotiation); until then, and whenever it is lost
(the recorder died: `recorder_down`), they keep the active speaker's microphone. A track
published or gone while it runs joins or leaves it (a muted microphone is a paused
producer: it sends nothing, so it is silent in the mix). The mix stops with the last
viewer, the meeting's end or its router's loss, and is made again when the recorder is
back (`recorder_up`) for meetings that still have viewers. Every step of one meeting's
mix runs under that mix's lock, one after the other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from common.channel import ChannelError
from common.messages import Message
from control.meeting.conference import NOTICE_TRACK_ID, Conference
from control.meeting.model import LiveMeeting, PublishedTrack, new_id
from control.tasks import BackgroundTasks
from recorder import api as recorder_api
from sfu import api

log = logging.getLogger(__name__)

MIX_SOURCE = "mix"
OPUS_RATE = 48000
# conclave_whep_audio_mix_events_total's bounded label
EVENTS = ("started", "failed", "lost", "stopped")


@dataclass(eq=False)
class Mix:
    meeting_id: str
    mix_id: str
    generation: int  # the recorder process it runs in
    transport_id: str | None = None
    producer_id: str | None = None  # set once the whole chain exists
    voices: dict[str, str] = field(default_factory=dict)  # track id -> consumer id


def mixed_tracks(meeting: LiveMeeting) -> list[PublishedTrack]:
    """What a viewer should hear: every audio track and the announcer."""
    announcer = meeting.server_tracks.get(NOTICE_TRACK_ID)
    voices = [t for t in meeting.tracks() if t.kind == "audio"]
    return ([announcer] if announcer is not None else []) + voices


class ViewerMixes:
    """Every meeting's viewer mix (see the module's doc)."""

    def __init__(self, *, conference: Conference, recorder: Any, tasks: BackgroundTasks) -> None:
        self._conference = conference
        self._recorder = recorder  # control.processes.recorders.RecorderSupervisor
        self._tasks = tasks
        self._wanted: dict[str, LiveMeeting] = {}
        self._mixes: dict[str, Mix] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Told when a meeting's mix producer appears or goes (the viewers re-point slots).
        self.on_change: Callable[[LiveMeeting], Awaitable[None]] | None = None
        self.events: dict[str, int] = dict.fromkeys(EVENTS, 0)

    # ------------------------------------------------------------------ reading

    def producer_for(self, meeting_id: str) -> str | None:
        """The mix producer viewers of the meeting should hear, once it exists."""
        mix = self._mixes.get(meeting_id)
        return mix.producer_id if mix is not None else None

    def running(self) -> int:
        return sum(1 for mix in self._mixes.values() if mix.producer_id is not None)

    # ------------------------------------------------------------------ wanted or not

    def want(self, meeting: LiveMeeting) -> None:
        """The meeting has a viewer (a new one): make its mix unless it has one (a start
        that failed is tried again with the next viewer)."""
        self._wanted[meeting.meeting_id] = meeting
        if meeting.meeting_id not in self._mixes:
            self._spawn(meeting, self._start(meeting), "start")

    def release(self, meeting_id: str) -> None:
        """The meeting has no viewer any more (or ended): its mix goes."""
        meeting = self._wanted.pop(meeting_id, None)
        if meeting is not None:
            self._spawn(meeting, self._stop(meeting, "stopped"), "stop")

    # ------------------------------------------------------------------ news

    def track_published(self, meeting: LiveMeeting, track: PublishedTrack) -> None:
        if track.kind == "audio" and meeting.meeting_id in self._mixes:
            self._spawn(meeting, self._add_later(meeting, track), "voice")

    def track_unpublished(self, meeting: LiveMeeting, track: PublishedTrack) -> None:
        if meeting.meeting_id in self._mixes:
            self._spawn(meeting, self._remove_later(meeting, track), "voice-gone")

    def router_lost(self, meeting: LiveMeeting) -> None:
        """The worker died with the mix's transport: the recorder stops mixing."""
        if meeting.meeting_id in self._mixes:
            self._spawn(meeting, self._stop(meeting, "lost", transport_gone=True), "router-lost")

    def recorder_down(self, generation: int) -> None:
        """The recorder process of `generation` died with its mixes: the viewers fall back."""
        for mix in list(self._mixes.values()):
            meeting = self._wanted.get(mix.meeting_id)
            if meeting is not None and mix.generation == generation:
                self._spawn(meeting, self._lost(meeting, generation), "recorder-down")

    def recorder_up(self, generation: int) -> None:
        """A recorder process is ready: every meeting with viewers gets its mix (again)."""
        for meeting in list(self._wanted.values()):
            self._spawn(meeting, self._start(meeting), "recorder-up")

    # ------------------------------------------------------------------ steps

    def _spawn(self, meeting: LiveMeeting, work: Awaitable[None], what: str) -> None:
        self._tasks.spawn(work, f"viewer-mix-{what}-{meeting.meeting_id}")

    def _lock(self, meeting_id: str) -> asyncio.Lock:
        return self._locks.setdefault(meeting_id, asyncio.Lock())

    async def _start(self, meeting: LiveMeeting) -> None:
        async with self._lock(meeting.meeting_id):
            current = self._mixes.get(meeting.meeting_id)
            if meeting.meeting_id not in self._wanted or meeting.ended or not self._recorder.up:
                return  # not wanted, or recorder_up starts it
            if current is not None and current.generation == self._recorder.generation:
                return
            if current is not None:  # of a recorder that died (before recorder_down ran)
                del self._mixes[meeting.meeting_id]
                self.events["lost"] += 1
                await self._unmake(meeting, current, recorder_gone=True)
            mix = Mix(meeting.meeting_id, f"mix-{new_id()}", self._recorder.generation)
            try:
                await self._make(meeting, mix)
            except (ChannelError, AssertionError) as exc:
                self.events["failed"] += 1
                log.warning("meeting %s: no viewer mix: %s", meeting.meeting_id, exc)
                await self._unmake(meeting, mix)
                return
            self._mixes[meeting.meeting_id] = mix
            self.events["started"] += 1
            log.info("meeting %s: viewer mix %s running (%d voices)", meeting.meeting_id, mix.mix_id, len(mix.voices))
        await self._changed(meeting)

    async def _make(self, meeting: LiveMeeting, mix: Mix) -> None:
        placement = meeting.placement
        if placement is None:
            raise ChannelError("worker_down", "the meeting has no media server")
        started = await self._recorder.request(recorder_api.MixStart(mix_id=mix.mix_id, meeting_id=meeting.meeting_id))
        assert isinstance(started, recorder_api.MixStarted)
        mix.transport_id = f"mix-{new_id()}"
        info = await self._conference.request(meeting, api.PlainTransportCreate(placement.router_id, mix.transport_id))
        assert isinstance(info, api.PlainTransportInfo)
        await self._conference.request(meeting, api.PlainTransportConnect(mix.transport_id, started.ip, started.port))
        made = await self._conference.request(meeting, api.PlainProducerCreate(
            mix.transport_id, "audio", "opus", OPUS_RATE, started.payload_type, started.ssrc, 2, MIX_SOURCE))  # fmt: skip
        assert isinstance(made, api.PlainProducerCreated)
        await self._recorder.request(recorder_api.MixConnect(mix.mix_id, info.ip, info.port))
        for track in mixed_tracks(meeting):
            await self._add_voice(meeting, mix, track)
        mix.producer_id = made.producer.producer_id

    async def _add_voice(self, meeting: LiveMeeting, mix: Mix, track: PublishedTrack) -> None:
        if mix.transport_id is None or track.track_id in mix.voices:
            return
        consumer_id = new_id()
        try:
            info = await self._conference.request(
                meeting, api.ConsumerCreate(mix.transport_id, consumer_id, track.producer_id)
            )
        except ChannelError as exc:  # gone meanwhile
            log.info("viewer mix %s: %s not consumed: %s", mix.mix_id, track.track_id, exc.message)
            return
        assert isinstance(info, api.PlainConsumerInfo)
        mix.voices[track.track_id] = consumer_id
        ducks = track.track_id == NOTICE_TRACK_ID  # the notice is understood over everyone
        await self._recorder.request(
            recorder_api.MixTrackAdd(mix.mix_id, track.track_id, info.ssrc, info.payload_type, ducks_others=ducks)
        )

    async def _add_later(self, meeting: LiveMeeting, track: PublishedTrack) -> None:
        async with self._lock(meeting.meeting_id):
            mix = self._mixes.get(meeting.meeting_id)
            if mix is not None and meeting.find_track(track.track_id) is not None:
                await self._quiet(self._add_voice(meeting, mix, track))

    async def _remove_later(self, meeting: LiveMeeting, track: PublishedTrack) -> None:
        """Its producer closed, and the consumer with it: the recorder forgets the SSRC."""
        async with self._lock(meeting.meeting_id):
            mix = self._mixes.get(meeting.meeting_id)
            if mix is not None and mix.voices.pop(track.track_id, None) is not None:
                await self._quiet(self._recorder.request(recorder_api.MixTrackRemove(mix.mix_id, track.track_id)))

    async def _stop(self, meeting: LiveMeeting, event: str, *, transport_gone: bool = False) -> None:
        async with self._lock(meeting.meeting_id):
            mix = self._mixes.pop(meeting.meeting_id, None)
            if mix is None:
                return
            self.events[event] += 1
            if transport_gone:
                mix.transport_id = None
            await self._unmake(meeting, mix)
            log.info("meeting %s: viewer mix %s %s", meeting.meeting_id, mix.mix_id, event)
        if meeting.meeting_id in self._wanted and not meeting.ended:
            await self._changed(meeting)  # the viewers fall back to a microphone

    async def _lost(self, meeting: LiveMeeting, generation: int) -> None:
        """The recorder of `generation` died: the viewers leave the mix producer first
        (closing it would close their consumers), then its transport goes."""
        async with self._lock(meeting.meeting_id):
            mix = self._mixes.get(meeting.meeting_id)
            if mix is None or mix.generation != generation:
                return
            mix.producer_id = None
        await self._changed(meeting)
        async with self._lock(meeting.meeting_id):
            if self._mixes.get(meeting.meeting_id) is mix:
                del self._mixes[meeting.meeting_id]
                self.events["lost"] += 1
                await self._unmake(meeting, mix, recorder_gone=True)
                log.warning("meeting %s: viewer mix %s lost with the recorder", meeting.meeting_id, mix.mix_id)

    async def _unmake(self, meeting: LiveMeeting, mix: Mix, *, recorder_gone: bool = False) -> None:
        """What exists of `mix` goes: the recorder's job, the worker's transport."""
        mix.producer_id = None
        if not recorder_gone:
            await self._quiet(self._recorder.request(recorder_api.MixStop(mix.mix_id)))
        transport_id, mix.transport_id = mix.transport_id, None
        if transport_id is not None and not self._conference.stopping:
            await self._quiet(self._conference.request(meeting, api.TransportClose(transport_id)))

    async def _changed(self, meeting: LiveMeeting) -> None:
        if self.on_change is not None:
            try:
                await self.on_change(meeting)
            except ChannelError as exc:
                log.warning("meeting %s: viewers not re-pointed: %s", meeting.meeting_id, exc)

    @staticmethod
    async def _quiet(work: Awaitable[Message | None]) -> None:
        try:
            await work
        except ChannelError as exc:
            log.debug("viewer mix step failed (ignored): %s", exc)
