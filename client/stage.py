"""A bot's part in a webinar (docs/signaling.md, "Webinars"): its own role, raised hands,
and the host's promotions and demotions.

The server tells each participant its role (`joined`'s `may_publish`, then `stage_role`
on every change) and the moderators the meeting's stage (`stage`: the setting, the
speakers, the hands in the order they went up). A bot that may not publish (an attendee)
joins receive-only: it makes no publish connection until it is promoted, and closes it
when it is demoted (client.bot.Bot does both on `stage_role`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .signaling import Message, SignalingClient


@dataclasses.dataclass
class StageState:
    """What the server last said: our role, and (a moderator) the meeting's stage."""

    role: str | None = None  # host | participant | speaker | attendee, once told
    may_publish: bool = True
    hand_raised: bool = False
    attendees_publish: bool | None = None  # the meeting's setting, as moderators hear it
    speakers: list[str] = dataclasses.field(default_factory=list)  # (moderator) promoted attendees
    hands: list[Message] = dataclasses.field(default_factory=list)  # (moderator) [{participant_id, name, raised_at}]

    def joined(self, msg: Message) -> None:
        self.may_publish = msg.get("may_publish") is not False
        self.hand_raised = False

    def on_role(self, msg: Message) -> bool:
        """A `stage_role`; True when whether we may publish changed."""
        before = self.may_publish
        self.role = str(msg.get("role")) if msg.get("role") else self.role
        self.may_publish = msg.get("may_publish") is not False
        self.hand_raised = msg.get("hand_raised") is True
        return before != self.may_publish

    def on_stage(self, msg: Message) -> None:
        if isinstance(msg.get("attendees_publish"), bool):
            self.attendees_publish = msg["attendees_publish"]
        speakers, hands = msg.get("speakers"), msg.get("hands")
        self.speakers = [s for s in speakers if isinstance(s, str)] if isinstance(speakers, list) else []
        self.hands = [h for h in hands if isinstance(h, dict)] if isinstance(hands, list) else []

    def hand_ids(self) -> list[str]:
        return [str(h.get("participant_id")) for h in self.hands]


async def send_hand(signaling: SignalingClient, raised: bool, participant_id: str | None = None,
                    timeout: float = 10.0) -> Message:  # fmt: skip
    """Raise or lower our hand (a moderator: lower `participant_id`'s); the server's `ok`."""
    msg: dict[str, Any] = {"type": "hand", "raised": raised}
    if participant_id is not None:
        msg["participant_id"] = participant_id
    return await signaling.request(msg, timeout=timeout, expect=("ok",))


async def send_stage_change(signaling: SignalingClient, promote: bool, participant_id: str,
                            timeout: float = 15.0) -> Message:  # fmt: skip
    """(A moderator) promote an attendee to speaker or demote a speaker; the server's `ok`."""
    msg = {"type": "promote" if promote else "demote", "participant_id": participant_id}
    return await signaling.request(msg, timeout=timeout, expect=("ok",))
