"""Webinar roles and raised hands, performed (issue 16 item 3; the rules: control.meeting.roles).

A promotion gives the attendee a publish transport and tells them they may publish
(`stage_role`); a demotion closes it, which stops their tracks for everyone through the
conference's one "track gone" step. Hands go up and down over signaling. The moderators
hear the meeting's stage (`stage`: the setting, the speakers, the hands in the order they
went up) whenever it changes and when they join; everyone else hears only their own role.
What changes which transports exist runs under the meeting's lock, so a publish offer in
flight is either refused or done before the demotion closes its transport.
"""

from __future__ import annotations

import logging
from typing import Any

from control.clock import Clock
from control.errors import SignalingError
from control.meeting.conference import Conference
from control.meeting.listeners import ConferenceListener
from control.meeting.model import LiveMeeting, MeetingRegistry, Participant
from control.meeting.roles import RoleError
from control.store.base import MeetingRecord

log = logging.getLogger(__name__)


def stage_role(meeting: LiveMeeting, participant: Participant) -> dict[str, Any]:
    """What a participant is told of their own role."""
    stage = meeting.stage
    return {
        "type": "stage_role",
        "role": stage.role_of(participant),
        "may_publish": stage.may_publish(participant),
        "hand_raised": participant.participant_id in stage.hands,
    }


def stage_view(meeting: LiveMeeting) -> dict[str, Any]:
    """What the moderators see: the setting, who speaks, whose hand is up (oldest first)."""
    stage = meeting.stage
    hands = []
    for participant_id, raised_at in stage.hands.items():
        person = meeting.participants.get(participant_id)
        if person is not None:
            hands.append({"participant_id": participant_id, "name": person.name, "raised_at": int(raised_at * 1000)})
    return {
        "type": "stage",
        "attendees_publish": stage.attendees_publish,
        "speakers": sorted(p for p in stage.speakers if p in meeting.participants),
        "hands": hands,
    }


class Webinar(ConferenceListener):
    def __init__(self, *, registry: MeetingRegistry, conference: Conference, clock: Clock) -> None:
        self._registry = registry
        self._conference = conference
        self._clock = clock

    # ------------------------------------------------------------------ promote / demote

    async def promote(self, meeting: LiveMeeting, actor: Participant | None, target_id: str) -> Participant:
        """`actor` (None: the host over REST) lets attendee `target_id` publish. Raises
        RoleError (not allowed) or SignalingError (`not_connected`, media)."""
        async with meeting.lock:
            target = self._connected(meeting, target_id)
            if meeting.stage.promote(actor, target):
                try:
                    await self._conference.open_publish(meeting, target)
                except SignalingError:
                    meeting.stage.speakers.discard(target_id)  # nothing changed for them
                    raise
                self._tell(meeting, target)
                log.info("meeting %s: %s promoted to speaker", meeting.meeting_id, target_id)
        return target

    async def demote(self, meeting: LiveMeeting, actor: Participant | None, target_id: str) -> Participant:
        """`actor` (None: the host over REST) makes speaker `target_id` an attendee again:
        their tracks stop for everyone."""
        async with meeting.lock:
            target = self._connected(meeting, target_id)
            if meeting.stage.demote(actor, target):
                await self._conference.close_publish(meeting, target)
                self._tell(meeting, target)
                log.info("meeting %s: %s back to attendee", meeting.meeting_id, target_id)
        return target

    @staticmethod
    def _connected(meeting: LiveMeeting, participant_id: str) -> Participant:
        target = meeting.participants.get(participant_id)
        if target is None or target.closed:
            raise SignalingError("not_connected", "the participant is not in the meeting now")
        return target

    # ------------------------------------------------------------------ hands

    def hand(self, meeting: LiveMeeting, participant: Participant, raised: bool, target_id: str | None = None) -> None:
        """`participant` raises or lowers their hand, or (a moderator) lowers `target_id`'s."""
        stage = meeting.stage
        if raised:
            if target_id not in (None, participant.participant_id):
                raise RoleError("forbidden", "only your own hand can be raised")
            changed = stage.raise_hand(participant, self._clock.time())
            target: Participant | None = participant
        else:
            target_id = target_id or participant.participant_id
            changed = stage.lower_hand(participant, target_id)
            target = meeting.participants.get(target_id)
        if changed and target is not None:
            self._tell(meeting, target)

    # ------------------------------------------------------------------ the setting

    async def setting_changed(self, record: MeetingRecord) -> None:
        """The host changed `attendees_publish` (control.http.meetings): the live meeting
        follows. Turned on, every attendee gets a publish transport and is told."""
        meeting = self._registry.get(record.id)
        if meeting is None or meeting.ended or meeting.stage.attendees_publish == record.attendees_publish:
            return
        async with meeting.lock:
            before = {p.participant_id: meeting.stage.may_publish(p) for p in meeting.participants.values()}
            publishing = [p.participant_id for p in meeting.participants.values() if p.publish_transport_id]
            meeting.stage.set_attendees_publish(record.attendees_publish, publishing)
            for participant in list(meeting.participants.values()):
                if meeting.stage.may_publish(participant) and not before.get(participant.participant_id):
                    await self._conference.open_publish(meeting, participant)
                    participant.send(stage_role(meeting, participant))
            self._tell_moderators(meeting)

    # ------------------------------------------------------------------ telling

    def _tell(self, meeting: LiveMeeting, participant: Participant) -> None:
        participant.send(stage_role(meeting, participant))
        self._tell_moderators(meeting)

    def _tell_moderators(self, meeting: LiveMeeting) -> None:
        view = None
        for moderator in meeting.moderators():
            view = view or stage_view(meeting)
            moderator.send(view)

    # ------------------------------------------------------------------ conference news

    def participant_joined(self, meeting: LiveMeeting, participant: Participant) -> bool:
        """A moderator hears the stage; in a webinar everyone hears their role right after
        `joined` (the page shows a raise-hand button)."""
        if meeting.stage.moderates(participant):
            participant.send(stage_view(meeting))
        elif not meeting.stage.attendees_publish:
            participant.send(stage_role(meeting, participant))
            if participant.participant_id in meeting.stage.speakers:
                self._tell_moderators(meeting)  # a speaker back (a reconnect): listed again
        return False

    def participant_left(self, meeting: LiveMeeting, participant: Participant) -> None:
        """Their hand goes down; the moderators hear of it (and of a speaker gone), unless
        the meeting is ending for everyone."""
        changed = meeting.stage.left(participant.participant_id) or participant.participant_id in meeting.stage.speakers
        if changed and not meeting.ended:
            self._tell_moderators(meeting)
