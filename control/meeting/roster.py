"""Who is in a meeting, told in batches (issue 16, item 1): joins, leaves and updates of
participants are coalesced over a short window and sent as one `participants_changed`
delta per recipient, instead of one message per change to everyone.

Why: a join announced at once to everyone costs n messages, so n joins cost n² messages
(each serialized and written separately); a meeting of 1,000 took a minute to fill. Here
a join costs O(1) (an entry in the window's log) and each window costs one serialized
message sent to everyone, so what a participant receives for n joins stays O(n) in
entries and in bytes, and the number of messages it receives is bounded by the windows.

Three parts, the first two pure (no I/O, fed a time):

- `CoalescingWindow`: when the pending changes go out (the window after the first change,
  or at once when the batch is full).
- `RosterLog` and `coalesce`: the window's changes in order, and their net effect for a
  recipient (a participant who joined and left within one window is never mentioned; the
  last state of an updated one wins). A participant who joined during the window gets
  only the changes after its `joined` snapshot (`since`), never itself.
- `Roster`: one per live meeting; records changes, arms the window's timer on the
  injected clock and sends (`flush`). The meeting flushes it before any other broadcast
  (`control.meeting.model.LiveMeeting.broadcast`), so a change is never overtaken by a
  later message about the same person (their track, their chat, their speaking).

A joiner's list of the others is sent once: the first `PAGE_SIZE` in `joined`, the rest
as `participants_changed` pages right after it (`pages`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from control.clock import Clock, Timer
from control.meeting.model import LiveMeeting, Participant

log = logging.getLogger(__name__)

# How long changes are gathered before they go out: short enough that people see a
# join "at once", long enough that a storm of joins shares one message. In a larger
# meeting the window grows with it (`window_for`): every window costs one send to each
# participant, so a window proportional to the meeting keeps those sends per second
# bounded (about SMALL_MEETING / WINDOW_S), and a storm's sends per join constant.
WINDOW_S = 0.1
SMALL_MEETING = 100
MAX_WINDOW_S = 1.0
# A window holding this many changes goes out at once: bounds a message's size.
MAX_BATCH = 500
# Participants listed in `joined` itself; the rest follow in pages of this many.
PAGE_SIZE = 200

JOINED, UPDATED, LEFT = "joined", "updated", "left"


class EncodedMessage(dict):  # type: ignore[type-arg]
    """A message serialized once for many recipients: a socket sends `text` as is
    (control.http.signaling.SocketPeer) instead of encoding the dict again for each."""

    __slots__ = ("text",)

    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(message)
        self.text = json.dumps(message, separators=(",", ":"))


def window_for(participants: int) -> float:
    """The window of a meeting of `participants`: WINDOW_S up to SMALL_MEETING, then
    growing in proportion, at most MAX_WINDOW_S."""
    return min(MAX_WINDOW_S, WINDOW_S * max(1.0, participants / SMALL_MEETING))


class CoalescingWindow:
    """When pending changes are sent: a window after the first change (`window_s`, or the
    length given with that change), or at once when `max_changes` are pending. Pure: the
    caller passes the time and arms the timer."""

    __slots__ = ("window_s", "max_changes", "due", "pending")

    def __init__(self, window_s: float = WINDOW_S, max_changes: int = MAX_BATCH) -> None:
        self.window_s = window_s
        self.max_changes = max_changes
        self.due: float | None = None  # when the open window closes (None: no window open)
        self.pending = 0

    def changed(self, now: float, window_s: float | None = None) -> float | None:
        """One more change at `now`. Returns the delay after which to flush when a timer
        must be armed (a new window opened; 0.0: flush now, the batch is full), else None."""
        self.pending += 1
        if self.pending >= self.max_changes:
            return 0.0
        if self.due is None:
            length = self.window_s if window_s is None else window_s
            self.due = now + length
            return length
        return None

    def is_due(self, now: float) -> bool:
        return self.pending > 0 and (self.pending >= self.max_changes or (self.due is not None and now >= self.due))

    def flushed(self) -> None:
        self.due = None
        self.pending = 0


class RosterLog:
    """The changes of one window, in order, each with a sequence number that keeps
    growing across windows (a joiner's snapshot is taken at one of them)."""

    __slots__ = ("entries", "seq")

    def __init__(self) -> None:
        self.entries: list[tuple[int, str, str, dict[str, Any] | None]] = []  # (seq, kind, id, public)
        self.seq = 0

    def add(self, kind: str, participant_id: str, public: dict[str, Any] | None = None) -> int:
        self.seq += 1
        self.entries.append((self.seq, kind, participant_id, public))
        return self.seq

    def take(self) -> list[tuple[int, str, str, dict[str, Any] | None]]:
        entries, self.entries = self.entries, []
        return entries

    def __len__(self) -> int:
        return len(self.entries)


def coalesce(entries: Iterable[tuple[int, str, str, dict[str, Any] | None]], since: int = 0) -> dict[str, Any]:
    """The net effect of `entries` after sequence `since`, as the fields of one
    `participants_changed` ({"joined": [...], "updated": [...], "left": [...]}, empty
    lists left out). Per participant: unknown before (their first change is a join) and
    gone at the end: nothing; known and gone: left; present at the end: their last state,
    as joined when they (re)joined in the window, else as updated."""
    first: dict[str, str] = {}
    last: dict[str, tuple[str, dict[str, Any] | None]] = {}
    rejoined: set[str] = set()
    for seq, kind, participant_id, public in entries:
        if seq <= since:
            continue
        first.setdefault(participant_id, kind)
        if kind == JOINED:
            rejoined.add(participant_id)
        last[participant_id] = (kind, public)
    joined: list[dict[str, Any]] = []
    updated: list[dict[str, Any]] = []
    left: list[str] = []
    for participant_id, (kind, public) in last.items():
        if kind == LEFT:
            if first[participant_id] != JOINED:  # they knew of them: tell them they went
                left.append(participant_id)
        elif participant_id in rejoined:
            joined.append(public or {})
        else:
            updated.append(public or {})
    fields: dict[str, Any] = {}
    for name, values in ((JOINED, joined), (UPDATED, updated), (LEFT, left)):
        if values:
            fields[name] = values
    return fields


def pages(participants: list[dict[str, Any]], size: int = PAGE_SIZE) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A joiner's list of the others: (what `joined` carries, the `participants_changed`
    pages that follow it)."""
    first = participants[:size]
    rest = [
        {"type": "participants_changed", "joined": participants[start : start + size]}
        for start in range(size, len(participants), size)
    ]
    return first, rest


class Roster:
    """The pending participant changes of one live meeting and their delivery."""

    __slots__ = ("_meeting", "_clock", "_window", "_log", "_fresh", "_timer", "messages_sent", "flushes")

    def __init__(self, meeting: LiveMeeting, clock: Clock) -> None:
        self._meeting = meeting
        self._clock = clock
        self._window = CoalescingWindow()
        self._log = RosterLog()
        # Joined during the open window: participant id -> the sequence of their snapshot.
        self._fresh: dict[str, int] = {}
        self._timer: Timer | None = None
        self.messages_sent = 0  # participants_changed messages sent (each recipient counted)
        self.flushes = 0

    def joined(self, participant: Participant) -> None:
        """`participant` is in and has its `joined` (the list up to now): everyone else
        hears of them in the next batch, and they hear only of later changes."""
        seq = self._record(JOINED, participant.participant_id, participant.public())
        self._fresh[participant.participant_id] = seq

    def updated(self, participant: Participant) -> None:
        self._record(UPDATED, participant.participant_id, participant.public())

    def left(self, participant: Participant) -> None:
        self._fresh.pop(participant.participant_id, None)
        self._record(LEFT, participant.participant_id)

    def _record(self, kind: str, participant_id: str, public: dict[str, Any] | None = None) -> int:
        seq = self._log.add(kind, participant_id, public)
        delay = self._window.changed(self._clock.time(), window_for(len(self._meeting.participants)))
        if delay == 0.0:
            self.flush()
        elif delay is not None:
            self._arm(delay)
        return seq

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._clock.call_later(delay, self.flush)

    def flush(self) -> None:
        """Send what is pending: one message serialized once for everyone who was there
        before the window, a message of its own to each who joined during it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._window.flushed()
        entries = self._log.take()
        fresh, self._fresh = self._fresh, {}
        if not entries:
            return
        self.flushes += 1
        fields = coalesce(entries)
        shared = EncodedMessage({"type": "participants_changed", **fields}) if fields else None
        for participant in list(self._meeting.participants.values()):
            since = fresh.get(participant.participant_id)
            if since is None:
                message = shared
            else:
                own = coalesce(entries, since)
                message = {"type": "participants_changed", **own} if own else None
            if message is not None:
                participant.send(message)
                self.messages_sent += 1

    def close(self) -> None:
        """The meeting ends: nothing more goes out."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._log.take()
        self._fresh.clear()
        self._window.flushed()
