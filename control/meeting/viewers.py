"""WHEP viewers (issue 12, item 5): people who watch a meeting without being in it.

A viewer is a WHEP player (draft-ietf-wish-whep) holding a viewer token the host issued.
It has one subscribe transport on the meeting's router, which its own offer negotiated
once (sfu.api.PlaybackOffer): one audio and one video *slot* that are never renegotiated.
What a slot forwards is decided here and changed on the worker without renegotiation
(sfu.api.ConsumerSetProducer):

- video (`choose_video`): the screen share when there is one, else the participant the
  host chose, else the active speaker, else the first camera; nothing while nobody
  shows anything;
- audio: the meeting's mix (control.meeting.viewer_mix: every microphone and the
  announcer, mixed by the recorder process and published back into the router as a
  producer of its own) once it exists. A player offers one audio m= section and cannot
  be given more later, and the worker does not decode, hence a mix made elsewhere.
  Until the mix exists, and whenever it is lost (the recorder restarting), the fallback
  `choose_audio`: the in-band notice while one plays (a viewer has no banner: the
  spoken notice is how it learns the meeting is recorded; the mix carries it too),
  else the active speaker's microphone, else the first microphone, else the announcer
  (silence): one voice at a time.

Viewers are not participants: they count against their own cap
(`limits.max_viewers_per_meeting`), and the participants hear of them as a `viewers`
event (a count and labels). A meeting's end, its router's loss, or the revocation of
their token ends them.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from common.channel import ChannelError
from common.messages import Message
from control.clock import Clock, Timer
from control.errors import ApiError
from control.meeting.conference import NOTICE_TRACK_ID, Conference
from control.meeting.listeners import ConferenceListener
from control.meeting.model import LiveMeeting, MeetingRegistry, Participant, PublishedTrack, new_id
from control.meeting.viewer_mix import ViewerMixes
from control.store.base import MeetingRecord, ViewerToken
from control.tasks import BackgroundTasks
from sfu import api

log = logging.getLogger(__name__)

# A player that has not connected (ICE + DTLS) this long after its answer is gone.
CONNECT_TIMEOUT_S = 30.0
# After a notice's last frame, the announcer keeps the audio slot this much longer (the
# player's jitter buffer still holds the end of it).
NOTICE_TAIL_S = 0.5
FRAME_S = 0.02  # a notice frame (common.notices: 20 ms of Opus)


# ---------------------------------------------------------------- what a slot forwards


def choose_video(meeting: LiveMeeting, featured: str | None) -> PublishedTrack | None:
    """The one video a viewer sees (see the module's doc)."""
    tracks = [t for t in meeting.tracks() if t.kind == "video"]
    screens = [t for t in tracks if t.source == "screen"]
    if screens:
        return screens[-1]  # the latest share
    cameras = [t for t in tracks if t.source != "screen"]
    for wanted in (featured, meeting.active_speaker):
        chosen = next((t for t in cameras if t.participant_id == wanted), None) if wanted else None
        if chosen is not None:
            return chosen
    return cameras[0] if cameras else None


def choose_audio(meeting: LiveMeeting, notice_playing: bool) -> PublishedTrack | None:
    """The one voice a viewer hears (see the module's doc)."""
    announcer = meeting.server_tracks.get(NOTICE_TRACK_ID)
    if notice_playing:
        return announcer
    microphones = [t for t in meeting.tracks() if t.kind == "audio" and t.source == "microphone"]
    speaking = next((t for t in microphones if t.participant_id == meeting.active_speaker), None)
    return speaking or (microphones[0] if microphones else announcer)


# ---------------------------------------------------------------- the model


@dataclass(eq=False)
class Slot:
    """One kind the player receives: its consumer on the worker and what it forwards."""

    kind: str
    consumer_id: str | None = None
    producer_id: str | None = None


@dataclass(eq=False)
class Viewer:
    viewer_id: str  # also the WHEP resource's last path segment: unguessable
    meeting_id: str
    token_id: str
    label: str
    transport_id: str
    slots: dict[str, Slot] = field(default_factory=dict)
    notice_until: float = 0.0  # the announcer holds the audio slot until then
    connected: bool = False  # its transport reported ICE + DTLS up
    closed: bool = False

    def public(self) -> dict[str, str]:
        return {"viewer_id": self.viewer_id, "label": self.label}


class ViewerRefused(ApiError):
    """A WHEP request that cannot be served, with `outcome` for the sessions counter."""

    def __init__(self, status: int, code: str, message: str, outcome: str) -> None:
        super().__init__(status, code, message)
        self.outcome = outcome


class Viewers(ConferenceListener):
    """Every meeting's viewers, and what their slots forward."""

    def __init__(
        self,
        *,
        registry: MeetingRegistry,
        conference: Conference,
        clock: Clock,
        tasks: BackgroundTasks,
        mixes: ViewerMixes | None = None,
    ) -> None:
        self._registry = registry
        self._conference = conference
        self._clock = clock
        self._tasks = tasks
        self.mixes = mixes  # None: the fallback only (one voice at a time)
        if mixes is not None:
            mixes.on_change = self.refresh
        self._by_meeting: dict[str, dict[str, Viewer]] = {}
        self._by_transport: dict[str, Viewer] = {}
        self._featured: dict[str, str | None] = {}  # the host's choice, by meeting
        self._notice_timers: dict[str, Timer] = {}
        self.sessions: dict[str, int] = {}  # conclave_whep_sessions_total by outcome

    # ------------------------------------------------------------------ reading

    def count(self) -> int:
        return sum(len(viewers) for viewers in self._by_meeting.values())

    def of(self, meeting_id: str) -> list[Viewer]:
        return list(self._by_meeting.get(meeting_id, {}).values())

    def find(self, meeting_id: str, viewer_id: str) -> Viewer | None:
        return self._by_meeting.get(meeting_id, {}).get(viewer_id)

    def counted(self, outcome: str) -> None:
        self.sessions[outcome] = self.sessions.get(outcome, 0) + 1

    # ------------------------------------------------------------------ start / stop

    async def start(self, record: MeetingRecord, token: ViewerToken, offer: str) -> tuple[Viewer, str]:
        """A new viewer of the live meeting `record` from its player's `offer`: (viewer,
        answer SDP). ViewerRefused: not live, full, a bad offer, no media server."""
        meeting = self._registry.get(record.id)
        if meeting is None or meeting.live_session_id is None or meeting.ended or meeting.limits is None:
            raise ViewerRefused(409, "meeting_not_live", "the meeting is not live: try again once it started",
                                "not_live")  # fmt: skip
        async with meeting.lock:
            cap = meeting.limits.account.max_viewers_per_meeting
            if len(self._by_meeting.get(meeting.meeting_id, {})) >= cap:
                raise ViewerRefused(503, "viewers_full", f"the meeting has {cap} viewers already", "full")
            await self._conference.ensure_router(meeting)
            viewer = Viewer(secrets.token_urlsafe(16), meeting.meeting_id, token.id, token.label[:100], new_id())
            answer = await self._negotiate(meeting, viewer, offer)
            self._by_meeting.setdefault(meeting.meeting_id, {})[viewer.viewer_id] = viewer
            self._by_transport[viewer.transport_id] = viewer
            await self._apply(meeting, viewer)
        if self.mixes is not None:
            self.mixes.want(meeting)
        self._clock.call_later(CONNECT_TIMEOUT_S, lambda: self._connect_deadline(viewer))
        self.counted("started")
        self._announce(meeting)
        log.info("meeting %s: viewer %s started (%d watching)", meeting.meeting_id, viewer.viewer_id,
                 len(self.of(meeting.meeting_id)))  # fmt: skip
        return viewer, answer

    async def _negotiate(self, meeting: LiveMeeting, viewer: Viewer, offer: str) -> str:
        router_id = meeting.placement.router_id if meeting.placement else ""
        try:
            await self._conference.request(meeting, api.TransportCreate(router_id, viewer.transport_id, "subscribe"))
        except ChannelError as exc:
            raise ViewerRefused(503, "unavailable", f"no media server for the viewer: {exc.message}", "failed") from None
        try:
            answer = await self._conference.request(meeting, api.PlaybackOffer(viewer.transport_id, offer))
        except ChannelError as exc:
            await self._quiet(meeting, api.TransportClose(viewer.transport_id))
            if exc.code == "invalid":
                raise ViewerRefused(400, "bad_offer", f"the offer cannot be answered: {exc.message}",
                                    "bad_offer") from None  # fmt: skip
            raise ViewerRefused(503, "unavailable", f"the offer was not answered: {exc.message}", "failed") from None
        assert isinstance(answer, api.PlaybackAnswer)
        viewer.slots = {kind: Slot(kind) for kind in answer.kinds}
        return answer.sdp

    async def stop(self, viewer: Viewer, reason: str) -> None:
        """The viewer goes (its player's DELETE, a revoked token): its transport with it."""
        if viewer.closed:
            return
        meeting = self._registry.get(viewer.meeting_id)
        self._forget(viewer)
        if meeting is not None:
            await self._quiet(meeting, api.TransportClose(viewer.transport_id))
            self._announce(meeting)
        log.info("meeting %s: viewer %s stopped (%s)", viewer.meeting_id, viewer.viewer_id, reason)

    async def revoke(self, meeting_id: str, token_id: str) -> int:
        """A revoked token ends the viewers that came with it; returns how many."""
        gone = [v for v in self.of(meeting_id) if v.token_id == token_id]
        for viewer in gone:
            await self.stop(viewer, "token revoked")
        return len(gone)

    def _connect_deadline(self, viewer: Viewer) -> None:
        if not viewer.connected and not viewer.closed:
            self._tasks.spawn(self.stop(viewer, "never connected"), f"viewer-gone-{viewer.viewer_id}")

    def _forget(self, viewer: Viewer) -> None:
        viewer.closed = True
        self._by_transport.pop(viewer.transport_id, None)
        viewers = self._by_meeting.get(viewer.meeting_id, {})
        viewers.pop(viewer.viewer_id, None)
        if not viewers:
            self._by_meeting.pop(viewer.meeting_id, None)
            if self.mixes is not None:
                self.mixes.release(viewer.meeting_id)

    def _drop_all(self, meeting: LiveMeeting) -> None:
        """The meeting ended or lost its router: its viewers' transports went with it."""
        for viewer in self.of(meeting.meeting_id):
            self._forget(viewer)
        self._featured.pop(meeting.meeting_id, None)
        timer = self._notice_timers.pop(meeting.meeting_id, None)
        if timer is not None:
            timer.cancel()

    # ------------------------------------------------------------------ the host's choice

    async def feature(self, meeting: LiveMeeting, participant_id: str | None) -> None:
        """The host chooses whose camera viewers see when nobody shares a screen (None:
        the active speaker again)."""
        self._featured[meeting.meeting_id] = participant_id
        await self.refresh(meeting)

    def featured(self, meeting_id: str) -> str | None:
        return self._featured.get(meeting_id)

    # ------------------------------------------------------------------ slots

    async def refresh(self, meeting: LiveMeeting) -> None:
        """Every viewer's slots forward what they should now."""
        async with meeting.lock:
            for viewer in self.of(meeting.meeting_id):
                await self._apply(meeting, viewer)

    def _refresh_later(self, meeting: LiveMeeting) -> None:
        if self._by_meeting.get(meeting.meeting_id):
            self._tasks.spawn(self.refresh(meeting), f"viewers-{meeting.meeting_id}")

    async def _apply(self, meeting: LiveMeeting, viewer: Viewer) -> None:
        """Point each slot at its chosen track (the caller holds the meeting's lock)."""
        video = choose_video(meeting, self._featured.get(meeting.meeting_id))
        chosen = {"video": video.producer_id if video else None, "audio": self._audio_source(meeting, viewer)}
        for kind, slot in viewer.slots.items():
            if viewer.closed:
                return
            await self._point(meeting, viewer, slot, chosen.get(kind))

    def _audio_source(self, meeting: LiveMeeting, viewer: Viewer) -> str | None:
        """The mix's producer once it exists, else the fallback's choice."""
        mix = self.mixes.producer_for(meeting.meeting_id) if self.mixes is not None else None
        if mix is not None:
            return mix
        track = choose_audio(meeting, self._clock.time() < viewer.notice_until)
        return track.producer_id if track else None

    async def _point(self, meeting: LiveMeeting, viewer: Viewer, slot: Slot, producer_id: str | None) -> None:
        if producer_id == slot.producer_id and slot.consumer_id is not None:
            return
        if producer_id is None:  # nothing to show: the consumer goes (it comes back with a source)
            if slot.consumer_id is not None:
                await self._quiet(meeting, api.ConsumerClose(slot.consumer_id))
            slot.consumer_id = slot.producer_id = None
            return
        if slot.consumer_id is not None:
            try:
                await self._conference.request(meeting, api.ConsumerSetProducer(slot.consumer_id, producer_id))
                slot.producer_id = producer_id
                return
            except ChannelError as exc:
                # A simulcast source (or its consumer) cannot be switched in place: a new
                # consumer on the same slot, same SSRC, from the next keyframe.
                log.info("viewer %s: %s switched by a new consumer (%s)", viewer.viewer_id, slot.kind, exc.message)
                await self._quiet(meeting, api.ConsumerClose(slot.consumer_id))
                slot.consumer_id = slot.producer_id = None
        consumer_id = new_id()
        try:
            await self._conference.request(meeting, api.ConsumerCreate(viewer.transport_id, consumer_id, producer_id))
        except ChannelError as exc:
            log.warning("viewer %s: no %s from %s: %s", viewer.viewer_id, slot.kind, producer_id, exc.message)
            return
        slot.consumer_id, slot.producer_id = consumer_id, producer_id

    async def _quiet(self, meeting: LiveMeeting, message: Message) -> None:
        try:
            await self._conference.request(meeting, message)
        except ChannelError as exc:
            log.debug("%s failed (ignored): %s", message.NAME, exc)

    # ------------------------------------------------------------------ the notice

    def notice_played(self, meeting: LiveMeeting, frames: list[str]) -> None:
        """A notice plays to the whole meeting: the viewers' audio slots take the announcer
        for its length and play it too."""
        viewers = [v for v in self.of(meeting.meeting_id) if "audio" in v.slots]
        if not viewers or (self.mixes is not None and self.mixes.producer_for(meeting.meeting_id)):
            return  # nobody to tell, or the mix plays it (its announcer voice hears every play)
        until = self._clock.time() + len(frames) * FRAME_S + NOTICE_TAIL_S
        for viewer in viewers:
            viewer.notice_until = until
        self._tasks.spawn(self._play_notice(meeting, viewers, frames), f"viewers-notice-{meeting.meeting_id}")
        previous = self._notice_timers.pop(meeting.meeting_id, None)
        if previous is not None:
            previous.cancel()
        self._notice_timers[meeting.meeting_id] = self._clock.call_later(
            until - self._clock.time() + 0.05, lambda: self._notice_over(meeting)
        )

    async def _play_notice(self, meeting: LiveMeeting, viewers: list[Viewer], frames: list[str]) -> None:
        async with meeting.lock:
            for viewer in viewers:
                await self._apply(meeting, viewer)
            announcer = meeting.server_tracks.get(NOTICE_TRACK_ID)
            slots = [v.slots["audio"] for v in viewers if not v.closed]
            consumer_ids = [s.consumer_id for s in slots if s.consumer_id and announcer and s.producer_id == announcer.producer_id]
            if not consumer_ids or announcer is None:
                return
            try:
                await self._conference.request(meeting, api.NoticePlay(announcer.producer_id, frames, consumer_ids))
            except ChannelError as exc:
                log.warning("meeting %s: notice not played to viewers: %s", meeting.meeting_id, exc)

    def _notice_over(self, meeting: LiveMeeting) -> None:
        self._notice_timers.pop(meeting.meeting_id, None)
        self._refresh_later(meeting)

    # ------------------------------------------------------------------ participants hear of viewers

    def viewers_message(self, meeting_id: str) -> dict[str, Any]:
        viewers = self.of(meeting_id)
        return {"type": "viewers", "count": len(viewers), "viewers": [v.public() for v in viewers]}

    def _announce(self, meeting: LiveMeeting) -> None:
        meeting.broadcast(self.viewers_message(meeting.meeting_id))

    # ------------------------------------------------------------------ conference news

    def participant_joined(self, meeting: LiveMeeting, participant: Participant) -> bool:
        if self._by_meeting.get(meeting.meeting_id):
            participant.send(self.viewers_message(meeting.meeting_id))
        return False

    def participant_left(self, meeting: LiveMeeting, participant: Participant) -> None:
        self._refresh_later(meeting)  # their tracks went; so may the active speaker

    def track_published(self, meeting: LiveMeeting, track: PublishedTrack) -> None:
        if self.mixes is not None:
            self.mixes.track_published(meeting, track)
        self._refresh_later(meeting)

    def track_unpublished(self, meeting: LiveMeeting, track: PublishedTrack) -> None:
        if self.mixes is not None:
            self.mixes.track_unpublished(meeting, track)
        # The worker closed the producer's consumers, a viewer's among them.
        for viewer in self.of(meeting.meeting_id):
            for slot in viewer.slots.values():
                if slot.producer_id == track.producer_id:
                    slot.consumer_id = slot.producer_id = None
        self._refresh_later(meeting)

    def router_lost(self, meeting: LiveMeeting) -> None:
        if self.mixes is not None:
            self.mixes.router_lost(meeting)
        self._drop_all(meeting)

    def worker_notification(self, index: int, generation: int, entity_id: str, message: Message) -> None:
        """A new active speaker (the conference, told first, has recorded it); a viewer's
        transport up, or down for good: a player that went away without its DELETE (its
        DTLS closed or failed, or its ICE consent expired: a player cannot come back to a
        WHEP session) is ended, so it does not hold a place under the cap."""
        if isinstance(message, api.ActiveSpeaker):
            meeting = self._registry.get(entity_id)  # a meeting's router is named after it
            if meeting is not None:
                self._refresh_later(meeting)
        elif isinstance(message, api.TransportStateChanged):
            viewer = self._by_transport.get(entity_id)
            if viewer is None:
                return
            if message.state == "connected":
                viewer.connected = True
            elif message.state in ("failed", "closed", "disconnected"):
                self._tasks.spawn(self.stop(viewer, f"transport {message.state}"), f"viewer-gone-{viewer.viewer_id}")

    # ------------------------------------------------------------------ lifecycle news

    def meeting_started(self, record: MeetingRecord, meeting: LiveMeeting) -> None:
        pass

    async def meeting_ended(self, meeting: LiveMeeting, reason: str) -> None:
        ended = len(self.of(meeting.meeting_id))
        self._drop_all(meeting)
        if ended:
            log.info("meeting %s ended: %d viewers out (%s)", meeting.meeting_id, ended, reason)

    async def limits_changed(self, meeting: LiveMeeting) -> None:
        pass
