"""Who is let into a meeting, who waits, who is refused, and why: one pure decision.

It is asked twice for each person: when they ask to join over REST (credentials right, no
participant yet: `previous` None), and when their signaling socket presents the join token
(`previous` is the state the store has for them). The answer is the same rule both times:

1. The meeting's account is not available (customer or host suspended, meetings
   disabled) → refused `meeting_unavailable`.
2. The host removed this person (their device, their old token, their row) → refused
   `removed`.
3. The meeting is not live → waiting `waiting_for_host`.
4. The host, anyone admitted before in this live session (connected and let in, or let
   in by the host from the waiting room), anyone who proves with a reconnect credential
   that they were (`resumed`: the server restarted, or the node that held the meeting
   died, and forgot who was in; the store still says admitted) → admitted.
5. Waiting in this live session already → waiting `waiting_room` (the host decides).
6. The meeting is locked and this is a new arrival, someone who left, or someone whose
   token was admitted by the REST join but who never came in → refused `meeting_locked`
   (the lock is checked again when the socket connects). People waiting since before
   the start are not new arrivals.
7. Admitted by the REST join → admitted, unless someone was removed in this live session
   since (a removed person may come back from a fresh browser, or with a token fetched
   before: newcomers wait for the host).
8. The waiting room is on, or someone was removed in this live session → waiting
   `waiting_room`; otherwise → admitted.

Room in the meeting is a separate question (`has_room`), asked where the count is exact:
the store's atomic insert for REST joins, the conference's lock for sockets.
"""

from __future__ import annotations

from dataclasses import dataclass

ADMITTED, WAITING, REFUSED = "admitted", "waiting", "refused"

# Refusals as the client sees them (code, message).
REFUSALS = {
    "meeting_unavailable": "this meeting is not available",
    "removed": "the host removed you from this meeting",
    "meeting_locked": "the host locked this meeting",
    "meeting_full": "this meeting is full",
}


def full_meeting(capacity: int) -> str:
    """Why someone cannot join a full meeting, with how many it holds."""
    return f"{REFUSALS['meeting_full']}: it holds at most {capacity} participants"


@dataclass(frozen=True, slots=True)
class Situation:
    live: bool  # the host has started it (a live session exists)
    locked: bool
    waiting_room: bool
    account_available: bool = True
    removed: bool = False
    is_host: bool = False
    previous: str | None = None  # the person's stored state; None for a new arrival
    same_session: bool = False  # their stored live session is the current one
    admitted_before: bool = False  # admitted earlier in this live session (a reconnect)
    hold_newcomers: bool = False  # someone was removed in this live session
    resumed: bool = False  # their token came from a reconnect credential of this live session


@dataclass(frozen=True, slots=True)
class Admission:
    outcome: str  # admitted | waiting | refused
    reason: str = ""  # waiting: waiting_for_host | waiting_room; refused: a REFUSALS code

    @property
    def message(self) -> str:
        return REFUSALS.get(self.reason, "")


def decide(situation: Situation) -> Admission:
    """The rule of the module's doc, in its order."""
    s = situation
    if not s.account_available:
        return Admission(REFUSED, "meeting_unavailable")
    if s.removed or s.previous in ("removed", "denied"):
        return Admission(REFUSED, "removed")
    if not s.live:
        return Admission(WAITING, "waiting_for_host")
    if s.is_host or s.admitted_before or (s.resumed and s.same_session and s.previous == "admitted"):
        return Admission(ADMITTED)
    if s.previous == "waiting" and s.same_session:
        return Admission(WAITING, "waiting_room")
    if s.locked and s.previous in (None, "left", "admitted"):
        return Admission(REFUSED, "meeting_locked")
    if s.previous == "admitted" and not s.hold_newcomers:
        return Admission(ADMITTED)  # the REST join let them in (and the host has removed nobody since)
    if s.waiting_room or s.hold_newcomers:
        return Admission(WAITING, "waiting_room")
    return Admission(ADMITTED)


def has_room(present: int, capacity: int) -> bool:
    return present < capacity
