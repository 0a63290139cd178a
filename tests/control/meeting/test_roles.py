"""control.meeting.roles: who may publish in a webinar, promotions, demotions and hands,
as pure rules over plain participants."""

from __future__ import annotations

import pytest

from control.meeting.model import Participant
from control.meeting.roles import RoleError, Stage

pytestmark = pytest.mark.unit

INGEST = {"publish": True, "subscribe": False, "chat": False, "screen": False, "moderate": False}


class Quiet:
    def send(self, message: object) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


def person(pid: str, *, host: bool = False, grants: dict[str, bool] | None = None) -> Participant:
    if host:
        grants = {"publish": True, "subscribe": True, "chat": True, "screen": True, "moderate": True}
    return Participant(pid, pid, Quiet(), role="host" if host else "participant", grants=grants)


def test_an_ordinary_meeting_lets_everyone_publish_and_has_no_attendees():
    stage = Stage(attendees_publish=True)
    ann = person("ann")
    assert stage.may_publish(ann) and not stage.is_attendee(ann)
    assert stage.role_of(ann) == "participant" and stage.role_of(person("h", host=True)) == "host"
    with pytest.raises(RoleError) as refused:
        stage.promote(person("h", host=True), ann)
    assert refused.value.code == "not_a_webinar"


def test_a_webinar_makes_participants_attendees_but_not_the_host_nor_an_ingest():
    stage = Stage(attendees_publish=False)
    assert stage.is_attendee(person("ann")) and not stage.may_publish(person("ann"))
    assert stage.role_of(person("ann")) == "attendee"
    assert stage.may_publish(person("h", host=True)) and stage.role_of(person("h", host=True)) == "host"
    ingest = person("obs", grants=INGEST)  # receives nothing: a stream the host brought in
    assert not stage.is_attendee(ingest) and stage.may_publish(ingest)


def test_a_grant_without_publish_is_never_lifted_by_a_promotion():
    stage = Stage(attendees_publish=False)
    muted = person("m", grants={"publish": False, "subscribe": True, "chat": True, "moderate": False})
    assert stage.promote(None, muted)
    assert not stage.may_publish(muted)


def test_the_host_promotes_and_demotes_and_a_promotion_lowers_the_hand():
    stage = Stage(attendees_publish=False)
    host, ann = person("h", host=True), person("ann")
    assert stage.raise_hand(ann, 10.0)
    assert stage.promote(host, ann)
    assert stage.may_publish(ann) and stage.role_of(ann) == "speaker" and "ann" not in stage.hands
    assert not stage.promote(host, ann)  # already a speaker: nothing changes
    assert stage.demote(host, ann)
    assert stage.is_attendee(ann)
    assert not stage.demote(host, ann)  # an attendee already


def test_only_a_moderator_promotes_or_demotes_and_the_host_cannot_be_demoted():
    stage = Stage(attendees_publish=False)
    ann, bob, host = person("ann"), person("bob"), person("h", host=True)
    for change in (stage.promote, stage.demote):
        with pytest.raises(RoleError) as refused:
            change(bob, ann)
        assert refused.value.code == "forbidden"
    assert stage.promote(None, ann)  # None: the host over REST, already authorized
    with pytest.raises(RoleError) as refused:
        stage.demote(host, host)
    assert refused.value.code == "cannot_demote_host"


def test_hands_go_up_once_in_order_and_only_a_moderator_lowers_another():
    stage = Stage(attendees_publish=False)
    ann, bob, host = person("ann"), person("bob"), person("h", host=True)
    assert stage.raise_hand(bob, 5.0) and stage.raise_hand(ann, 7.0)
    assert not stage.raise_hand(ann, 9.0)  # up already: its time stays
    assert list(stage.hands.items()) == [("bob", 5.0), ("ann", 7.0)]
    with pytest.raises(RoleError):
        stage.lower_hand(ann, "bob")
    assert stage.lower_hand(host, "bob") and not stage.lower_hand(host, "bob")
    assert stage.lower_hand(ann, "ann")
    assert stage.hands == {}


def test_leaving_lowers_the_hand_and_keeps_a_promotion_for_a_reconnect():
    stage = Stage(attendees_publish=False)
    ann = person("ann")
    stage.raise_hand(ann, 1.0)
    assert stage.left("ann") and not stage.left("ann")
    stage.promote(None, ann)
    stage.left("ann")
    assert stage.may_publish(person("ann"))  # the same participant on a new connection


def test_turning_the_setting_off_live_keeps_whoever_publishes_as_speakers():
    stage = Stage(attendees_publish=True)
    stage.set_attendees_publish(False, publishing=["ann"])
    assert stage.may_publish(person("ann")) and stage.is_attendee(person("bob"))
    stage.set_attendees_publish(True, publishing=[])
    assert stage.may_publish(person("bob"))
