"""The live state of meetings held by control: who is connected, tracks, placement.

Pure bookkeeping, no I/O: `control.meeting.conference` drives the media side,
`control.http.signaling` the sockets, and the services of `control.meeting` the rules
(attendance, moderation, lifecycle, chat). What must last (meetings, participants and
their states, chat) is in the store (`control.store`); this is only what exists while
people are connected, keyed by the store's meeting id.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from control.clock import Timer
from control.meeting.limits import MeetingLimits
from control.meeting.roles import Stage
from control.store.base import LiveSession, MeetingRecord

if TYPE_CHECKING:  # the negotiation drives a Participant: it imports this module
    from control.meeting.negotiation import Negotiation

# Ids are what `secrets.token_urlsafe` produces; anything else is rejected before lookup.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MUTABLE_SOURCES = ("microphone", "camera")
# The kind of media of each source: a host's mute of one covers every source of its kind
# (a muted microphone cannot come back as screen-audio).
SOURCE_KINDS = {"microphone": "audio", "screen-audio": "audio", "camera": "video", "screen": "video"}


def same_kind(source: str, other: str) -> bool:
    return SOURCE_KINDS.get(source, source) == SOURCE_KINDS.get(other, other)


def new_id(nbytes: int = 9) -> str:
    """A random URL-safe id (9 bytes: 12 characters, 72 bits: unguessable)."""
    return secrets.token_urlsafe(nbytes)


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.match(value) is not None


class Peer(Protocol):
    """The connection of one participant, as seen by the meeting logic."""

    def send(self, message: dict[str, Any]) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


class PendingNews(Protocol):
    """What a meeting holds back to send in a batch (control.meeting.roster.Roster)."""

    def flush(self) -> None: ...


class PublishedTrack:
    """A published stream: a participant's (its track id is the producer id the worker
    gave it), or the server's own (`participant_id` None: a track every meeting has, such
    as the spoken notices, with a fixed track id and the producer its router made)."""

    __slots__ = ("track_id", "participant_id", "source", "kind", "mid", "producer_id")

    def __init__(
        self, track_id: str, participant_id: str | None, source: str, kind: str, mid: str, producer_id: str = ""
    ) -> None:
        self.track_id = track_id
        self.participant_id = participant_id
        self.source = source
        self.kind = kind
        self.mid = mid
        self.producer_id = producer_id or track_id

    def public(self) -> dict[str, str]:
        return {
            "track_id": self.track_id,
            "participant_id": self.participant_id,
            "source": self.source,
            "kind": self.kind,
        }


class Subscription:
    """One m-line of a subscriber's connection: a track forwarded to them."""

    __slots__ = ("consumer_id", "track", "active")

    def __init__(self, consumer_id: str, track: PublishedTrack) -> None:
        self.consumer_id = consumer_id
        self.track = track
        self.active = True


class Participant:
    """Someone connected to a meeting: in its waiting room (`admitted` False: no transports,
    receives nothing, nothing of theirs goes anywhere) or in it (`admitted` True)."""

    __slots__ = (
        "participant_id",
        "name",
        "role",
        "grants",
        "host_session_id",
        "admitted",
        "muted",
        "host_muted",
        "peer",
        "publish_transport_id",
        "subscribe_transport_id",
        "tracks",
        "consumers",
        "unsubscribed",
        "tiles",
        "track_pauses",
        "negotiation",
        "closed",
        "exit_reason",
        "subscribe_connected",
        "media_held",
        "may_transcribe",
        "directions",
    )

    def __init__(
        self,
        participant_id: str,
        name: str,
        peer: Peer,
        *,
        role: str = "participant",
        grants: dict[str, bool] | None = None,
        host_session_id: str | None = None,
    ) -> None:
        self.participant_id = participant_id
        self.name = name
        self.role = role  # host | participant
        self.grants = grants if grants is not None else {"publish": True, "subscribe": True, "chat": True}
        self.host_session_id = host_session_id  # host: the sign-in that started the meeting
        self.admitted = False
        self.muted: dict[str, bool] = {source: False for source in MUTABLE_SOURCES}
        self.host_muted: set[str] = set()  # sources the host muted: the participant cannot unmute
        self.peer = peer
        self.publish_transport_id: str | None = None
        self.subscribe_transport_id: str | None = None
        self.tracks: dict[str, PublishedTrack] = {}  # published by this participant
        self.consumers: dict[str, Subscription] = {}  # consumer id -> m-line forwarded to them
        self.unsubscribed: set[str] = set()  # track ids they turned off
        # track id -> (width, height, visible) of the tile they show it in (`tile_size`),
        # kept for the consumers made later (a resubscription, a worker restart).
        self.tiles: dict[str, tuple[int, int, bool]] = {}
        # track id -> why the media server stopped forwarding it to them ("bandwidth",
        # "last_n"), as they were told (`track_paused`); gone when told `track_resumed`.
        self.track_pauses: dict[str, str] = {}
        self.negotiation: Negotiation | None = None  # of their subscribe connection, once admitted
        self.closed = False
        # Why the server closed them: None (they left), "replaced", "reset", "removed",
        # "denied", "ended", "session_ended". Decides what leaving records.
        self.exit_reason: str | None = None
        self.subscribe_connected = False  # their subscribe transport is up (ICE + DTLS)
        # Consent pending (policy `require`): everything they publish stays paused on the
        # media server until they choose Continue, whatever they mute or unmute meanwhile.
        self.media_held = False
        # Whether they may start transcription themselves (the host, or anyone when the
        # customer allows participants to): told in `joined` so the client shows the button.
        self.may_transcribe = role == "host"
        # The WebRTC transports the conference makes them: an ingest (control.meeting.ingest)
        # publishes only (WHIP), or brings its own plain transport (none).
        self.directions: tuple[str, ...] = ("publish", "subscribe")

    @property
    def is_host(self) -> bool:
        return self.role == "host"

    def may(self, grant: str) -> bool:
        return bool(self.grants.get(grant))

    def host_muted_kind(self, source: str) -> bool:
        """Whether the host muted a source of `source`'s kind (audio, video)."""
        return any(same_kind(source, muted) for muted in self.host_muted)

    def paused(self, source: str) -> bool:
        """Whether their `source` must stay paused on the media server: muted, held, or of
        a kind the host muted."""
        return self.media_held or bool(self.muted.get(source)) or self.host_muted_kind(source)

    def public(self) -> dict[str, Any]:
        return {
            "participant_id": self.participant_id,
            "name": self.name,
            "role": self.role,
            "muted": dict(self.muted),
        }

    def forget_track(self, track_id: str) -> None:
        """A track is gone for good (its producer closed; ids are never reused): what they
        kept of it goes, so their state stays bounded by the meeting's live tracks."""
        self.unsubscribed.discard(track_id)
        self.tiles.pop(track_id, None)

    def forget_subscriptions(self, offered: set[str]) -> None:
        """Drop the closed subscriptions whose m-line the media server no longer offers
        (it recycled it for another track): the map stays as long as the offer."""
        for consumer_id in [c for c, s in self.consumers.items() if not s.active and c not in offered]:
            del self.consumers[consumer_id]

    def active_consumer_for(self, track_id: str) -> Subscription | None:
        for consumer in self.consumers.values():
            if consumer.active and consumer.track.track_id == track_id:
                return consumer
        return None

    def send(self, message: dict[str, Any]) -> None:
        if not self.closed:
            self.peer.send(message)


class Placement:
    """Where a meeting's router lives: a worker index and that worker process's generation."""

    __slots__ = ("worker_index", "generation", "router_id")

    def __init__(self, worker_index: int, generation: int, router_id: str) -> None:
        self.worker_index = worker_index
        self.generation = generation
        self.router_id = router_id


class LiveMeeting:
    """The live side of one stored meeting (keyed by the store's meeting id): who is
    connected, what they publish, where its router lives. Exists while someone is
    connected or the meeting is live; the store holds everything that must last."""

    def __init__(
        self, meeting_id: str, title: str = "", *, number: str = "", host_id: str = "", customer_id: str = ""
    ) -> None:
        self.meeting_id = meeting_id
        self.title = title
        self.number = number
        self.host_id = host_id
        self.customer_id = customer_id
        self.live_session_id: str | None = None  # None: not started (waiting for the host)
        self.created_at = time.time()
        self.participants: dict[str, Participant] = {}  # admitted: in the meeting, with media
        self.waiting: dict[str, Participant] = {}  # connected, not admitted (waiting room / for host)
        # The limits it runs under (control.meeting.limits), set by whoever makes it live or
        # lets the first person wait for its host.
        self.limits: MeetingLimits | None = None
        # Admitted during this live session: coming back (a dropped connection) needs no
        # second admission.
        self.admitted_ids: set[str] = set()
        # Someone was removed in this live session: whoever arrives new waits for the host
        # (a fresh browser has no cookie or old token to recognise them by).
        self.hold_newcomers = False
        self.placement: Placement | None = None
        # The other workers its subscribers are seated on (worker index -> generation),
        # each with a router of the meeting fed through a pipe (control.meeting.spread).
        self.spread_workers: dict[int, int] = {}
        # The server's own tracks on its router (by track id), made with the router:
        # forwarded to everyone like participants' tracks, announced to nobody.
        self.server_tracks: dict[str, PublishedTrack] = {}
        # Who speaks (a participant id), as the media server's detector last said; None
        # before anyone spoke and after the speaker left.
        self.active_speaker: str | None = None
        # Participant changes waiting for their batch (control.meeting.roster.Roster, set
        # by the conference at the first join); sent before any other broadcast.
        self.roster: PendingNews | None = None
        # Last-N as the host set it (the store's `last_n`; None: the default), applied
        # under the limits' cap (control.meeting.adaptive).
        self.last_n: int | None = None
        # Who may publish (a webinar's attendees and speakers) and the raised hands
        # (control.meeting.roles); the setting is the store's, taken when it goes live.
        self.stage = Stage()
        self.ended = False
        self.end_timer: Timer | None = None  # the customer's duration limit
        self.ends_at: float | None = None  # when that limit ends it (unix time): TURN credentials expire then
        # Serializes media operations (join/publish/subscribe/leave) of this meeting, so
        # consumer fan-out never misses a participant or a track that arrives meanwhile.
        self.lock = asyncio.Lock()
        # Chat: store append and broadcast in one order for everyone (seq order).
        self.chat_lock = asyncio.Lock()

    def public(self) -> dict[str, Any]:
        return {"meeting_id": self.meeting_id, "title": self.title, "participants": len(self.participants)}

    def uses_worker(self, worker_index: int, generation: int) -> bool:
        placement = self.placement
        if placement is None:
            return False
        home = (placement.worker_index, placement.generation) == (worker_index, generation)
        return home or self.spread_workers.get(worker_index) == generation

    def others(self, participant: Participant) -> list[Participant]:
        return [p for p in self.participants.values() if p is not participant]

    def connected(self) -> list[Participant]:
        """Everyone with a socket: admitted and waiting."""
        return [*self.participants.values(), *self.waiting.values()]

    def find_connected(self, participant_id: str) -> Participant | None:
        return self.participants.get(participant_id) or self.waiting.get(participant_id)

    def moderators(self) -> list[Participant]:
        return [p for p in self.participants.values() if p.may("moderate")]

    def tracks(self) -> Iterator[PublishedTrack]:
        """The participants' tracks (what `joined` and `track_published` announce)."""
        for participant in self.participants.values():
            yield from participant.tracks.values()

    def forwarded_tracks(self) -> Iterator[PublishedTrack]:
        """Everything a subscriber receives: the server's tracks and the participants'."""
        yield from self.server_tracks.values()
        yield from self.tracks()

    def owner_of_producer(self, producer_id: str) -> Participant | None:
        """The admitted participant who publishes producer `producer_id` (not the server)."""
        for participant in self.participants.values():
            for track in participant.tracks.values():
                if track.producer_id == producer_id:
                    return participant
        return None

    def find_track(self, track_id: str) -> PublishedTrack | None:
        for track in self.tracks():
            if track.track_id == track_id:
                return track
        return None

    def add_participant(self, participant: Participant) -> None:
        if self.waiting.get(participant.participant_id) is participant:
            del self.waiting[participant.participant_id]
        participant.admitted = True
        self.participants[participant.participant_id] = participant

    def remove_participant(self, participant: Participant) -> None:
        if self.participants.get(participant.participant_id) is participant:
            del self.participants[participant.participant_id]
        if self.waiting.get(participant.participant_id) is participant:
            del self.waiting[participant.participant_id]

    def broadcast(self, message: dict[str, Any], exclude: Participant | None = None) -> None:
        """To every admitted participant; the waiting room hears nothing. Pending
        participant changes go first: nobody hears of a person's doing before of them."""
        if self.roster is not None:
            self.roster.flush()
        for participant in list(self.participants.values()):
            if participant is not exclude:
                participant.send(message)


class MeetingRegistry:
    """The live side of meetings in this control process, by store meeting id."""

    def __init__(self) -> None:
        self._meetings: dict[str, LiveMeeting] = {}

    def get(self, meeting_id: str) -> LiveMeeting | None:
        if not is_valid_id(meeting_id):
            return None
        return self._meetings.get(meeting_id)

    def live(self, record: MeetingRecord, live_session: LiveSession | None) -> LiveMeeting:
        """The live side of `record`, made on first use (or anew after it ended)."""
        meeting = self._meetings.get(record.id)
        if meeting is None or meeting.ended:
            meeting = LiveMeeting(
                record.id,
                record.title,
                number=record.meeting_number,
                host_id=record.host_id,
                customer_id=record.customer_id,
            )
            meeting.stage.attendees_publish = record.attendees_publish  # later changes: control.meeting.webinar
            self._meetings[record.id] = meeting
        if live_session is not None:
            meeting.live_session_id = live_session.id
        meeting.title = record.title
        meeting.last_n = record.last_n
        return meeting

    def of_customer(self, customer_id: str) -> list[LiveMeeting]:
        return [m for m in self._meetings.values() if m.customer_id == customer_id]

    def of_host(self, host_id: str) -> list[LiveMeeting]:
        return [m for m in self._meetings.values() if m.host_id == host_id]

    def discard(self, meeting: LiveMeeting) -> None:
        """Forget `meeting` if it is still the one registered under its id."""
        if self._meetings.get(meeting.meeting_id) is meeting:
            del self._meetings[meeting.meeting_id]

    def __iter__(self) -> Iterator[LiveMeeting]:
        return iter(list(self._meetings.values()))

    def __len__(self) -> int:
        return len(self._meetings)

    def on_worker(self, worker_index: int) -> list[LiveMeeting]:
        return [m for m in self._meetings.values() if m.placement and m.placement.worker_index == worker_index]

    def using_worker(self, worker_index: int, generation: int) -> list[LiveMeeting]:
        """The meetings with a router on that worker process: their home, or a worker
        they spread to (whose news, e.g. a subscriber's allocation, concerns them)."""
        return [m for m in self._meetings.values() if m.uses_worker(worker_index, generation)]

    def participant_count(self) -> int:
        return sum(len(m.participants) for m in self._meetings.values())

    def track_count(self) -> int:
        return sum(1 for m in self._meetings.values() for _ in m.tracks())
