"""The consent ledger of one recording (or transcription): who was told, how, and what
they decided. Pure bookkeeping: every method returns the change the store must record
(`LedgerChange`), and control.recording.service performs it.

- Each participant present while it runs gets an entry: `continued` for the host and for
  whoever started it (they consented by starting), else `pending`.
- They are notified through channels: `banner` and `event` on signaling, `audio` once the
  spoken notice reached them (a late joiner hears it when their connection is up; a new
  connection hears it again).
- Under the policy `require`, a pending participant's media is held (`holds`) until they
  decide: `continued` (the Continue button) or `left` (Leave, or their socket closed for a
  reason of theirs). Under `notify`, whoever is still pending when it stops stayed: that is
  `continued` (`settle_at_stop`).
"""

from __future__ import annotations

from dataclasses import dataclass

PENDING, CONTINUED, LEFT = "pending", "continued", "left"
NOTIFY, REQUIRE = "notify", "require"
SIGNALING_CHANNELS = ("banner", "event")
AUDIO = "audio"
# A socket closing for one of these while consent is pending counts as "left"; the others
# (reconnect after a media-server restart, a second socket, the meeting ending) are not
# the participant's decision.
LEFT_REASONS = (None, "removed", "denied", "session_ended")


class Consent:
    """One participant's entry."""

    __slots__ = ("name", "decision", "channels", "audio_sent", "notified")

    def __init__(self, name: str, decision: str) -> None:
        self.name = name
        self.decision = decision  # pending | continued | left
        self.channels: list[str] = []
        self.audio_sent = False  # the spoken notice reached their current connection
        self.notified = False  # the store has (or is writing) their row


@dataclass(frozen=True, slots=True)
class LedgerChange:
    """What the store must record: a new row (`notified`), more channels, or a decision."""

    kind: str  # notified | channels | decision
    participant_id: str
    entry: Consent
    decision: str = ""


class ConsentLedger:
    def __init__(self, policy: str) -> None:
        self.policy = policy  # notify | require
        self.entries: dict[str, Consent] = {}

    def present(self, participant_id: str, name: str, *, consented: bool) -> Consent:
        """`participant_id` is in the meeting while it runs: their entry (a new one unless
        they have one that stands; leaving and coming back asks again)."""
        entry = self.entries.get(participant_id)
        if entry is None or entry.decision == LEFT:
            entry = self.entries[participant_id] = Consent(name, CONTINUED if consented else PENDING)
        return entry

    def holds(self, participant_id: str) -> bool:
        """Their media stays paused: consent is required and they have not decided."""
        entry = self.entries.get(participant_id)
        return entry is not None and self.policy == REQUIRE and entry.decision == PENDING

    def heard(self, participant_id: str) -> bool:
        entry = self.entries.get(participant_id)
        return entry is None or entry.audio_sent

    def new_connection(self, participant_id: str) -> None:
        """They connected again: they hear the spoken notice again."""
        entry = self.entries.get(participant_id)
        if entry is not None:
            entry.audio_sent = False

    def notified(self, participant_id: str, *, audio: bool) -> LedgerChange | None:
        """They got the banner and the event (and the audio): their row, or more channels."""
        entry = self.entries.get(participant_id)
        if entry is None:
            return None
        channels = [*SIGNALING_CHANNELS, AUDIO] if audio else list(SIGNALING_CHANNELS)
        entry.audio_sent = entry.audio_sent or audio
        if entry.notified:
            return self._add_channels(participant_id, entry, channels)
        entry.notified = True
        entry.channels = channels
        return LedgerChange("notified", participant_id, entry)

    def audio_reached(self, participant_id: str) -> LedgerChange | None:
        """The spoken notice reached them (a late joiner, once their connection was up)."""
        entry = self.entries.get(participant_id)
        if entry is None:
            return None
        entry.audio_sent = True
        return self._add_channels(participant_id, entry, [AUDIO])

    def _add_channels(self, participant_id: str, entry: Consent, channels: list[str]) -> LedgerChange | None:
        new = [c for c in channels if c not in entry.channels]
        if not new:
            return None
        entry.channels = entry.channels + new
        return LedgerChange("channels", participant_id, entry)

    def decide(self, participant_id: str, decision: str) -> LedgerChange | None:
        """A pending participant decides (continued | left); None when nothing changes."""
        entry = self.entries.get(participant_id)
        if entry is None or entry.decision != PENDING or decision == PENDING:
            return None
        entry.decision = decision
        return LedgerChange("decision", participant_id, entry, decision)

    def gone(self, participant_id: str, exit_reason: str | None) -> LedgerChange | None:
        """Their socket closed: leaving while pending is a decision when it was theirs."""
        return self.decide(participant_id, LEFT) if exit_reason in LEFT_REASONS else None

    def settle_at_stop(self) -> list[LedgerChange]:
        """It stops: under `notify`, whoever stayed until then continued."""
        if self.policy != NOTIFY:
            return []
        changes = [self.decide(participant_id, CONTINUED) for participant_id in list(self.entries)]
        return [change for change in changes if change is not None]
