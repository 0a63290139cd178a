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
from collections.abc import Callable
from typing import Any

from control.errors import SignalingError
from control.meetings import Consumer, Meeting, MeetingRegistry, Participant, Placement, Track, new_id
from control.workers import WorkerSupervisor
from sfu import api
from sfu.channel import ChannelError

log = logging.getLogger(__name__)

# The meeting's announcer: a server-side audio producer on a direct transport of its
# router (made with the router); everyone is subscribed to it, so a notice played on it is
# heard in-band. Clients see it as this track id with source "announcement" and no participant.
ANNOUNCER_TRACK_ID = "announcer"
ANNOUNCER_SOURCE = "announcement"

REPLACED_CLOSE_CODE = 4001  # the participant joined again on another socket
RESTART_CLOSE_CODE = 1012  # WebSocket "service restart": the media server restarted
NO_ANSWER_CLOSE_CODE = 1008  # policy violation: the client never answered an offer
# A join while every worker is restarting waits this long for one before giving up.
WAIT_FOR_WORKER_S = 5.0


def _unpublished(track: Track) -> dict[str, Any]:
    return {"type": "track_unpublished", "track_id": track.track_id, "participant_id": track.participant_id}


def media_error(exc: ChannelError, what: str) -> SignalingError:
    """A worker error as the client sees it: code `media_error`, the worker's code as reason."""
    return SignalingError("media_error", f"{what} failed: {exc.message}", reason=exc.code)


class Negotiation:
    """Serializes renegotiation of one subscriber's connection: never two offers outstanding."""

    __slots__ = ("_conference", "_meeting", "_participant", "state", "dirty", "_task", "offers", "_deadline")

    IDLE, CREATING, AWAITING_ANSWER = "idle", "creating", "awaiting_answer"

    def __init__(self, conference: Conference, meeting: Meeting, participant: Participant) -> None:
        self._conference = conference
        self._meeting = meeting
        self._participant = participant
        self.state = self.IDLE
        self.dirty = False
        self._task: asyncio.Task[None] | None = None
        self.offers = 0  # offers sent so far
        self._deadline: asyncio.TimerHandle | None = None  # for the answer to the offer out

    def request(self) -> None:
        """Something changed in what this subscriber receives: offer it (now or after the answer)."""
        if self._participant.closed:
            return
        if self.state != self.IDLE:
            self.dirty = True
            return
        self.state = self.CREATING
        self.dirty = False
        self._task = asyncio.create_task(self._offer(), name=f"offer-{self._participant.participant_id}")

    async def _offer(self) -> None:
        participant = self._participant
        transport_id = participant.subscribe_transport_id
        try:
            if transport_id is None:
                raise ChannelError("no_transport", "subscribe transport is gone")
            offer = await self._conference.request(self._meeting, api.SubscribeOfferCreate(transport_id=transport_id))
        except ChannelError as exc:
            self.state = self.IDLE
            if not participant.closed:
                log.warning("subscribe offer for %s failed: %s", participant.participant_id, exc)
                self._conference.send_error(participant, media_error(exc, "subscribe offer"))
            return
        if participant.closed:
            return
        assert isinstance(offer, api.SubscribeOffer)
        if not offer.consumers:
            self._settle()
            return
        self.state = self.AWAITING_ANSWER
        self.offers += 1
        participant.send({"type": "offer", "sdp": offer.sdp, "tracks": [self._describe(c) for c in offer.consumers]})
        # Every later change waits for this answer: a client that never gives it would
        # hold this subscriber's tracks back forever. It is dropped (and may reconnect).
        self._deadline = asyncio.get_running_loop().call_later(self._conference.answer_timeout_s, self._no_answer)

    def _no_answer(self) -> None:
        self._deadline = None
        if self.state == self.AWAITING_ANSWER and not self._participant.closed:
            log.warning("participant %s did not answer an offer: closing its socket", self._participant.participant_id)
            self._participant.peer.close(NO_ANSWER_CLOSE_CODE, "no answer to the offer")

    def _describe(self, info: api.ConsumerInfo) -> dict[str, Any]:
        if info.consumer_id == self._participant.announcer_consumer_id:
            return {
                "mid": info.mid,
                "track_id": ANNOUNCER_TRACK_ID,
                "participant_id": None,
                "source": ANNOUNCER_SOURCE,
                "kind": info.kind,
                "active": info.active,
            }
        consumer = self._participant.consumers.get(info.consumer_id)
        track = consumer.track if consumer else None
        return {
            "mid": info.mid,
            "track_id": track.track_id if track else info.producer_id,
            "participant_id": track.participant_id if track else None,
            "source": track.source if track else None,
            "kind": info.kind,
            "active": info.active,
        }

    async def on_answer(self, sdp: str) -> None:
        if self.state != self.AWAITING_ANSWER:
            raise SignalingError("unexpected_answer", "there is no offer waiting for an answer")
        transport_id = self._participant.subscribe_transport_id
        try:
            if transport_id is None:
                raise ChannelError("no_transport", "subscribe transport is gone")
            await self._conference.request(self._meeting, api.SubscribeAnswerSet(transport_id=transport_id, sdp=sdp))
        except ChannelError as exc:
            raise media_error(exc, "answer") from None
        finally:
            self._settle()

    def _settle(self) -> None:
        self._stop_deadline()
        self.state = self.IDLE
        if self.dirty:
            self.request()

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def cancel(self) -> None:
        self._stop_deadline()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def ensure_offered(self) -> None:
        """An offer unless one was made (or is being made): e.g. for the announcer alone,
        whose m-line is in every offer but is not worth one by itself until it speaks."""
        if self.offers == 0 and self.state == self.IDLE:
            self.request()


class ConferenceListener:
    """Upward news from the conference, for whoever follows a meeting's media (recording
    jobs: control.recording). Every method is called synchronously, most of them under the
    meeting's lock; a listener schedules its own I/O. The defaults do nothing."""

    def participant_joined(self, meeting: Meeting, participant: Participant) -> bool:
        """Admitted with transports; `joined` was sent. Under the lock, before anything
        they send is handled (a listener may set `participant.media_held`). True if they
        need their subscribe connection now even with nothing but the announcer on it."""
        return False

    def participant_left(self, meeting: Meeting, participant: Participant) -> None:
        """Gone from the meeting (`participant.exit_reason` says why)."""

    def track_published(self, meeting: Meeting, track: Track) -> None:
        """A new producer, already forwarded to the others."""

    def track_unpublished(self, meeting: Meeting, track: Track) -> None:
        """A producer is closed (its consumers with it)."""

    def subscriber_connected(self, meeting: Meeting, participant: Participant) -> None:
        """Their subscribe transport is up: what is played on the announcer reaches them."""

    def router_created(self, meeting: Meeting) -> None:
        """The meeting has a (new) router: first join, or back after its worker died."""

    def router_lost(self, meeting: Meeting) -> None:
        """The meeting's worker died: its router, transports and producers are gone."""


class Conference:
    def __init__(
        self, registry: MeetingRegistry, supervisor: WorkerSupervisor, max_participants: int, answer_timeout_s: float = 30.0
    ) -> None:
        self._registry = registry
        self._supervisor = supervisor
        self._max_participants = max_participants
        self.answer_timeout_s = answer_timeout_s
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stopping = False
        # A fresh join token for a participant told to reconnect (set by control.live).
        self.reconnect_token: Callable[[Meeting, Participant], str | None] | None = None
        self.listener = ConferenceListener()  # set by control.recording
        supervisor.add_down_listener(self._on_worker_down)
        supervisor.add_notification_listener(self._on_worker_notification)

    # ------------------------------------------------------------------ helpers

    async def request(self, meeting: Meeting, message: api.Message) -> api.Message:
        placement = meeting.placement
        if placement is None:
            raise ChannelError("worker_down", "the meeting has no media server")
        return await self._supervisor.request(placement.worker_index, placement.generation, message)

    def send_error(self, participant: Participant, error: SignalingError, message_id: Any = None) -> None:
        message = {"type": "error", "code": error.code, "message": error.message, **error.extra}
        if message_id is not None:
            message["id"] = message_id
        participant.send(message)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ensure_router(self, meeting: Meeting) -> None:
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
            direct_id = new_id()
            await worker.client.request(api.DirectTransportCreate(router_id=meeting.meeting_id, transport_id=direct_id))
            announcer = await worker.client.request(
                api.DirectProducerCreate(transport_id=direct_id, kind="audio", source=ANNOUNCER_SOURCE)
            )
        except ChannelError as exc:
            if worker.generation == generation:
                worker.routers.discard(meeting.meeting_id)
            raise media_error(exc, "creating the meeting's router") from None
        assert isinstance(announcer, api.DirectProducerCreated)
        meeting.placement = Placement(worker.index, generation, meeting.meeting_id, announcer.producer.producer_id)
        self.listener.router_created(meeting)

    async def ensure_router(self, meeting: Meeting) -> None:
        """The meeting's router, made now if it has none (e.g. recording before anyone
        joined). The caller holds the meeting's lock."""
        if meeting.ended:
            raise SignalingError("meeting_ended", "the meeting has ended")
        await self._ensure_router(meeting)

    # ------------------------------------------------------------------ join / leave

    def capacity(self, meeting: Meeting) -> int:
        """Most admitted participants: the server's cap, or the customer's if lower."""
        if meeting.max_participants is None:
            return self._max_participants
        return min(self._max_participants, meeting.max_participants)

    async def join(
        self,
        meeting: Meeting,
        participant: Participant,
        chat: list[dict[str, Any]],
        message_id: Any = None,
    ) -> Participant:
        """Admit `participant` (new, or from the waiting room): transports, `joined` with the
        others, their tracks and `chat` (history, oldest first), then their tracks to them."""
        async with meeting.lock:
            if meeting.ended:
                raise SignalingError("meeting_ended", "the meeting has ended")
            participant_id = participant.participant_id
            await self._replace_previous(meeting, participant)
            capacity = self.capacity(meeting)
            if len(meeting.participants) >= capacity:
                raise SignalingError("meeting_full", f"the meeting has {capacity} participants already")
            await self._ensure_router(meeting)
            await self._create_transports(meeting, participant)
            participant.negotiation = Negotiation(self, meeting, participant)
            others = list(meeting.participants.values())
            meeting.add_participant(participant)
            joined: dict[str, Any] = {
                "type": "joined",
                "participant_id": participant_id,
                "meeting_id": meeting.meeting_id,
                "role": participant.role,
                "participants": [p.public() for p in others],
                "tracks": [t.public() for t in meeting.tracks() if t.participant_id != participant_id],
                "chat": chat,
                "may_transcribe": participant.may_transcribe,
                "ice_servers": [],
            }
            if message_id is not None:
                joined["id"] = message_id
            participant.send(joined)
            meeting.broadcast({"type": "participant_joined", "participant": participant.public()}, exclude=participant)
            # The announcer's m-line goes in every offer; alone it waits until something
            # is played (control.recording asks for the offer then, or at once here).
            wanted = self.listener.participant_joined(meeting, participant)
            created = wanted and participant.announcer_consumer_id is not None
            for track in list(meeting.tracks()):
                if track.participant_id != participant_id:
                    created |= await self._create_consumer(meeting, participant, track)
            if created:
                participant.negotiation.request()
            log.info("meeting %s: %s joined (%d in it)", meeting.meeting_id, participant_id, len(meeting.participants))
            return participant

    async def wait(self, meeting: Meeting, participant: Participant, reason: str, message_id: Any = None) -> None:
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

    async def _replace_previous(self, meeting: Meeting, participant: Participant) -> None:
        """The same participant connected again (e.g. their network changed): the new
        connection wins, the old one is closed (4001)."""
        previous = meeting.find_connected(participant.participant_id)
        if previous is None or previous is participant:
            return
        previous.exit_reason = "replaced"
        await self._remove_locked(meeting, previous)
        previous.peer.close(REPLACED_CLOSE_CODE, "joined again from another connection")

    async def dismiss(self, meeting: Meeting, participant: Participant, message: dict[str, Any], code: int) -> None:
        """The server takes `participant` out (removed, denied, signed out): tell them why,
        release their media, close their socket."""
        participant.send(message)
        async with meeting.lock:
            await self._remove_locked(meeting, participant)
        participant.peer.close(code, str(message.get("type", "")))

    async def end(self, meeting: Meeting, message: dict[str, Any], code: int) -> None:
        """The meeting ends: everyone (waiting room too) gets `message` and their socket
        closes at once (not after a media operation in flight); then, under the lock, anyone
        who got in meanwhile too, and the router goes from its worker (with its transports)."""
        meeting.ended = True
        count = self._close_everyone(meeting, message, code)
        async with meeting.lock:
            count += self._close_everyone(meeting, message, code)
            placement, meeting.placement = meeting.placement, None
            if placement is not None and not self.stopping:
                try:
                    worker = self._supervisor.handle_for(placement.worker_index, placement.generation)
                    worker.routers.discard(placement.router_id)
                    await self._supervisor.request(
                        placement.worker_index, placement.generation, api.RouterClose(router_id=placement.router_id)
                    )
                except ChannelError as exc:
                    log.debug("closing the router of %s failed (ignored): %s", meeting.meeting_id, exc)
        log.info("meeting %s ended: %d disconnected", meeting.meeting_id, count)

    def _close_everyone(self, meeting: Meeting, message: dict[str, Any], code: int) -> int:
        everyone = meeting.connected()
        for participant in everyone:
            participant.exit_reason = participant.exit_reason or "ended"
            participant.send(message)
            participant.closed = True
            if participant.negotiation is not None:
                participant.negotiation.cancel()
            was_admitted = participant.admitted and meeting.participants.get(participant.participant_id) is participant
            meeting.remove_participant(participant)
            participant.peer.close(code, str(message.get("reason", "meeting ended"))[:100])
            if was_admitted:
                self.listener.participant_left(meeting, participant)
        return len(everyone)

    async def _create_transports(self, meeting: Meeting, participant: Participant) -> None:
        assert meeting.placement is not None
        router_id = meeting.placement.router_id
        try:
            for direction in ("publish", "subscribe"):
                transport_id = new_id()
                create = api.TransportCreate(router_id=router_id, transport_id=transport_id, direction=direction)
                await self.request(meeting, create)
                if direction == "publish":
                    participant.publish_transport_id = transport_id
                else:
                    participant.subscribe_transport_id = transport_id
        except ChannelError as exc:
            await self._close_transports(meeting, participant)
            raise media_error(exc, "creating transports") from None
        await self._consume_announcer(meeting, participant)

    async def _consume_announcer(self, meeting: Meeting, participant: Participant) -> None:
        """Subscribe them to the meeting's announcer, so that notices reach them in-band.
        Not fatal when it fails: they still get the notice as a banner and an event."""
        assert participant.subscribe_transport_id is not None and meeting.placement is not None
        consumer_id = new_id()
        create = api.ConsumerCreate(
            transport_id=participant.subscribe_transport_id,
            consumer_id=consumer_id,
            producer_id=meeting.placement.announcer_producer_id,
        )
        try:
            await self.request(meeting, create)
        except ChannelError as exc:
            log.warning("meeting %s: no announcer for %s: %s", meeting.meeting_id, participant.participant_id, exc)
            return
        participant.announcer_consumer_id = consumer_id

    async def _close_transports(self, meeting: Meeting, participant: Participant) -> None:
        for transport_id in (participant.publish_transport_id, participant.subscribe_transport_id):
            if transport_id is not None and not self.stopping:
                await self._quiet_request(meeting, api.TransportClose(transport_id=transport_id))
        participant.publish_transport_id = participant.subscribe_transport_id = None
        participant.announcer_consumer_id = None
        participant.subscribe_connected = False

    async def _quiet_request(self, meeting: Meeting, message: api.Message) -> None:
        """A clean-up request whose failure changes nothing (the entity may be gone already)."""
        try:
            await self.request(meeting, message)
        except ChannelError as exc:
            log.debug("%s failed (ignored): %s", message.NAME, exc)

    async def leave(self, meeting: Meeting, participant: Participant) -> None:
        if participant.closed:
            return
        async with meeting.lock:
            await self._remove_locked(meeting, participant)
        count = len(meeting.participants)
        log.info("meeting %s: %s left (%d in it)", meeting.meeting_id, participant.participant_id, count)

    async def _remove_locked(self, meeting: Meeting, participant: Participant) -> None:
        if participant.closed:
            return
        participant.closed = True
        was_admitted = meeting.participants.get(participant.participant_id) is participant
        meeting.remove_participant(participant)
        if not was_admitted:
            return  # the waiting room: nobody saw them, they have nothing to release
        if participant.negotiation is not None:
            participant.negotiation.cancel()
        tracks = list(participant.tracks.values())
        participant.tracks.clear()
        # Closing a transport closes its producers and consumers in the worker.
        await self._close_transports(meeting, participant)
        changed: set[Participant] = set()
        for track in tracks:
            meeting.broadcast(_unpublished(track))
            changed |= self._consumers_closed_with(meeting, track)
            self.listener.track_unpublished(meeting, track)
        meeting.broadcast({"type": "participant_left", "participant_id": participant.participant_id})
        self._renegotiate(changed)
        self.listener.participant_left(meeting, participant)

    # ------------------------------------------------------------------ tracks

    async def publish(
        self, meeting: Meeting, participant: Participant, sdp: str, sources: dict[str, str], message_id: Any = None
    ) -> None:
        async with meeting.lock:
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
                track = Track(info.producer_id, participant.participant_id, source, info.kind, info.mid)
                participant.tracks[track.track_id] = track
                added.append(track)
            for track in added:
                # Published while muted, or before consenting to a recording: paused on the
                # media server before anyone (the recorder included) is given it.
                if participant.paused(track.source):
                    await self._quiet_request(meeting, api.ProducerPause(producer_id=track.producer_id, paused=True))
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
            changed: set[Participant] = set()
            for track in closed:
                meeting.broadcast(_unpublished(track), exclude=participant)
                changed |= self._consumers_closed_with(meeting, track)
                self.listener.track_unpublished(meeting, track)
            for track in added:
                meeting.broadcast({"type": "track_published", "track": track.public()}, exclude=participant)
            for track in added:
                for subscriber in meeting.others(participant):
                    if await self._create_consumer(meeting, subscriber, track):
                        changed.add(subscriber)
                self.listener.track_published(meeting, track)
            self._renegotiate(changed)

    def _live_transport(self, participant: Participant, transport_id: str | None) -> str:
        if participant.closed or transport_id is None:
            raise SignalingError("not_joined", "you are not in the meeting")
        return transport_id

    async def _create_consumer(self, meeting: Meeting, subscriber: Participant, track: Track) -> bool:
        """Forward `track` to `subscriber` unless they turned it off; True if a consumer was made."""
        transport_id = subscriber.subscribe_transport_id
        if subscriber.closed or transport_id is None or track.track_id in subscriber.unsubscribed:
            return False
        if subscriber.active_consumer_for(track.track_id) is not None:
            return False
        consumer_id = new_id()
        try:
            create = api.ConsumerCreate(
                transport_id=transport_id, consumer_id=consumer_id, producer_id=track.producer_id
            )
            await self.request(meeting, create)
        except ChannelError as exc:
            log.warning("consumer of %s for %s failed: %s", track.track_id, subscriber.participant_id, exc)
            self.send_error(subscriber, media_error(exc, f"receiving track {track.track_id}"))
            return False
        subscriber.consumers[consumer_id] = Consumer(consumer_id, track)
        return True

    def _consumers_closed_with(self, meeting: Meeting, track: Track) -> set[Participant]:
        """`track`'s producer is closed; the worker closed its consumers with it (no request
        needed). Marks them inactive; returns the subscribers whose m-lines changed."""
        changed = set()
        for subscriber in list(meeting.participants.values()):
            consumer = subscriber.active_consumer_for(track.track_id)
            if consumer is not None:
                consumer.active = False
                changed.add(subscriber)
        return changed

    def _renegotiate(self, subscribers: set[Participant]) -> None:
        for subscriber in subscribers:
            if not subscriber.closed and subscriber.negotiation is not None:
                subscriber.negotiation.request()

    async def set_subscription(self, meeting: Meeting, participant: Participant, track_id: str, enabled: bool) -> None:
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
                await self.request(meeting, api.ConsumerClose(consumer_id=consumer.consumer_id))
            except ChannelError as exc:
                raise media_error(exc, "unsubscribe") from None
            finally:
                self._renegotiate({participant})

    async def answer(self, meeting: Meeting, participant: Participant, sdp: str) -> None:
        self._live_transport(participant, participant.subscribe_transport_id)
        assert participant.negotiation is not None
        await participant.negotiation.on_answer(sdp)

    # ------------------------------------------------------------------ mute / chat

    async def mute(self, meeting: Meeting, participant: Participant, source: str, muted: bool) -> None:
        """The participant mutes or unmutes their own source (not one the host muted)."""
        if not muted and source in participant.host_muted:
            raise SignalingError("muted_by_host", f"the host muted your {source}; only the host can allow it again")
        await self._set_muted(meeting, participant, source, muted)

    async def host_mute(self, meeting: Meeting, participant: Participant, source: str, muted: bool) -> None:
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
            meeting.broadcast({"type": "participant_updated", "participant": participant.public()})

    async def _set_muted(self, meeting: Meeting, participant: Participant, source: str, muted: bool) -> None:
        participant.muted[source] = muted
        meeting.broadcast({"type": "participant_updated", "participant": participant.public()})
        # Pause the producers too, so a muted source is not forwarded whatever the client
        # sends; held media (consent pending) stays paused when they unmute.
        paused = participant.paused(source)
        for track in [t for t in participant.tracks.values() if t.source == source]:
            try:
                await self.request(meeting, api.ProducerPause(producer_id=track.producer_id, paused=paused))
            except ChannelError as exc:
                raise media_error(exc, "mute") from None

    async def set_media_held(self, meeting: Meeting, participant: Participant, held: bool) -> None:
        """Hold (pause on the media server) everything `participant` publishes, or let it
        go again: sources they muted stay paused. The caller holds the meeting's lock."""
        participant.media_held = held
        if participant.closed:
            return
        for track in list(participant.tracks.values()):
            try:
                await self.request(
                    meeting, api.ProducerPause(producer_id=track.producer_id, paused=participant.paused(track.source))
                )
            except ChannelError as exc:
                log.warning("meeting %s: pausing %s failed: %s", meeting.meeting_id, track.track_id, exc)

    async def play_notice(self, meeting: Meeting, frames: list[str], participants: list[Participant] | None) -> None:
        """Play Opus `frames` (base64, 20 ms each) on the meeting's announcer: to everyone
        subscribed to it (`participants` None) or to these participants only."""
        placement = meeting.placement
        if placement is None:
            raise ChannelError("worker_down", "the meeting has no media server")
        consumer_ids: list[str] = []
        if participants is not None:
            consumer_ids = [p.announcer_consumer_id for p in participants if p.announcer_consumer_id]
            if not consumer_ids:
                return
        await self.request(
            meeting,
            api.NoticePlay(producer_id=placement.announcer_producer_id, frames=frames, consumer_ids=consumer_ids),
        )

    def chat(self, meeting: Meeting, message: dict[str, Any]) -> None:
        """A stored chat message (control.live numbered it) to everyone admitted."""
        meeting.broadcast({"type": "chat", "message": message})

    # ------------------------------------------------------------------ worker events

    def _on_worker_down(self, index: int, generation: int) -> None:
        for meeting in self._registry.on_worker(index):
            self._spawn(self._reset_meeting(meeting, index, generation), f"reset-{meeting.meeting_id}")

    async def _reset_meeting(self, meeting: Meeting, index: int, generation: int) -> None:
        """The meeting's worker died: everyone reconnects; the router is re-made on rejoin."""
        async with meeting.lock:
            placement = meeting.placement
            if placement is None or (placement.worker_index, placement.generation) != (index, generation):
                return
            count = self._reset_locked(meeting, "media server restarted")
            log.warning("meeting %s: worker %d died; %d told to reconnect", meeting.meeting_id, index, count)

    def _reset_locked(self, meeting: Meeting, reason: str) -> int:
        """Forget the meeting's router; tell everyone in it to reconnect. Returns how many."""
        had_router, meeting.placement = meeting.placement is not None, None
        if had_router:
            self.listener.router_lost(meeting)
        participants = list(meeting.participants.values())
        for participant in participants:
            message: dict[str, Any] = {"type": "reconnect", "reason": reason}
            token = self.reconnect_token(meeting, participant) if self.reconnect_token else None
            if token:
                message["token"] = token  # to come back as themselves, admitted
            participant.exit_reason = "reset"
            participant.send(message)
            participant.closed = True
            if participant.negotiation is not None:
                participant.negotiation.cancel()
            meeting.remove_participant(participant)
            participant.peer.close(RESTART_CLOSE_CODE, reason)
            self.listener.participant_left(meeting, participant)
        return len(participants)

    def _on_worker_notification(self, index: int, generation: int, entity_id: str, message: api.Message) -> None:
        if isinstance(message, api.ProducerClosed):
            for meeting in self._registry.on_worker(index):
                if meeting.placement and meeting.placement.generation == generation and meeting.find_track(entity_id):
                    self._spawn(self._producer_closed(meeting, entity_id), f"producer-closed-{entity_id}")
        elif isinstance(message, api.TransportStateChanged):
            level = logging.INFO if message.state == "failed" else logging.DEBUG
            log.log(level, "worker %d: transport %s is %s", index, entity_id, message.state)
            if message.state == "connected":
                self._transport_connected(index, generation, entity_id)

    def _transport_connected(self, index: int, generation: int, transport_id: str) -> None:
        for meeting in self._registry.on_worker(index):
            if meeting.placement is None or meeting.placement.generation != generation:
                continue
            for participant in meeting.participants.values():
                if participant.subscribe_transport_id == transport_id and not participant.closed:
                    participant.subscribe_connected = True
                    self.listener.subscriber_connected(meeting, participant)
                    return

    async def _producer_closed(self, meeting: Meeting, producer_id: str) -> None:
        async with meeting.lock:
            track = meeting.find_track(producer_id)
            if track is None:
                return
            owner = meeting.participants.get(track.participant_id)
            if owner is not None:
                owner.tracks.pop(track.track_id, None)
            meeting.broadcast(_unpublished(track), exclude=owner)
            self._renegotiate(self._consumers_closed_with(meeting, track))
            self.listener.track_unpublished(meeting, track)

    # ------------------------------------------------------------------ shutdown

    def close_all(self, code: int, reason: str) -> None:
        """Server shutdown: close every participant's socket; no more worker requests."""
        self.stopping = True
        for meeting in self._registry:
            for participant in meeting.connected():
                participant.exit_reason = participant.exit_reason or "shutdown"
                participant.peer.close(code, reason)

    async def wait_background(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
