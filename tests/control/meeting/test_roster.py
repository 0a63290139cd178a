"""control.meeting.roster: participant changes coalesced per window and sent as one delta
per recipient; a joiner hears only what came after its snapshot, never itself. Pure
parts with bytes and a fake clock; the meeting's batches with recording peers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from control.meeting.model import LiveMeeting, Participant
from control.meeting.roster import (
    JOINED,
    LEFT,
    UPDATED,
    CoalescingWindow,
    EncodedMessage,
    Roster,
    RosterLog,
    coalesce,
    pages,
    window_for,
)
from tests.support.clock import FakeClock

pytestmark = pytest.mark.unit


class Peer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def close(self, code: int, reason: str) -> None:
        pass

    def changes(self) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["type"] == "participants_changed"]


def test_the_window_opens_at_the_first_change_and_closes_after_window_s():
    window = CoalescingWindow(window_s=0.1, max_changes=10)
    assert window.changed(5.0) == 0.1  # a new window: arm a timer
    assert window.changed(5.05) is None  # same window: nothing more to arm
    assert not window.is_due(5.09) and window.is_due(5.1)
    window.flushed()
    assert not window.is_due(99.0)
    assert window.changed(6.0) == 0.1


def test_a_larger_meeting_has_a_longer_window_up_to_a_second():
    assert window_for(2) == window_for(100) == 0.1
    assert window_for(300) == pytest.approx(0.3)
    assert window_for(1000) == window_for(5000) == 1.0
    window = CoalescingWindow(window_s=0.1)
    assert window.changed(1.0, 0.5) == 0.5 and not window.is_due(1.4) and window.is_due(1.5)


def test_a_full_batch_goes_out_at_once():
    window = CoalescingWindow(window_s=0.1, max_changes=3)
    assert [window.changed(1.0) for _ in range(3)] == [0.1, None, 0.0]
    assert window.is_due(1.0)


def _log(*changes: tuple[str, str]) -> RosterLog:
    log = RosterLog()
    for kind, participant_id in changes:
        log.add(kind, participant_id, None if kind == LEFT else {"participant_id": participant_id, "v": log.seq})
    return log


def test_coalesce_keeps_the_net_change_per_participant():
    log = _log((JOINED, "a"), (UPDATED, "a"), (JOINED, "b"), (LEFT, "b"), (UPDATED, "c"), (LEFT, "d"), (UPDATED, "c"))
    assert coalesce(log.entries) == {
        "joined": [{"participant_id": "a", "v": 1}],  # joined, then updated: joined with the last state
        "updated": [{"participant_id": "c", "v": 6}],  # the last update wins
        "left": ["d"],  # b came and went within the window: never mentioned
    }


def test_coalesce_a_replaced_connection_is_a_join_and_a_known_leaver_stays_left():
    log = _log((LEFT, "a"), (JOINED, "a"), (UPDATED, "b"), (LEFT, "b"))
    assert coalesce(log.entries) == {"joined": [{"participant_id": "a", "v": 1}], "left": ["b"]}


def test_coalesce_since_a_snapshot_leaves_out_what_it_had():
    # x was in the joiner's snapshot (joined at 1); the joiner's own join is 2; then x leaves.
    log = _log((JOINED, "x"), (JOINED, "me"), (LEFT, "x"), (JOINED, "y"))
    assert coalesce(log.entries, since=2) == {"joined": [{"participant_id": "y", "v": 3}], "left": ["x"]}
    assert coalesce(log.entries, since=4) == {}


def test_pages_put_the_first_page_in_joined_and_the_rest_after_it():
    people = [{"participant_id": str(i)} for i in range(450)]
    first, rest = pages(people, size=200)
    assert first == people[:200]
    assert [len(page["joined"]) for page in rest] == [200, 50]
    assert all(page["type"] == "participants_changed" for page in rest)
    assert pages(people[:3], size=200) == (people[:3], [])


def test_an_encoded_message_is_its_dict_and_its_text():
    message = EncodedMessage({"type": "participants_changed", "left": ["a"]})
    assert message == {"type": "participants_changed", "left": ["a"]}
    assert json.loads(message.text) == message


class Meeting:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.meeting = LiveMeeting("m1")
        self.roster = Roster(self.meeting, self.clock)
        self.meeting.roster = self.roster
        self.peers: dict[str, Peer] = {}

    def join(self, name: str) -> Participant:
        peer = self.peers[name] = Peer()
        participant = Participant(name, name, peer)
        self.meeting.add_participant(participant)
        self.roster.joined(participant)
        return participant

    def leave(self, participant: Participant) -> None:
        self.meeting.remove_participant(participant)
        self.roster.left(participant)


def test_joins_within_a_window_reach_each_earlier_participant_as_one_message():
    m = Meeting()
    m.join("ann")
    m.clock.advance(0.1)
    for name in ("bob", "cy", "dee"):
        m.join(name)
        m.clock.advance(0.02)
    assert m.peers["ann"].changes() == []  # the window is still open
    m.clock.advance(0.05)
    assert [len(c["joined"]) for c in m.peers["ann"].changes()] == [3]
    # Each joiner hears of those after it only, never of itself.
    assert [p["participant_id"] for c in m.peers["bob"].changes() for p in c["joined"]] == ["cy", "dee"]
    assert [p["participant_id"] for c in m.peers["cy"].changes() for p in c["joined"]] == ["dee"]
    assert m.peers["dee"].changes() == []
    assert m.roster.flushes == 2  # ann's own join (nobody to tell), then the three
    assert isinstance(m.peers["ann"].changes()[0], EncodedMessage)  # serialized once for all


def test_a_broadcast_sends_the_pending_changes_first():
    m = Meeting()
    ann = m.join("ann")
    m.clock.advance(0.1)
    bob = m.join("bob")
    m.meeting.broadcast({"type": "chat", "message": {"participant_id": bob.participant_id}})
    assert [msg["type"] for msg in m.peers["ann"].sent] == ["participants_changed", "chat"]
    m.clock.advance(1.0)
    assert len(m.peers["ann"].changes()) == 1  # nothing left for the timer to send
    assert ann.participant_id not in {p["participant_id"] for c in m.peers["bob"].changes() for p in c["joined"]}


def test_updates_and_a_leave_in_one_window():
    m = Meeting()
    ann, bob = m.join("ann"), m.join("bob")
    m.clock.advance(0.1)
    bob.muted["microphone"] = True
    m.roster.updated(bob)
    m.leave(ann)
    m.clock.advance(0.1)
    assert m.peers["bob"].changes()[-1] == {
        "type": "participants_changed",
        "updated": [bob.public()],  # their own update reaches them too (as participant_updated did)
        "left": ["ann"],
    }


def test_messages_per_participant_grow_with_the_windows_not_with_the_joins():
    m = Meeting()
    m.join("first")
    joins = 200
    for index in range(joins):  # 10 joins per 100 ms window
        m.join(f"p{index}")
        m.clock.advance(0.01)
    m.clock.advance(0.1)
    first = m.peers["first"].changes()
    assert sum(len(c["joined"]) for c in first) == joins  # O(n) entries: each joiner once
    assert len(first) <= joins // 10 + 1  # one message per window
    assert m.roster.messages_sent <= (joins + 1) * (joins // 10 + 1)


def test_close_drops_what_is_pending():
    m = Meeting()
    m.join("ann")
    m.clock.advance(0.1)
    m.join("bob")
    m.roster.close()
    m.clock.advance(1.0)
    assert m.peers["ann"].changes() == []
