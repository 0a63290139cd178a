"""control.meeting.admission: one rule for REST joins and sockets, in its order."""

from __future__ import annotations

import pytest

from control.meeting.admission import ADMITTED, REFUSED, WAITING, Admission, Situation, decide, has_room

pytestmark = pytest.mark.unit

LIVE = dict(live=True, locked=False, waiting_room=False)


@pytest.mark.parametrize(
    ("situation", "expected"),
    [
        # A new arrival over REST.
        (Situation(**LIVE), Admission(ADMITTED)),
        (Situation(live=True, locked=False, waiting_room=True), Admission(WAITING, "waiting_room")),
        (Situation(live=False, locked=True, waiting_room=False), Admission(WAITING, "waiting_for_host")),
        (Situation(live=True, locked=True, waiting_room=False), Admission(REFUSED, "meeting_locked")),
        (Situation(**LIVE, account_available=False), Admission(REFUSED, "meeting_unavailable")),
        (Situation(**LIVE, removed=True), Admission(REFUSED, "removed")),
        # Unavailable beats removed beats everything else.
        (Situation(live=False, locked=True, waiting_room=True, account_available=False, removed=True),
         Admission(REFUSED, "meeting_unavailable")),  # fmt: skip
        (Situation(live=False, locked=True, waiting_room=True, removed=True), Admission(REFUSED, "removed")),
        # A socket presenting its token.
        (Situation(live=True, locked=True, waiting_room=True, is_host=True, previous="admitted"), Admission(ADMITTED)),
        # Admitted by the REST join but never in: the lock is checked again when they connect.
        (Situation(live=True, locked=True, waiting_room=True, previous="admitted"), Admission(REFUSED, "meeting_locked")),
        (Situation(live=True, locked=False, waiting_room=True, previous="admitted"), Admission(ADMITTED)),
        # Someone was removed: newcomers (and tokens fetched before) wait for the host.
        (Situation(**LIVE, hold_newcomers=True), Admission(WAITING, "waiting_room")),
        (Situation(**LIVE, previous="admitted", hold_newcomers=True), Admission(WAITING, "waiting_room")),
        (Situation(**LIVE, previous="left", admitted_before=True, hold_newcomers=True), Admission(ADMITTED)),
        (Situation(live=True, locked=True, waiting_room=True, previous="left", admitted_before=True),
         Admission(ADMITTED)),  # fmt: skip
        (Situation(live=True, locked=True, waiting_room=False, previous="waiting", same_session=True),
         Admission(WAITING, "waiting_room")),  # fmt: skip
        # Back after a restart with a reconnect credential (the server forgot who was in):
        # in, locked, behind a waiting room or after a removal; not into another live session.
        (Situation(live=True, locked=True, waiting_room=True, previous="admitted", same_session=True, resumed=True,
                   hold_newcomers=True), Admission(ADMITTED)),  # fmt: skip
        (Situation(live=True, locked=True, waiting_room=False, previous="admitted", resumed=True),
         Admission(REFUSED, "meeting_locked")),  # fmt: skip
        (Situation(live=True, locked=False, waiting_room=True, previous="left", same_session=True, resumed=True),
         Admission(WAITING, "waiting_room")),  # fmt: skip
        (Situation(**LIVE, previous="admitted", same_session=True, resumed=True, removed=True),
         Admission(REFUSED, "removed")),  # fmt: skip
        (Situation(live=True, locked=True, waiting_room=False, previous="left"), Admission(REFUSED, "meeting_locked")),
        # Waiting since before the start is not a new arrival: a lock does not refuse them.
        (Situation(live=True, locked=True, waiting_room=False, previous="waiting"), Admission(ADMITTED)),
        (Situation(live=True, locked=True, waiting_room=True, previous="waiting"), Admission(WAITING, "waiting_room")),
        (Situation(live=True, locked=False, waiting_room=False, previous="denied"), Admission(REFUSED, "removed")),
        (Situation(live=False, locked=False, waiting_room=False, is_host=True), Admission(WAITING, "waiting_for_host")),
    ],
)
def test_decide(situation: Situation, expected: Admission) -> None:
    assert decide(situation) == expected


def test_refusals_have_a_message_and_room_is_strict() -> None:
    assert decide(Situation(**LIVE, removed=True)).message == "the host removed you from this meeting"
    assert decide(Situation(**LIVE)).message == ""
    assert has_room(0, 1) and not has_room(1, 1) and not has_room(2, 1)
