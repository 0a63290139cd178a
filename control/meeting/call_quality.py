"""Call quality, control's side (issue 14, item 1): the workers' per-transport report
windows and the clients' freeze reports become each participant's level
(`control.meeting.quality`), told to the meeting as `connection_quality` and kept for
Prometheus (`control.metrics.quality.QualityCollector`).

- `sfu.api.TransportQuality` (entity: a transport): the participant whose publish or
  subscribe transport it is gets that direction's window, then is scored.
- `media_stats` from a client (control.http.signaling): its running freeze total.
- A level that changes goes to everyone admitted in the meeting as
  `{"type": "connection_quality", "participants": [{"participant_id", "quality", "score"}]}`
  (only those that changed); a joiner hears everyone's current level right after `joined`.

Worker news is handled synchronously (it reads the live model and sends), like
`control.meeting.adaptive.AdaptiveMedia`.
"""

from __future__ import annotations

from typing import Any

from common.messages import Message
from control.clock import Clock
from control.meeting.listeners import ConferenceListener
from control.meeting.model import LiveMeeting, MeetingRegistry, Participant
from control.meeting.quality import LEVELS, Distribution, LinkWindow, ParticipantQuality
from sfu import api

DIRECTIONS = ("publish", "subscribe")
# Histogram bounds, seconds and ratios: where a call goes from fine to noticeably worse.
RTT_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
LOSS_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
# A client's freeze reports closer together than this are ignored (the web client sends
# one every 5 s; the socket's own rate limit bounds the rest).
MIN_FREEZE_REPORT_S = 1.0


class CallQuality(ConferenceListener):
    """Every admitted participant's level; the distributions /metrics exports."""

    def __init__(self, *, registry: MeetingRegistry, clock: Clock) -> None:
        self._registry = registry
        self._clock = clock
        # meeting id -> participant id -> their inputs and level
        self._meetings: dict[str, dict[str, ParticipantQuality]] = {}
        self.rtt_seconds = Distribution(RTT_BUCKETS_S)
        self.loss_ratio = {direction: Distribution(LOSS_BUCKETS) for direction in DIRECTIONS}
        self.windows = 0  # report windows taken (tests, debugging)

    # ------------------------------------------------------------------ reading

    def level_counts(self) -> dict[str, int]:
        """Participants at each level now (those not scored yet are not counted)."""
        counts = dict.fromkeys(LEVELS, 0)
        for people in self._meetings.values():
            for state in people.values():
                if state.level is not None:
                    counts[state.level] += 1
        return counts

    def levels(self, meeting: LiveMeeting) -> list[dict[str, Any]]:
        """The meeting's scored participants, as the event lists them."""
        people = self._meetings.get(meeting.meeting_id, {})
        return [_entry(pid, state) for pid, state in people.items() if state.level is not None]

    def details(self, meeting_id: str, participant_id: str) -> dict[str, Any] | None:
        """One participant's measures, for the host (REST): level, score, the share of time
        their video froze, and per direction the last window's loss, jitter, round trip and
        (subscribe) bandwidth estimate; None before anything was measured."""
        state = self._meetings.get(meeting_id, {}).get(participant_id)
        if state is None:
            return None
        body: dict[str, Any] = {"quality": state.level, "score": round(state.score, 2),
                                "freeze_ratio": round(state.freeze_ratio, 4)}  # fmt: skip
        for direction, window in state.links.items():
            body[direction] = window.summary()
        return body

    # ------------------------------------------------------------------ worker news

    def worker_notification(self, index: int, generation: int, entity_id: str, message: Message) -> None:
        if not isinstance(message, api.TransportQuality) or message.direction not in DIRECTIONS:
            return
        found = self._owner(index, generation, entity_id, message.direction)
        if found is None:
            return  # a WHEP viewer's, an ingest's, or gone meanwhile
        meeting, participant = found
        now = self._clock.time()
        window = LinkWindow.bounded(message.loss_ratio, message.jitter_s, message.rtt_s, now, message.video_delivered,
                                    message.estimate_bps)  # fmt: skip
        self.windows += 1
        self.loss_ratio[message.direction].observe(window.loss_ratio)
        if window.rtt_s >= 0:
            self.rtt_seconds.observe(window.rtt_s)
        state = self._state(meeting, participant)
        state.on_link(message.direction, window)
        self._evaluate(meeting, participant, state, now)

    def _owner(
        self, index: int, generation: int, transport_id: str, direction: str
    ) -> tuple[LiveMeeting, Participant] | None:
        for meeting in self._registry.using_worker(index, generation):
            for participant in meeting.participants.values():
                subscribe = direction == "subscribe"
                own = participant.subscribe_transport_id if subscribe else participant.publish_transport_id
                if own == transport_id and not participant.closed:
                    return meeting, participant
        return None

    # ------------------------------------------------------------------ client news

    def freezes_reported(self, meeting: LiveMeeting, participant: Participant, freeze_seconds: float) -> None:
        """A client's `media_stats`: the seconds its received video spent frozen, so far."""
        if not participant.admitted or participant.closed:
            return
        state = self._state(meeting, participant)
        now = self._clock.time()
        if state.freezes_at is not None and now - state.freezes_at < MIN_FREEZE_REPORT_S:
            return
        state.on_freezes(freeze_seconds, now)
        self._evaluate(meeting, participant, state, now)

    # ------------------------------------------------------------------ scoring

    def _state(self, meeting: LiveMeeting, participant: Participant) -> ParticipantQuality:
        people = self._meetings.setdefault(meeting.meeting_id, {})
        state = people.get(participant.participant_id)
        if state is None:
            state = people[participant.participant_id] = ParticipantQuality()
        return state

    def _evaluate(self, meeting: LiveMeeting, participant: Participant, state: ParticipantQuality, now: float) -> None:
        paused = sum(1 for reason in participant.track_pauses.values() if reason == "bandwidth")
        if state.evaluate(now, paused):
            changed = [_entry(participant.participant_id, state)]
            meeting.broadcast({"type": "connection_quality", "participants": changed})

    # ------------------------------------------------------------------ conference news

    def participant_joined(self, meeting: LiveMeeting, participant: Participant) -> bool:
        """`joined` was sent: what everyone's level is now follows it."""
        known = self.levels(meeting)
        if known:
            participant.send({"type": "connection_quality", "participants": known})
        return False

    def participant_left(self, meeting: LiveMeeting, participant: Participant) -> None:
        people = self._meetings.get(meeting.meeting_id)
        if people is not None:
            people.pop(participant.participant_id, None)
            if not people:
                del self._meetings[meeting.meeting_id]

    def router_lost(self, meeting: LiveMeeting) -> None:
        """Their transports are gone: everyone is scored afresh once they are back."""
        self._meetings.pop(meeting.meeting_id, None)


def _entry(participant_id: str, state: ParticipantQuality) -> dict[str, Any]:
    return {"participant_id": participant_id, "quality": state.level, "score": state.score}
