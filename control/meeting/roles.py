"""Who may publish in a meeting, and whose hand is raised (issue 16 item 3): pure rules.

A meeting with `attendees_publish` on (every meeting unless its host says otherwise) lets
everyone admitted publish. With it off (a webinar), a participant who receives media and
does not moderate is an *attendee*: they join receive-only (no publish transport, no
camera or microphone asked for) until a moderator promotes them to *speaker*; a demoted
speaker is an attendee again and their tracks stop for everyone. Moderators (the host)
always publish. A participant that receives nothing (an ingest, control.meeting.ingest)
is a stream the host brought in, never an attendee.

Anyone admitted may raise a hand (a webinar's way of asking to speak; in an ordinary
meeting a polite one); the moderators see the hands in the order they went up. A
promotion lowers the hand; leaving lowers it too.

`Stage` holds one live meeting's part of this and decides; `control.meeting.webinar`
performs what it decides (transports, messages). No I/O, no clock of its own: the time a
hand went up is given.
"""

from __future__ import annotations

from typing import Protocol

from control.errors import SignalingError


class Person(Protocol):
    """What the rules read of a participant (control.meeting.model.Participant)."""

    participant_id: str

    def may(self, grant: str) -> bool: ...


class RoleError(SignalingError):
    """A role change that is not allowed (the code says why; REST answers 409 or 403)."""


def refuse_publish() -> SignalingError:
    """An attendee's publish attempt, as they hear of it."""
    return SignalingError(
        "not_a_speaker",
        "attendees of this webinar receive only; raise your hand and the host may make you a speaker",
    )


class Stage:
    """One live meeting's roles: its setting, who was promoted, whose hand is up (in the
    order they went up). Promotions last for the live session (a reconnect keeps them);
    hands go with their owner's connection."""

    __slots__ = ("attendees_publish", "speakers", "hands")

    def __init__(self, attendees_publish: bool = True) -> None:
        self.attendees_publish = attendees_publish
        self.speakers: set[str] = set()  # attendees promoted to speak (participant ids)
        self.hands: dict[str, float] = {}  # participant id -> when it went up (unix time), oldest first

    @staticmethod
    def moderates(person: Person) -> bool:
        return person.may("moderate")

    def is_attendee(self, person: Person) -> bool:
        """Receive-only now: a webinar's participant who receives media, does not moderate
        and was not promoted."""
        if self.attendees_publish or self.moderates(person) or not person.may("subscribe"):
            return False
        return person.participant_id not in self.speakers

    def may_publish(self, person: Person) -> bool:
        return person.may("publish") and not self.is_attendee(person)

    def role_of(self, person: Person) -> str:
        """host (moderates), speaker (promoted in a webinar), attendee, or participant (an
        ordinary meeting's)."""
        if self.moderates(person):
            return "host"
        if self.attendees_publish:
            return "participant"
        return "attendee" if self.is_attendee(person) else "speaker"

    # ------------------------------------------------------------------ promote / demote

    def promote(self, actor: Person | None, target: Person) -> bool:
        """A moderator (`actor`; None: the host's REST call, already authorized) lets
        `target` publish. True when that changed something; RoleError when not allowed."""
        self._check_moderator(actor)
        if self.attendees_publish:
            raise RoleError("not_a_webinar", "everyone may publish in this meeting already (attendees_publish is on)")
        if not self.is_attendee(target):
            return False
        self.speakers.add(target.participant_id)
        self.hands.pop(target.participant_id, None)
        return True

    def demote(self, actor: Person | None, target: Person) -> bool:
        """A moderator makes speaker `target` an attendee again. True when that changed
        something; RoleError when not allowed."""
        self._check_moderator(actor)
        if self.attendees_publish:
            raise RoleError("not_a_webinar", "everyone may publish in this meeting (attendees_publish is on)")
        if self.moderates(target):
            raise RoleError("cannot_demote_host", "the host always may publish")
        if target.participant_id not in self.speakers:
            return False
        self.speakers.discard(target.participant_id)
        return True

    @classmethod
    def _check_moderator(cls, actor: Person | None) -> None:
        if actor is not None and not cls.moderates(actor):
            raise RoleError("forbidden", "only the host can promote or demote")

    # ------------------------------------------------------------------ hands

    def raise_hand(self, person: Person, now: float) -> bool:
        """True when the hand went up (it was down)."""
        if person.participant_id in self.hands:
            return False
        self.hands[person.participant_id] = now
        return True

    def lower_hand(self, actor: Person, participant_id: str) -> bool:
        """`actor` lowers their own hand, or a moderator lowers anyone's. True when a hand
        went down."""
        if participant_id != actor.participant_id and not self.moderates(actor):
            raise RoleError("forbidden", "only the host can lower someone else's hand")
        return self.hands.pop(participant_id, None) is not None

    def left(self, participant_id: str) -> bool:
        """Their connection is gone: the hand goes down (a promotion stays for a reconnect).
        True when a hand went down."""
        return self.hands.pop(participant_id, None) is not None

    # ------------------------------------------------------------------ the setting

    def set_attendees_publish(self, value: bool, publishing: list[str]) -> None:
        """The host changed the setting live. Turned off: those `publishing` (participant
        ids that have a publish transport now) stay speakers; newcomers are attendees.
        Turned on: everyone may publish (the caller opens the attendees' transports)."""
        if not value and self.attendees_publish:
            self.speakers.update(publishing)
        self.attendees_publish = value
