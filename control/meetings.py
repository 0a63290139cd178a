"""Meeting state held by control: meetings, participants, published tracks, chat.

Pure bookkeeping, no I/O: `control.conference` drives the media side and
`control.signaling` the sockets. The registry is in memory for now; a persistent store
replaces `MeetingRegistry` later, so everything else reaches meetings through it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import deque
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
    __slots__ = (
        "participant_id",
        "name",
        "muted",
        "peer",
        "publish_transport_id",
        "subscribe_transport_id",
        "tracks",
        "consumers",
        "unsubscribed",
        "negotiation",
        "closed",
    )

    def __init__(self, participant_id: str, name: str, peer: Peer) -> None:
        self.participant_id = participant_id
        self.name = name
        self.muted: dict[str, bool] = {source: False for source in MUTABLE_SOURCES}
        self.peer = peer
        self.publish_transport_id: str | None = None
        self.subscribe_transport_id: str | None = None
        self.tracks: dict[str, Track] = {}  # published by this participant
        self.consumers: dict[str, Consumer] = {}  # consumer id -> m-line forwarded to them
        self.unsubscribed: set[str] = set()  # track ids they turned off
        self.negotiation: Any = None  # control.conference.Negotiation
        self.closed = False

    def public(self) -> dict[str, Any]:
        return {"participant_id": self.participant_id, "name": self.name, "muted": dict(self.muted)}

    def active_consumer_for(self, track_id: str) -> Consumer | None:
        for consumer in self.consumers.values():
            if consumer.active and consumer.track.track_id == track_id:
                return consumer
        return None

    def send(self, message: dict[str, Any]) -> None:
        if not self.closed:
            self.peer.send(message)


class ChatMessage:
    __slots__ = ("seq", "participant_id", "name", "text", "ts")

    def __init__(self, seq: int, participant_id: str, name: str, text: str, ts: int) -> None:
        self.seq = seq
        self.participant_id = participant_id
        self.name = name
        self.text = text
        self.ts = ts

    def public(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "participant_id": self.participant_id,
            "name": self.name,
            "text": self.text,
            "ts": self.ts,
        }


class Placement:
    """Where a meeting's router lives: a worker index and that worker process's generation."""

    __slots__ = ("worker_index", "generation", "router_id")

    def __init__(self, worker_index: int, generation: int, router_id: str) -> None:
        self.worker_index = worker_index
        self.generation = generation
        self.router_id = router_id


class Meeting:
    def __init__(self, meeting_id: str, title: str, chat_history: int) -> None:
        self.meeting_id = meeting_id
        self.title = title
        self.created_at = time.time()
        self.participants: dict[str, Participant] = {}
        self.chat: deque[ChatMessage] = deque(maxlen=max(chat_history, 0))
        self.next_seq = 1
        self.placement: Placement | None = None
        # Ids that were in this meeting once: only those may be reclaimed on rejoin.
        self.known_participant_ids: set[str] = set()
        # Serializes media operations (join/publish/subscribe/leave) of this meeting, so
        # consumer fan-out never misses a participant or a track that arrives meanwhile.
        self.lock = asyncio.Lock()

    def public(self) -> dict[str, Any]:
        return {"meeting_id": self.meeting_id, "title": self.title, "participants": len(self.participants)}

    def others(self, participant: Participant) -> list[Participant]:
        return [p for p in self.participants.values() if p is not participant]

    def tracks(self) -> Iterator[Track]:
        for participant in self.participants.values():
            yield from participant.tracks.values()

    def find_track(self, track_id: str) -> Track | None:
        for track in self.tracks():
            if track.track_id == track_id:
                return track
        return None

    def add_participant(self, participant: Participant) -> None:
        self.participants[participant.participant_id] = participant
        self.known_participant_ids.add(participant.participant_id)

    def remove_participant(self, participant: Participant) -> None:
        if self.participants.get(participant.participant_id) is participant:
            del self.participants[participant.participant_id]

    def add_chat(self, participant: Participant, text: str) -> ChatMessage:
        now_ms = int(time.time() * 1000)
        message = ChatMessage(self.next_seq, participant.participant_id, participant.name, text, now_ms)
        self.next_seq += 1
        self.chat.append(message)
        return message

    def broadcast(self, message: dict[str, Any], exclude: Participant | None = None) -> None:
        for participant in list(self.participants.values()):
            if participant is not exclude:
                participant.send(message)


class MeetingRegistry:
    """All meetings of this control process (in memory; meetings stay until deleted)."""

    def __init__(self, chat_history: int) -> None:
        self._meetings: dict[str, Meeting] = {}
        self._chat_history = chat_history

    def create(self, title: str) -> Meeting:
        meeting_id = new_id()
        while meeting_id in self._meetings:
            meeting_id = new_id()
        meeting = Meeting(meeting_id, title, self._chat_history)
        self._meetings[meeting_id] = meeting
        return meeting

    def get(self, meeting_id: str) -> Meeting | None:
        if not is_valid_id(meeting_id):
            return None
        return self._meetings.get(meeting_id)

    def delete(self, meeting_id: str) -> Meeting | None:
        return self._meetings.pop(meeting_id, None)

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
