"""Adaptive media, control's side (issue 11): the meeting's last-N told to its router, and
what the workers decide per subscriber and per publisher told to whom it concerns.

- Last-N: a meeting's `last_n` (the host's setting under the customer's cap,
  `control.meeting.limits.MeetingLimits.last_n`) goes to its router as
  `sfu.api.RouterSetLastN` when the router is made and whenever the setting or the cap
  changes. A worker that refuses it (one without the allocator) is logged once; the
  meeting goes on without last-N.
- Allocation (`sfu.api.SubscriberAllocation`, entity: a subscribe transport): its owner,
  and nobody else, hears `track_quality` for each changed track, `track_paused` when the
  server stopped forwarding it for bandwidth or last-N and `track_resumed` when it comes
  back. A tile the client hid itself ("hidden") is no news about those pauses.
- Dynacast (`sfu.api.ProducerLayersWanted`, entity: a producer): its publisher hears
  `publish_layers` (which rid encodings to keep sending).

Worker news is handled synchronously (no lock: it reads the live model and sends).
"""

from __future__ import annotations

import logging
from typing import Any

from common.channel import ChannelError
from common.messages import Message
from control.meeting.limits import DEFAULT_LAST_N
from control.meeting.listeners import ConferenceListener
from control.meeting.model import LiveMeeting, MeetingRegistry, Participant, PublishedTrack
from control.processes.workers import WorkerSupervisor
from control.store.base import MeetingRecord
from control.tasks import BackgroundTasks
from sfu import api

log = logging.getLogger(__name__)

# The pauses a subscriber is told about: the server's decisions. "hidden" is the client's own.
SERVER_PAUSES = ("bandwidth", "last_n")
# Simulcast has at most three encodings; a longer list from a worker is cut.
MAX_RIDS = 3
MAX_RID_CHARS = 16
MAX_FPS = 240.0  # a frame rate above this is not one a camera sends: reported as unknown


def effective_last_n(meeting: LiveMeeting) -> int:
    """What the meeting's router is told: the host's setting under the customer's cap."""
    if meeting.limits is None:
        return meeting.last_n or DEFAULT_LAST_N
    return meeting.limits.last_n(meeting.last_n)


def _int(entry: dict[str, Any], key: str, default: int) -> int:
    value = entry.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _fps(entry: dict[str, Any]) -> float:
    """The frame rate a worker measured (0: unknown), bounded: it goes to a client as is."""
    value = entry.get("fps")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= MAX_FPS:
        return round(float(value), 2)
    return 0.0


def track_quality(track_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The `track_quality` event of one changed consumer of a SubscriberAllocation."""
    paused = entry.get("paused")
    return {
        "type": "track_quality",
        "track_id": track_id,
        "spatial": _int(entry, "spatial", -1),
        "temporal": _int(entry, "temporal", -1),
        "layers": _int(entry, "layers", 1),
        "height": _int(entry, "height", 0),
        "fps": _fps(entry),
        "paused": paused if isinstance(paused, str) and paused else None,
    }


def pause_change(participant: Participant, track_id: str, paused: str) -> dict[str, Any] | None:
    """`track_paused` / `track_resumed` for a track whose outcome is now `paused` ("" when
    forwarded), or None when what the subscriber was told still holds. Keeps what they
    were told in `participant.track_pauses`."""
    told = participant.track_pauses.get(track_id)
    if paused in SERVER_PAUSES:
        if paused == told:
            return None
        participant.track_pauses[track_id] = paused
        return {"type": "track_paused", "track_id": track_id, "reason": paused}
    if paused == "" and told is not None:
        del participant.track_pauses[track_id]
        return {"type": "track_resumed", "track_id": track_id}
    return None  # hidden (their own doing) or unchanged: nothing new to tell


class AdaptiveMedia(ConferenceListener):
    """Last-N per meeting; allocation and dynacast news from the workers to clients."""

    def __init__(self, *, registry: MeetingRegistry, supervisor: WorkerSupervisor, tasks: BackgroundTasks) -> None:
        self._registry = registry
        self._supervisor = supervisor
        self._tasks = tasks
        self._refusal_logged = False  # a worker without last-N: said once, not per meeting
        self.last_n_sent = 0  # RouterSetLastN the workers accepted (for tests and debugging)

    # ------------------------------------------------------------------ last-N

    def router_created(self, meeting: LiveMeeting) -> None:
        """The conference made the meeting's router (under its lock): last-N follows."""
        self._tasks.spawn(self._send_last_n(meeting), f"last-n-{meeting.meeting_id}")

    async def limits_changed(self, meeting: LiveMeeting) -> None:
        """The lifecycle's news: the customer's cap may have moved."""
        await self._send_last_n(meeting)

    def meeting_started(self, record: MeetingRecord, meeting: LiveMeeting) -> None:
        """Lifecycle listener: nothing to do (the router comes with the first join)."""

    async def meeting_ended(self, meeting: LiveMeeting, reason: str) -> None:
        """Lifecycle listener: the router went with the meeting."""

    async def setting_changed(self, record: MeetingRecord) -> None:
        """The host changed the meeting (REST): a live one runs with its new last-N now."""
        meeting = self._registry.get(record.id)
        if meeting is None or meeting.ended or meeting.last_n == record.last_n:
            return
        async with meeting.lock:  # not between a router's creation and its first last-N
            meeting.last_n = record.last_n
            await self._send_last_n(meeting)

    async def _send_last_n(self, meeting: LiveMeeting) -> None:
        placement = meeting.placement
        if placement is None:
            return  # no router yet: its creation sends it
        message = api.RouterSetLastN(router_id=placement.router_id, last_n=effective_last_n(meeting))
        workers = {placement.worker_index: placement.generation, **meeting.spread_workers}
        try:
            for index, generation in workers.items():  # every router of the meeting's allocations
                await self._supervisor.request(index, generation, message)
        except ChannelError as exc:
            # A worker without the allocator refuses it; a dead one has no router to limit.
            if not self._refusal_logged:
                self._refusal_logged = True
                log.warning("the media server did not take last-N (%s); meetings go on without it", exc)
            return
        self.last_n_sent += 1

    # ------------------------------------------------------------------ worker news

    def worker_notification(self, index: int, generation: int, entity_id: str, message: Message) -> None:
        if isinstance(message, api.SubscriberAllocation):
            self._allocation(index, generation, entity_id, message)
        elif isinstance(message, api.ProducerLayersWanted):
            self._layers_wanted(index, generation, entity_id, message)

    def _meetings_on(self, index: int, generation: int) -> list[LiveMeeting]:
        return self._registry.using_worker(index, generation)  # a spread meeting's other workers too

    def _allocation(self, index: int, generation: int, transport_id: str, message: api.SubscriberAllocation) -> None:
        subscriber = self._subscriber(index, generation, transport_id)
        if subscriber is None:
            return  # gone meanwhile
        for entry in message.tracks:
            consumer = subscriber.consumers.get(entry.get("consumer_id")) if isinstance(entry, dict) else None
            if consumer is None or not consumer.active:
                continue
            track_id = consumer.track.track_id
            paused = entry.get("paused")
            change = pause_change(subscriber, track_id, paused if isinstance(paused, str) else "")
            if change is not None:
                subscriber.send(change)
            subscriber.send(track_quality(track_id, entry))

    def _subscriber(self, index: int, generation: int, transport_id: str) -> Participant | None:
        for meeting in self._meetings_on(index, generation):
            for participant in meeting.participants.values():
                if participant.subscribe_transport_id == transport_id and not participant.closed:
                    return participant
        return None

    def _layers_wanted(self, index: int, generation: int, producer_id: str, message: api.ProducerLayersWanted) -> None:
        for meeting in self._meetings_on(index, generation):
            owner = meeting.owner_of_producer(producer_id)
            if owner is None:
                continue
            track = _track_of(owner, producer_id)
            rids = [r for r in message.active_rids if isinstance(r, str) and 0 < len(r) <= MAX_RID_CHARS]
            owner.send({"type": "publish_layers", "track_id": track.track_id, "active": rids[:MAX_RIDS]})
            return

    # ------------------------------------------------------------------ conference news

    def track_unpublished(self, meeting: LiveMeeting, track: PublishedTrack) -> None:
        """What subscribers were told of a track ends with it."""
        for participant in meeting.participants.values():
            participant.track_pauses.pop(track.track_id, None)


def _track_of(owner: Participant, producer_id: str) -> PublishedTrack:
    return next(t for t in owner.tracks.values() if t.producer_id == producer_id)
