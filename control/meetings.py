"""The live state of meetings held by control: who is connected, tracks, placement.

Pure bookkeeping, no I/O: `control.conference` drives the media side, `control.signaling`
the sockets and `control.live` the rules (waiting room, moderation, ending). What must
last (meetings, participants and their states, chat) is in the store (`control.store`);
this is only what exists while people are connected, keyed by the store's meeting id.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any, Protocol

# Ids are what `secrets.token_urlsafe` produces; anything else is rejected before lookup.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MUTABLE_SOURCES = ("microphone", "camera")


def new_id(nbytes: int = 9) -> str:
    """A random URL-safe id (9 bytes: 12 characters, 72 bits: unguessable)."""
    return secrets.token_urlsafe(nbytes)


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.match(value) is not None


class Peer(Protocol):
    """The connection of one participant, as seen by the meeting logic."""

    def send(self, message: dict[str, Any]) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


class Track:
    """A published stream. The track id is the producer id the worker gave it."""

    __slots__ = ("track_id", "participant_id", "source", "kind", "mid")

    def __init__(self, track_id: str, participant_id: str, source: str, kind: str, mid: str) -> None:
        self.track_id = track_id
        self.participant_id = participant_id
        self.source = source
        self.kind = kind
        self.mid = mid

    @property
    def producer_id(self) -> str:
        return self.track_id

    def public(self) -> dict[str, str]:
        return {
            "track_id": self.track_id,
            "participant_id": self.participant_id,
            "source": self.source,
            "kind": self.kind,
        }


class Consumer:
    """One m-line of a subscriber's connection: a track forwarded to them."""

    __slots__ = ("consumer_id", "track", "active")

    def __init__(self, consumer_id: str, track: Track) -> None:
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
        "negotiation",
        "closed",
        "exit_reason",
        "announcer_consumer_id",
        "subscribe_connected",
        "media_held",
        "may_transcribe",
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
        self.tracks: dict[str, Track] = {}  # published by this participant
        self.consumers: dict[str, Consumer] = {}  # consumer id -> m-line forwarded to them
        self.unsubscribed: set[str] = set()  # track ids they turned off
        self.negotiation: Any = None  # control.conference.Negotiation
        self.closed = False
        # Why the server closed them: None (they left), "replaced", "reset", "removed",
        # "denied", "ended", "session_ended". Decides what leaving records.
        self.exit_reason: str | None = None
        # The m-line of the meeting's announcer (server-originated audio: the recording
        # notice), on their subscribe transport; None while there is none.
        self.announcer_consumer_id: str | None = None
        self.subscribe_connected = False  # their subscribe transport is up (ICE + DTLS)
        # Consent pending (policy `require`): everything they publish stays paused on the
        # media server until they choose Continue, whatever they mute or unmute meanwhile.
        self.media_held = False
        # Whether they may start transcription themselves (the host, or anyone when the
        # customer allows participants to): told in `joined` so the client shows the button.
        self.may_transcribe = role == "host"

    @property
    def is_host(self) -> bool:
        return self.role == "host"

    def may(self, grant: str) -> bool:
        return bool(self.grants.get(grant))

    def paused(self, source: str) -> bool:
        """Whether their `source` must stay paused on the media server: muted, or held."""
        return self.media_held or bool(self.muted.get(source))

    def public(self) -> dict[str, Any]:
        return {
            "participant_id": self.participant_id,
            "name": self.name,
            "role": self.role,
            "muted": dict(self.muted),
        }

    def active_consumer_for(self, track_id: str) -> Consumer | None:
        for consumer in self.consumers.values():
            if consumer.active and consumer.track.track_id == track_id:
                return consumer
        return None

    def send(self, message: dict[str, Any]) -> None:
        if not self.closed:
            self.peer.send(message)


class Placement:
    """Where a meeting's router lives: a worker index and that worker process's generation;
    and the id of the router's announcer (the producer notices are played on)."""

    __slots__ = ("worker_index", "generation", "router_id", "announcer_producer_id")

    def __init__(self, worker_index: int, generation: int, router_id: str, announcer_producer_id: str) -> None:
        self.worker_index = worker_index
        self.generation = generation
        self.router_id = router_id
        self.announcer_producer_id = announcer_producer_id


class Meeting:
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
        self.max_participants: int | None = None  # the customer's limit (None: the server's)
        # Admitted during this live session: coming back (a dropped connection) needs no
        # second admission.
        self.admitted_ids: set[str] = set()
        self.placement: Placement | None = None
        self.ended = False
        self.end_timer: Any = None  # asyncio.TimerHandle: the customer's duration limit
        # Active recorder jobs by kind ("recording", "transcription"): control.recording.
        self.recordings: dict[str, Any] = {}
        # Serializes media operations (join/publish/subscribe/leave) of this meeting, so
        # consumer fan-out never misses a participant or a track that arrives meanwhile.
        self.lock = asyncio.Lock()
        # Chat: store append and broadcast in one order for everyone (seq order).
        self.chat_lock = asyncio.Lock()

    def public(self) -> dict[str, Any]:
        return {"meeting_id": self.meeting_id, "title": self.title, "participants": len(self.participants)}

    def others(self, participant: Participant) -> list[Participant]:
        return [p for p in self.participants.values() if p is not participant]

    def connected(self) -> list[Participant]:
        """Everyone with a socket: admitted and waiting."""
        return [*self.participants.values(), *self.waiting.values()]

    def find_connected(self, participant_id: str) -> Participant | None:
        return self.participants.get(participant_id) or self.waiting.get(participant_id)

    def moderators(self) -> list[Participant]:
        return [p for p in self.participants.values() if p.may("moderate")]

    def tracks(self) -> Iterator[Track]:
        for participant in self.participants.values():
            yield from participant.tracks.values()

    def find_track(self, track_id: str) -> Track | None:
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
        """To every admitted participant; the waiting room hears nothing."""
        for participant in list(self.participants.values()):
            if participant is not exclude:
                participant.send(message)


class MeetingRegistry:
    """The live side of meetings in this control process, by store meeting id."""

    def __init__(self, chat_history: int = 100) -> None:
        self._meetings: dict[str, Meeting] = {}
        self.chat_history = chat_history
        # Devices (the join cookie) removed from a meeting: refused for as long as this
        # process runs (the store marks the removed participants themselves for good).
        self.removed_devices: dict[str, set[str]] = {}
        # Participants holding a join token who have not connected (yet): the timer that
        # marks them gone if they never do, so they stop holding a place in the meeting.
        self.pending: dict[str, Any] = {}
        # participant id -> (meeting id, the device (join cookie) it joined from), to refuse
        # that device once the participant is removed; forgotten when the meeting ends.
        self.devices: dict[str, tuple[str, str]] = {}

    def get(self, meeting_id: str) -> Meeting | None:
        if not is_valid_id(meeting_id):
            return None
        return self._meetings.get(meeting_id)

    def get_or_create(self, meeting_id: str, **details: Any) -> Meeting:
        meeting = self._meetings.get(meeting_id)
        if meeting is None or meeting.ended:
            meeting = Meeting(meeting_id, **details)
            self._meetings[meeting_id] = meeting
        return meeting

    def delete(self, meeting_id: str) -> Meeting | None:
        return self._meetings.pop(meeting_id, None)

    def discard(self, meeting: Meeting) -> None:
        """Forget `meeting` if it is still the one registered under its id."""
        if self._meetings.get(meeting.meeting_id) is meeting:
            del self._meetings[meeting.meeting_id]

    def __iter__(self) -> Iterator[Meeting]:
        return iter(list(self._meetings.values()))

    def __len__(self) -> int:
        return len(self._meetings)

    def on_worker(self, worker_index: int) -> list[Meeting]:
        return [m for m in self._meetings.values() if m.placement and m.placement.worker_index == worker_index]

    def participant_count(self) -> int:
        return sum(len(m.participants) for m in self._meetings.values())

    def track_count(self) -> int:
        return sum(1 for m in self._meetings.values() for _ in m.tracks())
