"""Chat of a live meeting: kept in the store (which numbers each message), sent to everyone
admitted in that order, the recent history given to each joiner."""

from __future__ import annotations

from typing import Any

from control.clock import Clock
from control.errors import SignalingError
from control.meeting.model import LiveMeeting, Participant
from control.store.base import ChatMessage, Store


def chat_json(message: ChatMessage) -> dict[str, Any]:
    return {
        "seq": message.seq,
        "participant_id": message.participant_id,
        "name": message.name,
        "text": message.text,
        "ts": message.ts,
    }


class Chat:
    def __init__(self, store: Store, clock: Clock, history_length: int, keep: int | None = None) -> None:
        self._store = store
        self._clock = clock
        self.history_length = history_length  # messages a joiner gets (signaling.chat_history)
        self.keep = keep  # messages stored per meeting, the oldest dropped (retention.chat_messages_per_meeting)

    async def history(self, meeting_id: str) -> list[dict[str, Any]]:
        """The latest messages, oldest first."""
        if self.history_length <= 0:
            return []
        return [chat_json(m) for m in await self._store.list_chat(meeting_id, limit=self.history_length)]

    async def post(self, meeting: LiveMeeting, participant: Participant, text: str) -> None:
        """Store the message and send it to everyone admitted, in seq order: appends and
        broadcasts of one meeting are serialized."""
        if not participant.may("chat"):
            raise SignalingError("forbidden", "you may not chat in this meeting")
        async with meeting.chat_lock:
            stored = await self._store.append_chat(
                meeting.meeting_id, participant.participant_id, participant.name, text, int(self._clock.time() * 1000),
                keep=self.keep,
            )
            meeting.broadcast({"type": "chat", "message": chat_json(stored)})
