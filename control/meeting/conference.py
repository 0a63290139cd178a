"""The media side of meetings: routers, transports, producers and consumers on the workers.

Every operation that changes which tracks exist or who receives them (join, publish,
subscribe, leave) runs under the meeting's lock, so a track published while someone
joins is forwarded to them exactly once. Renegotiating a subscriber's connection does
not hold the lock: `Negotiation` keeps at most one offer outstanding per subscriber and
sends one more offer after the answer when something changed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Any

from common.channel import ChannelError
from common.messages import Message
from control.accounts.tokens import Tokens
from control.clock import Clock
from control.errors import SignalingError
from control.meeting import admission, closecodes, roles
from control.meeting.listeners import ConferenceListener, Listeners
from control.meeting.model import (
    LiveMeeting,
    MeetingRegistry,
    Participant,
    Placement,
    PublishedTrack,
    Subscription,
    new_id,
    same_kind,
)
from control.meeting.negotiation import Negotiation, media_error
from control.meeting.offer_slots import OfferSlots
from control.meeting.roster import Roster, pages
from control.meeting.spread import SpreadMeetings
from control.processes.workers import WorkerSupervisor
from control.tasks import BackgroundTasks
from sfu import api

log = logging.getLogger(__name__)

# The tracks the server itself publishes in every meeting, by track id (what clients see)
# and source: the spoken notices (recording started/stopped), heard in-band by everyone.
NOTICE_TRACK_ID = "announcer"
SERVER_TRACKS = {NOTICE_TRACK_ID: "announcement"}
# A join while every worker is restarting waits this long for one before giving up.
WAIT_FOR_WORKER_S = 5.0
# A new track's consumers are asked of the worker this many at a time (pipelined on the
# channel) instead of one round trip per subscriber.
CONSUMERS_AT_ONCE = 64


def _unpublished(track: PublishedTrack) -> dict[str, Any]:
    return {"type": "track_unpublished", "track_id": track.track_id, "participant_id": track.participant_id}


# Tiles remembered per participant (`tile_size`), for consumers made later.
MAX_TILES = 256


def _active_speaker(participant_id: str | None) -> dict[str, Any]:
    return {"type": "active_speaker", "participant_id": participant_id}


# The STUN/TURN servers (RTCIceServer dicts) a participant is told in `joined`.
IceServers = Callable[[LiveMeeting, Participant], list[dict[str, Any]]]


class Conference:
    def __init__(
        self,
        *,
        registry: MeetingRegistry,
        supervisor: WorkerSupervisor,
        tokens: Tokens,
        clock: Clock,
        tasks: BackgroundTasks,
        answer_timeout_s: float = 30.0,
        simulcast: bool = False,
        ice_servers: IceServers | None = None,
        spread: SpreadMeetings | None = None,
    ) -> None:
        self._registry = registry
        self._supervisor = supervisor
        self._tokens = tokens  # a fresh join token for whoever is told to reconnect
        self._clock = clock
        self._tasks = tasks
        self.answer_timeout_s = answer_timeout_s
        self.simulcast = simulcast  # the workers accept simulcast (media.accept_simulcast)
        # TURN credentials for `joined` (control.processes.turn_settings.ice_servers)
        self._ice_servers: IceServers = ice_servers or (lambda meeting, participant: [])
        self.stopping = False
        # Subscribers seated on other workers than the meeting's (sfu.spread_after_participants).
        self.spread = spread or SpreadMeetings(supervisor, tasks)
        self._listeners = Listeners()
        # Per live meeting: how many subscribers renegotiate at once (control.meeting.offer_slots).
        self._offer_slots: weakref.WeakKeyDictionary[LiveMeeting, OfferSlots] = weakref.WeakKeyDictionary()
        # Changes of a meeting's active speaker announced (conclave_sfu_active_speaker_changes_total).
        self.active_speaker_changes = 0

    def add_listener(self, listener: ConferenceListener) -> None:
        self._listeners.members.append(listener)

    def _reconnect_token(self, meeting: LiveMeeting, participant: Participant) -> str | None:
        """A fresh join token for someone told to reconnect (same participant, same grants)."""
        try:
            return self._tokens.make_join_token(
                participant_id=participant.participant_id,
                meeting_id=meeting.meeting_id,
                live_session_id=meeting.live_session_id,
                name=participant.name,
                role=participant.role,
                host_session_id=participant.host_session_id,
                resumed=True,  # admitted here: admitted again wherever they reconnect (locked or not)
            )
        except Exception:
            log.exception("cannot make a reconnect token")
            return None

    def ice_servers_for(self, meeting: LiveMeeting, participant: Participant) -> list[dict[str, Any]]:
        """The STUN/TURN servers (with TURN credentials) `participant` may use."""
        return self._ice_servers(meeting, participant)

    # ------------------------------------------------------------------ helpers

    async def request(self, meeting: LiveMeeting, message: Message) -> Message:
        placement = meeting.placement
        if placement is None:
            raise ChannelError("worker_down", "the meeting has no media server")
        return await self._supervisor.request(placement.worker_index, placement.generation, message)

    async def _ensure_router(self, meeting: LiveMeeting) -> None:
        placement = meeting.placement
        if placement is not None:
            try:
                self._supervisor.handle_for(placement.worker_index, placement.generation)
                return
            except ChannelError:
                self._reset_locked(meeting, "media server restarted")  # its worker died
        worker = await self._supervisor.wait_for_live_worker(WAIT_FOR_WORKER_S)
        if worker is None or worker.client is None:
            raise SignalingError("unavailable", "no media server is running; try again in a moment")
        generation = worker.generation
        # Count the meeting on its worker before awaiting the router: first joins of
        # several meetings at once then spread over the workers instead of all picking
        # the one that looked empty.
        worker.routers.add(meeting.meeting_id)
        try:
            await worker.client.request(api.RouterCreate(router_id=meeting.meeting_id))
            server_tracks = await self._make_server_tracks(worker.client, meeting.meeting_id)
        except ChannelError as exc:
            if worker.generation == generation:
                worker.routers.discard(meeting.meeting_id)
            raise media_error(exc, "creating the meeting's router") from None
        meeting.placement = Placement(worker.index, generation, meeting.meeting_id)
        meeting.server_tracks = server_tracks
        self._listeners.router_created(meeting)

    async def _make_server_tracks(self, worker: Any, router_id: str) -> dict[str, PublishedTrack]:
        """The tracks the server itself publishes in every meeting (SERVER_TRACKS), each a
        producer on a direct transport of the new router."""
        tracks = {}
        for track_id, source in SERVER_TRACKS.items():
            transport_id = new_id()
            await worker.request(api.DirectTransportCreate(router_id=router_id, transport_id=transport_id))
            made = await worker.request(api.DirectProducerCreate(transport_id=transport_id, kind="audio", source=source))
            assert isinstance(made, api.DirectProducerCreated)
            info = made.producer
            tracks[track_id] = PublishedTrack(track_id, None, source, info.kind, info.mid, info.producer_id)
        return tracks

    async def ensure_router(self, meeting: LiveMeeting) -> None:
        """The meeting's router, made now if it has none (e.g. recording before anyone
        joined). The caller holds the meeting's lock."""
        if meeting.ended:
            raise SignalingError("meeting_ended", "the meeting has ended")
        await self._ensure_router(meeting)

    # ------------------------------------------------------------------ join / leave

    async def join(
        self,
        meeting: LiveMeeting,
        participant: Participant,
        chat: list[dict[str, Any]],
        message_id: Any = None,
    ) -> Participant:
        """Admit `participant` (new, or from the waiting room): transports, `joined` with the
        others, their tracks and `chat` (history, oldest first), then their tracks to them.
        Their transports are made before the meeting's lock when the meeting has a router:
        in a join storm the lock is what every join waits for."""
        ahead = await self._transports_ahead(meeting, participant)
        try:
            return await self._join_locked(meeting, participant, chat, message_id, ahead)
        except BaseException:
            if meeting.participants.get(participant.participant_id) is not participant:
                await self._close_transports(meeting, participant)  # made ahead for nothing
            raise

    async def _transports_ahead(self, meeting: LiveMeeting, participant: Participant) -> Placement | None:
        """`participant`'s transports on the meeting's router, outside its lock: the
        placement they were made on, or None (no router yet, or it failed: made under the
        lock then)."""
        placement = meeting.placement
        if placement is None or meeting.ended or self.stopping:
            return None
        if meeting.stage.is_attendee(participant):  # (checked again under the lock)
            participant.directions = ("subscribe",)
        try:
            await self._create_transports(meeting, participant)
        except SignalingError:
            return None
        return placement

    async def _join_locked(
        self, meeting: LiveMeeting, participant: Participant, chat: list[dict[str, Any]], message_id: Any,
        ahead: Placement | None,
    ) -> Participant:  # fmt: skip
        async with meeting.lock:
            if meeting.ended:
                raise SignalingError("meeting_ended", "the meeting has ended")
            participant_id = participant.participant_id
            await self._replace_previous(meeting, participant)
            assert meeting.limits is not None  # set when it went live (control.meeting.lifecycle)
            capacity = meeting.limits.capacity
            if not admission.has_room(len(meeting.participants), capacity):
                raise SignalingError("meeting_full", admission.full_meeting(capacity))
            await self._ensure_router(meeting)
            directions = participant.directions
            if meeting.stage.is_attendee(participant):  # a webinar's attendee receives only (control.meeting.roles)
                participant.directions = ("subscribe",)
            if ahead is None or ahead is not meeting.placement or participant.directions != directions:
                # none made ahead, its worker went meanwhile, or they were made for another role
                await self._close_transports(meeting, participant)
                await self._create_transports(meeting, participant)
            participant.negotiation = Negotiation(
                participant, lambda message: self.spread.request_for(meeting, participant, message), self._clock,
                self.answer_timeout_s, self._offer_slots.setdefault(meeting, OfferSlots()),
            )  # fmt: skip
            others = list(meeting.participants.values())
            meeting.add_participant(participant)
            # The others once: the first page in `joined`, the rest right after it.
            listed, more = pages([p.public() for p in others])
            joined: dict[str, Any] = {
                "type": "joined",
                "participant_id": participant_id,
                "meeting_id": meeting.meeting_id,
                "role": participant.role,
                "participants": listed,
                "participants_total": len(others),
                "tracks": [t.public() for t in meeting.tracks() if t.participant_id != participant_id],
                "chat": chat,
                "may_transcribe": participant.may_transcribe,
                "may_publish": meeting.stage.may_publish(participant),
                "simulcast": self.simulcast,
                "ice_servers": self.ice_servers_for(meeting, participant),
            }
            if message_id is not None:
                joined["id"] = message_id
            participant.send(joined)
            for page in more:
                participant.send(page)
            if meeting.active_speaker is not None:  # who speaks: known from the start
                participant.send(_active_speaker(meeting.active_speaker))
            self._roster(meeting).joined(participant)  # the others hear of them in the next batch
            wanted = self._listeners.participant_joined(meeting, participant)
            tracks = [t for t in meeting.forwarded_tracks() if t.participant_id != participant_id]
            made = await self._create_consumers(meeting, participant, tracks)
            # A server track alone is not worth an offer: it rides along with the next
            # one, or is offered when something is played on it (or a listener asks).
            if any(ok and (t.participant_id is not None or wanted) for t, ok in zip(tracks, made)):
                participant.negotiation.request()
            log.info("meeting %s: %s joined (%d in it)", meeting.meeting_id, participant_id, len(meeting.participants))
            return participant

    async def wait(self, meeting: LiveMeeting, participant: Participant, reason: str, message_id: Any = None) -> None:
        """Hold `participant` outside: no transports, nothing sent to them but `waiting`."""
        async with meeting.lock:
            if meeting.ended:
                raise SignalingError("meeting_ended", "the meeting has ended")
            await self._replace_previous(meeting, participant)
            participant.admitted = False
            meeting.waiting[participant.participant_id] = participant
            message: dict[str, Any] = {"type": "waiting", "reason": reason, "participant_id": participant.participant_id}
            if message_id is not None:
                message["id"] = message_id
            participant.send(message)
        log.info("meeting %s: %s waits (%s)", meeting.meeting_id, participant.participant_id, reason)

    async def _replace_previous(self, meeting: LiveMeeting, participant: Participant) -> None:
        """The same participant connected again (e.g. their network changed): the new
        connection wins, the old one is closed (4001)."""
        previous = meeting.find_connected(participant.participant_id)
        if previous is None or previous is participant:
            return
        previous.exit_reason = "replaced"
        await self._remove_locked(meeting, previous)
        previous.peer.close(closecodes.SESSION_ENDED, "joined again from another connection")

    async def dismiss(self, meeting: LiveMeeting, participant: Participant, message: dict[str, Any], code: int) -> None:
        """The server takes `participant` out (removed, denied, signed out): tell them why,
        release their media, close their socket."""
        participant.send(message)
        async with meeting.lock:
            await self._remove_locked(meeting, participant)
        participant.peer.close(code, str(message.get("type", "")))

    async def end(self, meeting: LiveMeeting, message: dict[str, Any], code: int) -> None:
        """The meeting ends: everyone (waiting room too) gets `message` and their socket
        closes at once (not after a media operation in flight); then, under the lock, anyone
        who got in meanwhile too, and the router goes from its worker (with its transports)."""
        meeting.ended = True
        count = self._close_everyone(meeting, message, code)
        if isinstance(meeting.roster, Roster):
            meeting.roster.close()  # nobody is left to tell
        async with meeting.lock:
            count += self._close_everyone(meeting, message, code)
            placement, meeting.placement = meeting.placement, None
            meeting.server_tracks = {}
            await self._close_router(meeting, placement)
        log.info("meeting %s ended: %d disconnected", meeting.meeting_id, count)

    async def _close_router(self, meeting: LiveMeeting, placement: Placement | None) -> None:
        """The meeting's router goes from its worker (with its transports), if it has one."""
        if placement is None or self.stopping:
            return
        await self.spread.close(meeting)
        try:
            worker = self._supervisor.handle_for(placement.worker_index, placement.generation)
            worker.routers.discard(placement.router_id)
            await self._supervisor.request(
                placement.worker_index, placement.generation, api.RouterClose(router_id=placement.router_id)
            )
        except ChannelError as exc:
            log.debug("closing the router of %s failed (ignored): %s", meeting.meeting_id, exc)

    def _close_everyone(self, meeting: LiveMeeting, message: dict[str, Any], code: int) -> int:
        """Everyone out at once, their media with the router (the meeting ends)."""
        everyone = meeting.connected()
        reason = str(message.get("reason", "meeting ended"))[:100]
        for participant in everyone:
            participant.exit_reason = participant.exit_reason or "ended"
            if self._take_out(meeting, participant, message, (code, reason)):
                self._listeners.participant_left(meeting, participant)
        return len(everyone)

    def _take_out(
        self,
        meeting: LiveMeeting,
        participant: Participant,
        message: dict[str, Any] | None = None,
        close: tuple[int, str] | None = None,
    ) -> bool:
        """The one way out of a meeting: tell them why (`message`), stop whatever they were
        doing, drop them from the meeting, close their socket (`close`). Their media on the
        worker is the caller's to release (`_release`), or goes with the router. True when
        they were admitted (the others knew them)."""
        was_admitted = meeting.participants.get(participant.participant_id) is participant
        if message is not None:
            participant.send(message)
        participant.closed = True
        if participant.negotiation is not None:
            participant.negotiation.cancel()
        meeting.remove_participant(participant)
        if close is not None:
            participant.peer.close(*close)
        return was_admitted

    async def _create_transports(self, meeting: LiveMeeting, participant: Participant) -> None:
        """Both transports asked at once (pipelined on the channel): a join holds the
        meeting's lock for one round trip to the worker here, not one per transport."""
        assert meeting.placement is not None
        router_id = meeting.placement.router_id
        wanted = {direction: new_id() for direction in participant.directions}

        async def create(direction: str, transport_id: str) -> Message:
            message = api.TransportCreate(router_id=router_id, transport_id=transport_id, direction=direction)
            if direction == "publish":
                return await self.request(meeting, message)  # publishers stay at home
            await self.spread.seat(meeting, participant, self._make_server_tracks)
            return await self.spread.request_for(meeting, participant, message)

        results = await asyncio.gather(*(create(d, t) for d, t in wanted.items()), return_exceptions=True)
        for (direction, transport_id), result in zip(wanted.items(), results):
            if isinstance(result, BaseException):
                continue
            if direction == "publish":
                participant.publish_transport_id = transport_id
            else:
                participant.subscribe_transport_id = transport_id
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            await self._close_transports(meeting, participant)
            if isinstance(failure, ChannelError):
                raise media_error(failure, "creating transports") from None
            raise failure

    async def _close_transports(self, meeting: LiveMeeting, participant: Participant) -> None:
        if participant.publish_transport_id is not None and not self.stopping:
            await self._quiet_request(meeting, api.TransportClose(transport_id=participant.publish_transport_id))
        if participant.subscribe_transport_id is not None and not self.stopping:
            close = api.TransportClose(transport_id=participant.subscribe_transport_id)
            try:
                await self.spread.request_for(meeting, participant, close)
            except ChannelError as exc:
                log.debug("%s failed (ignored): %s", close.NAME, exc)
        self.spread.unseat(meeting, participant)
        participant.publish_transport_id = participant.subscribe_transport_id = None
        participant.subscribe_connected = False

    async def _quiet_request(self, meeting: LiveMeeting, message: Message) -> None:
        """A clean-up request whose failure changes nothing (the entity may be gone already)."""
        try:
            await self.request(meeting, message)
        except ChannelError as exc:
            log.debug("%s failed (ignored): %s", message.NAME, exc)

    async def leave(self, meeting: LiveMeeting, participant: Participant) -> None:
        if participant.closed:
            return
        async with meeting.lock:
            await self._remove_locked(meeting, participant)
        count = len(meeting.participants)
        log.info("meeting %s: %s left (%d in it)", meeting.meeting_id, participant.participant_id, count)

    async def _remove_locked(self, meeting: LiveMeeting, participant: Participant) -> None:
        if participant.closed:
            return
        if not self._take_out(meeting, participant):
            return  # the waiting room: nobody saw them, they have nothing to release
        tracks = list(participant.tracks.values())
        participant.tracks.clear()
        # Closing a transport closes its producers and consumers in the worker.
        await self._close_transports(meeting, participant)
        changed = self._tracks_gone(meeting, tracks)
        self._roster(meeting).left(participant)
        if meeting.active_speaker == participant.participant_id:  # nobody speaks until someone does
            meeting.active_speaker = None
            meeting.broadcast(_active_speaker(None))
        self._renegotiate(changed)
        self._listeners.participant_left(meeting, participant)

    def _tracks_gone(
        self, meeting: LiveMeeting, tracks: list[PublishedTrack], owner: Participant | None = None
    ) -> set[Participant]:
        """The one "track gone" step: the producers are closed on the worker (their
        consumers with them). Everyone but the owner hears it, their m-lines go inactive,
        the listeners are told. Returns whose connection must be renegotiated."""
        changed: set[Participant] = set()
        self.spread.unpipe(meeting, [track.producer_id for track in tracks])
        for track in tracks:
            meeting.broadcast(_unpublished(track), exclude=owner)
            changed |= self._consumers_closed_with(meeting, track)
            self._listeners.track_unpublished(meeting, track)
        return changed

    # ------------------------------------------------------------------ tracks

    async def publish(
        self, meeting: LiveMeeting, participant: Participant, sdp: str, sources: dict[str, str], message_id: Any = None
    ) -> str:
        """The participant's publish offer: their tracks, forwarded to everyone else.
        Returns the answer (also sent to them as `publish_answer`)."""
        async with meeting.lock:
            if not meeting.stage.may_publish(participant):
                raise roles.refuse_publish()
            transport_id = self._live_transport(participant, participant.publish_transport_id)
            try:
                offer = api.PublishOffer(transport_id=transport_id, sdp=sdp, sources=sources)
                answer = await self.request(meeting, offer)
            except ChannelError as exc:
                raise media_error(exc, "publish") from None
            assert isinstance(answer, api.PublishAnswer)
            closed = [participant.tracks.pop(pid) for pid in answer.closed_producer_ids if pid in participant.tracks]
            added = []
            for info in answer.producers:
                source = info.source or sources.get(info.mid, "")
                track = PublishedTrack(info.producer_id, participant.participant_id, source, info.kind, info.mid)
                participant.tracks[track.track_id] = track
                added.append(track)
            # Published while muted, or before consenting to a recording: paused on the
            # media server before anyone (the recorder included) is given it.
            await self._apply_pauses(meeting, participant, [t for t in added if participant.paused(t.source)])
            reply: dict[str, Any] = {
                "type": "publish_answer",
                "sdp": answer.sdp,
                "tracks": [
                    {"mid": t.mid, "track_id": t.track_id, "source": t.source, "kind": t.kind}
                    for t in participant.tracks.values()
                ],
            }
            if message_id is not None:
                reply["id"] = message_id
            participant.send(reply)
            await self._announce(meeting, participant, added, closed)
            return answer.sdp

    async def open_publish(self, meeting: LiveMeeting, participant: Participant) -> None:
        """An attendee became a speaker (control.meeting.webinar): a publish transport for
        them, if they have none. The caller holds the meeting's lock."""
        if participant.closed or participant.publish_transport_id is not None or meeting.placement is None:
            return
        transport_id = new_id()
        create = api.TransportCreate(router_id=meeting.placement.router_id, transport_id=transport_id, direction="publish")
        try:
            await self.request(meeting, create)
        except ChannelError as exc:
            raise media_error(exc, "creating the publish transport") from None
        participant.publish_transport_id = transport_id
        participant.directions = ("publish", "subscribe")

    async def close_publish(self, meeting: LiveMeeting, participant: Participant) -> None:
        """A speaker became an attendee: their publish transport goes (its producers with it
        on the worker) and their tracks stop for everyone, through the one "track gone"
        step. The caller holds the meeting's lock."""
        tracks = list(participant.tracks.values())
        participant.tracks.clear()
        transport_id, participant.publish_transport_id = participant.publish_transport_id, None
        participant.directions = ("subscribe",)
        if transport_id is not None and not self.stopping:
            await self._quiet_request(meeting, api.TransportClose(transport_id=transport_id))
        self._renegotiate(self._tracks_gone(meeting, tracks, owner=participant))

    async def publish_plain(
        self, meeting: LiveMeeting, participant: Participant, producers: list[api.PlainProducerCreate]
    ) -> list[PublishedTrack]:
        """Streams arriving on a plain transport of the participant's (an RTP ingest):
        their tracks, forwarded to everyone else like published ones."""
        async with meeting.lock:
            self._live_transport(participant, participant.publish_transport_id)
            added = []
            for request in producers:
                try:
                    made = await self.request(meeting, request)
                except ChannelError as exc:
                    raise media_error(exc, "plain producer") from None
                assert isinstance(made, api.PlainProducerCreated)
                info = made.producer
                track = PublishedTrack(info.producer_id, participant.participant_id, info.source, info.kind, info.mid)
                participant.tracks[track.track_id] = track
                added.append(track)
            await self._apply_pauses(meeting, participant, [t for t in added if participant.paused(t.source)])
            await self._announce(meeting, participant, added, [])
            return added

    async def _announce(
        self, meeting: LiveMeeting, participant: Participant, added: list[PublishedTrack], closed: list[PublishedTrack]
    ) -> None:
        """New and gone tracks of `participant`: everyone else hears of them and receives
        the new ones; the listeners are told. The caller holds the lock."""
        changed = self._tracks_gone(meeting, closed, owner=participant)
        for track in added:
            meeting.broadcast({"type": "track_published", "track": track.public()}, exclude=participant)
        subscribers = meeting.others(participant)
        for track in added:
            for start in range(0, len(subscribers), CONSUMERS_AT_ONCE):
                chunk = subscribers[start : start + CONSUMERS_AT_ONCE]
                made = await asyncio.gather(*(self._create_consumer(meeting, s, track) for s in chunk))
                changed.update(s for s, ok in zip(chunk, made) if ok)
            self._listeners.track_published(meeting, track)
        self._renegotiate(changed)

    async def _create_consumers(
        self, meeting: LiveMeeting, subscriber: Participant, tracks: list[PublishedTrack]
    ) -> list[bool]:
        """`tracks` to `subscriber`, CONSUMERS_AT_ONCE requests in flight: which were made."""
        made: list[bool] = []
        for start in range(0, len(tracks), CONSUMERS_AT_ONCE):
            chunk = tracks[start : start + CONSUMERS_AT_ONCE]
            made += await asyncio.gather(*(self._create_consumer(meeting, subscriber, t) for t in chunk))
        return made

    def _roster(self, meeting: LiveMeeting) -> Roster:
        """The meeting's batches of participant changes (control.meeting.roster)."""
        if meeting.roster is None:
            meeting.roster = Roster(meeting, self._clock)
        assert isinstance(meeting.roster, Roster)
        return meeting.roster

    def _live_transport(self, participant: Participant, transport_id: str | None) -> str:
        if participant.closed or transport_id is None:
            raise SignalingError("not_joined", "you are not in the meeting")
        return transport_id

    async def _create_consumer(self, meeting: LiveMeeting, subscriber: Participant, track: PublishedTrack) -> bool:
        """Forward `track` to `subscriber` unless they turned it off; True if a consumer was made."""
        transport_id = subscriber.subscribe_transport_id
        if subscriber.closed or transport_id is None or track.track_id in subscriber.unsubscribed:
            return False
        if subscriber.active_consumer_for(track.track_id) is not None:
            return False
        consumer_id = new_id()
        # Known before the worker answers: its first allocation of the consumer (which
        # may pause it for last-N) can be read before this coroutine resumes, and a
        # second publish meanwhile must not make a second consumer of the same track.
        subscriber.consumers[consumer_id] = Subscription(consumer_id, track)
        try:
            producer_id = self.spread.producer_for(meeting, subscriber, track)  # where they sit
            create = api.ConsumerCreate(transport_id=transport_id, consumer_id=consumer_id, producer_id=producer_id)
            await self.spread.ensure_piped(meeting, subscriber, track)
            await self.spread.request_for(meeting, subscriber, create)
        except ChannelError as exc:
            subscriber.consumers.pop(consumer_id, None)
            log.warning("consumer of %s for %s failed: %s", track.track_id, subscriber.participant_id, exc)
            subscriber.send(media_error(exc, f"receiving track {track.track_id}").as_message())
            return False
        tile = subscriber.tiles.get(track.track_id)
        if tile is not None and track.kind == "video":
            await self._send_tile(meeting, subscriber, consumer_id, tile)
        return True

    async def set_tile(
        self, meeting: LiveMeeting, participant: Participant, track_id: str, width: int, height: int, visible: bool
    ) -> None:
        """The size and visibility of the tile `participant` shows `track_id` in: what
        layer of a simulcast track they receive (none while hidden)."""
        self._live_transport(participant, participant.subscribe_transport_id)
        track = meeting.find_track(track_id)
        tile = (width, height, visible)
        # A track that went meanwhile (or was never theirs to receive) is no error: the
        # client reports tiles as its page lays them out, and the race is ordinary.
        if track is None or track.participant_id == participant.participant_id or track.kind != "video":
            return
        if participant.tiles.get(track_id) == tile:
            return
        if len(participant.tiles) >= MAX_TILES and track_id not in participant.tiles:
            participant.tiles.pop(next(iter(participant.tiles)))  # the oldest: bounded memory
        participant.tiles[track_id] = tile
        consumer = participant.active_consumer_for(track_id)
        if consumer is not None:
            await self._send_tile(meeting, participant, consumer.consumer_id, tile)

    async def _send_tile(
        self, meeting: LiveMeeting, subscriber: Participant, consumer_id: str, tile: tuple[int, int, bool]
    ) -> None:
        width, height, visible = tile
        try:
            await self.spread.request_for(
                meeting, subscriber, api.ConsumerSetViewport(consumer_id, width, height, visible)
            )
        except ChannelError as exc:  # the consumer went meanwhile: its next one gets the tile
            log.info("tile of consumer %s not set: %s", consumer_id, exc)

    def _consumers_closed_with(self, meeting: LiveMeeting, track: PublishedTrack) -> set[Participant]:
        """`track`'s producer is closed; the worker closed its consumers with it (no request
        needed). Marks them inactive; returns the subscribers whose m-lines changed."""
        changed = set()
        for subscriber in list(meeting.participants.values()):
            subscriber.forget_track(track.track_id)
            consumer = subscriber.active_consumer_for(track.track_id)
            if consumer is not None:
                consumer.active = False
                changed.add(subscriber)
        return changed

    def _renegotiate(self, subscribers: set[Participant]) -> None:
        for subscriber in subscribers:
            if not subscriber.closed and subscriber.negotiation is not None:
                subscriber.negotiation.request()

    async def set_subscription(self, meeting: LiveMeeting, participant: Participant, track_id: str, enabled: bool) -> None:
        async with meeting.lock:
            self._live_transport(participant, participant.subscribe_transport_id)
            track = meeting.find_track(track_id)
            if track is None or track.participant_id == participant.participant_id:
                raise SignalingError("not_found", f"no track {track_id!r} to subscribe to")
            if enabled:
                participant.unsubscribed.discard(track_id)
                if await self._create_consumer(meeting, participant, track):
                    self._renegotiate({participant})
                return
            participant.unsubscribed.add(track_id)
            consumer = participant.active_consumer_for(track_id)
            if consumer is None:
                return
            consumer.active = False
            try:
                await self.spread.request_for(meeting, participant, api.ConsumerClose(consumer_id=consumer.consumer_id))
            except ChannelError as exc:
                raise media_error(exc, "unsubscribe") from None
            finally:
                self._renegotiate({participant})

    async def answer(self, meeting: LiveMeeting, participant: Participant, sdp: str) -> None:
        self._live_transport(participant, participant.subscribe_transport_id)
        assert participant.negotiation is not None
        await participant.negotiation.on_answer(sdp)

    # ------------------------------------------------------------------ mute / chat

    async def mute(self, meeting: LiveMeeting, participant: Participant, source: str, muted: bool) -> None:
        """The participant mutes or unmutes their own source (not one the host muted)."""
        if not muted and participant.host_muted_kind(source):
            raise SignalingError("muted_by_host", f"the host muted your {source}; only the host can allow it again")
        await self._set_muted(meeting, participant, source, muted)

    async def host_mute(self, meeting: LiveMeeting, participant: Participant, source: str, muted: bool) -> None:
        """Server-side mute by the host: the SFU stops forwarding the source and the
        participant cannot unmute it until the host allows it again (`muted` False, which
        does not unmute them: only they can turn their microphone or camera back on)."""
        if muted:
            participant.host_muted.add(source)
        else:
            participant.host_muted.discard(source)
        participant.send({"type": "muted_by_host", "source": source, "muted": muted})
        if muted:
            await self._set_muted(meeting, participant, source, True)
        else:
            self._roster(meeting).updated(participant)
        # Every track of that kind (screen-audio with the microphone, screen with the camera).
        kin = [t for t in participant.tracks.values() if same_kind(t.source, source) and t.source != source]
        failures = await self._apply_pauses(meeting, participant, kin)
        if failures:
            raise media_error(failures[0], "mute")

    async def _set_muted(self, meeting: LiveMeeting, participant: Participant, source: str, muted: bool) -> None:
        participant.muted[source] = muted
        self._roster(meeting).updated(participant)
        # Pause the producers too, so a muted source is not forwarded whatever the client
        # sends; held media (consent pending) stays paused when they unmute.
        tracks = [t for t in participant.tracks.values() if t.source == source]
        failures = await self._apply_pauses(meeting, participant, tracks)
        if failures:
            raise media_error(failures[0], "mute")

    async def set_media_held(self, meeting: LiveMeeting, participant: Participant, held: bool) -> None:
        """Hold (pause on the media server) everything `participant` publishes, or let it
        go again: sources they muted stay paused. The caller holds the meeting's lock."""
        participant.media_held = held
        if not participant.closed:
            await self._apply_pauses(meeting, participant, list(participant.tracks.values()))

    async def _apply_pauses(
        self, meeting: LiveMeeting, participant: Participant, tracks: list[PublishedTrack]
    ) -> list[ChannelError]:
        """The one "pause" step: each producer of `tracks` paused on the worker exactly when
        `participant.paused(source)` (muted, or held for consent). Failures are logged and
        returned (the caller decides whether the client hears of them)."""
        failures = []
        for track in tracks:
            paused = participant.paused(track.source)
            try:
                await self.request(meeting, api.ProducerPause(producer_id=track.producer_id, paused=paused))
            except ChannelError as exc:
                log.warning("meeting %s: pausing %s failed: %s", meeting.meeting_id, track.track_id, exc)
                failures.append(exc)
        return failures

    async def play(
        self, meeting: LiveMeeting, track_id: str, frames: list[str], participants: list[Participant] | None
    ) -> None:
        """Play Opus `frames` (base64, 20 ms each) on one of the server's tracks: to everyone
        receiving it (`participants` None) or to these participants only."""
        track = meeting.server_tracks.get(track_id)
        if track is None:
            raise ChannelError("worker_down", "the meeting has no media server")
        if participants is None:  # everyone: at home and on each worker the meeting spread to
            await self.request(meeting, api.NoticePlay(producer_id=track.producer_id, frames=frames))
            for index, generation, producer_id in self.spread.server_producers(meeting, track_id):
                await self._supervisor.request(index, generation, api.NoticePlay(producer_id, frames))
            self._listeners.notice_played(meeting, frames)  # viewers (control.meeting.viewers) too
            return
        # These participants only, on the worker each sits on: one play per worker.
        plays: dict[str, tuple[Participant, list[str]]] = {}  # producer id -> (one of them, consumers)
        for participant in participants:
            subscription = participant.active_consumer_for(track_id)
            if subscription is not None:
                producer_id = self.spread.producer_for(meeting, participant, track)
                plays.setdefault(producer_id, (participant, []))[1].append(subscription.consumer_id)
        for producer_id, (participant, consumer_ids) in plays.items():
            await self.spread.request_for(meeting, participant, api.NoticePlay(producer_id, frames, consumer_ids))

    # ------------------------------------------------------------------ worker events

    def worker_down(self, index: int, generation: int) -> None:
        """A worker died (the supervisor tells): its meetings' people reconnect; so do
        the subscribers other meetings had seated on it."""
        for meeting in self._registry.on_worker(index):
            self._tasks.spawn(self._reset_meeting(meeting, index, generation), f"reset-{meeting.meeting_id}")
        for meeting in self._registry.using_worker(index, generation):
            if meeting.spread_workers.get(index) == generation:
                self._tasks.spawn(self._reseat(meeting, index, generation), f"reseat-{meeting.meeting_id}")

    async def _reseat(self, meeting: LiveMeeting, index: int, generation: int) -> None:
        """A worker the meeting spread to died: whoever sat there reconnects (and is
        seated again on a live one); the others notice nothing."""
        async with meeting.lock:
            if meeting.spread_workers.get(index) != generation:
                return
            reason = "media server restarted"
            seated = [meeting.participants.get(p) for p in self.spread.seated_elsewhere(meeting, index)]
            self.spread.worker_lost(meeting, index)
            for participant in [p for p in seated if p is not None]:
                message: dict[str, Any] = {"type": "reconnect", "reason": reason}
                token = self._reconnect_token(meeting, participant)
                if token:
                    message["token"] = token
                participant.send(message)
                participant.exit_reason = "reset"
                await self._remove_locked(meeting, participant)
                participant.peer.close(closecodes.SERVICE_RESTART, reason)
            log.warning(
                "meeting %s: worker %d died; %d seated there told to reconnect", meeting.meeting_id, index, len(seated)
            )

    async def _reset_meeting(self, meeting: LiveMeeting, index: int, generation: int) -> None:
        """The meeting's worker died: everyone reconnects; the router is re-made on rejoin."""
        async with meeting.lock:
            placement = meeting.placement
            if placement is None or (placement.worker_index, placement.generation) != (index, generation):
                return
            count = self._reset_locked(meeting, "media server restarted")
            log.warning("meeting %s: worker %d died; %d told to reconnect", meeting.meeting_id, index, count)

    async def hand_over(self, meeting: LiveMeeting, reason: str, url: str | None) -> int:
        """This node gives the meeting up (a drain; the meeting goes on elsewhere): everyone
        is told to reconnect (admitted ones with a token to come back as themselves), to
        `url` (the socket on the node that holds it next) when there is one; its router
        leaves this node's worker."""
        meeting.ended = True  # no late join slips in here
        async with meeting.lock:
            placement = meeting.placement
            count = self._reset_locked(meeting, reason, url)
            for participant in list(meeting.waiting.values()):
                message = {"type": "reconnect", "reason": reason, **({"url": url} if url else {})}
                self._take_out(meeting, participant, message, (closecodes.SERVICE_RESTART, reason))
                count += 1
            await self._close_router(meeting, placement)
        return count

    def _reset_locked(self, meeting: LiveMeeting, reason: str, url: str | None = None) -> int:
        """Forget the meeting's router; tell everyone in it to reconnect (to `url`, another
        node's socket, when given). Returns how many."""
        had_router, meeting.placement = meeting.placement is not None, None
        spread = self.spread.detach(meeting)
        if spread:  # the routers it had on other workers: no home to feed them now
            self._tasks.spawn(self.spread.close_routers(meeting.meeting_id, spread), f"unspread-{meeting.meeting_id}")
        if isinstance(meeting.roster, Roster):
            meeting.roster.close()  # everyone goes: those who come back get a fresh list
        meeting.server_tracks = {}
        meeting.active_speaker = None
        if had_router:
            self._listeners.router_lost(meeting)
        participants = list(meeting.participants.values())
        for participant in participants:
            message: dict[str, Any] = {"type": "reconnect", "reason": reason}
            if url:
                message["url"] = url
            token = self._reconnect_token(meeting, participant)
            if token:
                message["token"] = token  # to come back as themselves, admitted
            participant.exit_reason = "reset"
            self._take_out(meeting, participant, message, (closecodes.SERVICE_RESTART, reason))
            self._listeners.participant_left(meeting, participant)
        return len(participants)

    def worker_notification(self, index: int, generation: int, entity_id: str, message: Message) -> None:
        """A worker's news about one of its entities (a producer closed, a transport's
        state, a router's active speaker)."""
        if isinstance(message, api.ActiveSpeaker):
            self._active_speaker_changed(index, generation, entity_id, message.producer_id)
        elif isinstance(message, api.ProducerClosed):
            for meeting in self._registry.on_worker(index):
                if meeting.placement and meeting.placement.generation == generation and meeting.find_track(entity_id):
                    self._tasks.spawn(self._producer_closed(meeting, entity_id), f"producer-closed-{entity_id}")
        elif isinstance(message, api.TransportStateChanged):
            level = logging.INFO if message.state == "failed" else logging.DEBUG
            log.log(level, "worker %d: transport %s is %s", index, entity_id, message.state)
            if message.state == "connected":
                self._transport_connected(index, generation, entity_id)

    def _active_speaker_changed(self, index: int, generation: int, router_id: str, producer_id: str) -> None:
        """The meeting's router heard a new dominant microphone: everyone in the meeting
        hears whose it is (`active_speaker`). News of a router the meeting no longer has,
        or of a microphone already gone, changes nothing; nor does the same speaker again
        (a new microphone of theirs)."""
        meeting = self._registry.get(router_id)  # a meeting's router is named after it
        placement = meeting.placement if meeting is not None else None
        if meeting is None or placement is None or placement.router_id != router_id:
            return
        if (placement.worker_index, placement.generation) != (index, generation):
            return
        speaker = meeting.owner_of_producer(producer_id)
        if speaker is None or speaker.participant_id == meeting.active_speaker:
            return
        meeting.active_speaker = speaker.participant_id
        self.active_speaker_changes += 1
        meeting.broadcast(_active_speaker(speaker.participant_id))

    def _transport_connected(self, index: int, generation: int, transport_id: str) -> None:
        for meeting in self._registry.using_worker(index, generation):
            for participant in meeting.participants.values():
                if participant.subscribe_transport_id == transport_id and not participant.closed:
                    participant.subscribe_connected = True
                    self._listeners.subscriber_connected(meeting, participant)
                    return

    async def _producer_closed(self, meeting: LiveMeeting, producer_id: str) -> None:
        async with meeting.lock:
            track = meeting.find_track(producer_id)
            if track is None:
                return
            owner = meeting.participants.get(track.participant_id)
            if owner is not None:
                owner.tracks.pop(track.track_id, None)
            self._renegotiate(self._tracks_gone(meeting, [track], owner=owner))

    # ------------------------------------------------------------------ shutdown

    def close_all(self) -> None:
        """Server shutdown: close every participant's socket; no more worker requests."""
        self.stopping = True
        for meeting in self._registry:
            for participant in meeting.connected():
                participant.exit_reason = participant.exit_reason or "shutdown"
                participant.peer.close(closecodes.GOING_AWAY, "server shutting down")
