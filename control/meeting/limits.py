"""The limits a meeting runs under, computed once per live meeting.

A customer's limits are the settings' `limits:` section with the customer's overrides laid
over it (`LimitsConfig`, typed: every override was checked by its config rule when it was
set). A live meeting takes a `MeetingLimits` snapshot of them together with the server's
own caps when it goes live (or when the first person waits for its host), so its rules
read one value each, computed once; the snapshot is taken again for the customer's live
meetings when an operator changes the customer's limits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from config import LimitsConfig
from control.store.base import Customer

# A meeting's last-N when its host set none (issue 11): the video of this many
# participants reaches each subscriber at once, capped by the customer's `max_last_n`.
DEFAULT_LAST_N = 25


@dataclass(frozen=True, slots=True)
class MeetingLimits:
    account: LimitsConfig  # the customer's limits
    server_max_participants: int  # the operator's cap (signaling.max_participants_per_meeting)

    @property
    def capacity(self) -> int:
        """Most participants in the meeting at once: the server's cap, or the customer's if lower."""
        return min(self.account.max_participants_per_meeting, self.server_max_participants)

    def last_n(self, requested: int | None) -> int:
        """The last-N a meeting runs with: its host's setting (or the default), never over
        the customer's cap (an operator may lower it after the host chose)."""
        return min(requested or DEFAULT_LAST_N, self.account.max_last_n)

    def may_transcribe(self, is_host: bool) -> bool:
        """Whether a participant may start transcription themselves."""
        return self.account.transcription_allowed and (is_host or self.account.participants_may_transcribe)


class LimitsPolicy:
    """Turns a customer into its limits (settings `limits:` + overrides + server caps)."""

    def __init__(self, defaults: LimitsConfig, server_max_participants: int) -> None:
        self._defaults = defaults
        self._server_max_participants = server_max_participants

    def account(self, customer: Customer) -> LimitsConfig:
        known = LimitsConfig.rules()
        overrides = {name: value for name, value in customer.limits.items() if name in known and value is not None}
        return dataclasses.replace(self._defaults, **overrides)

    def for_meeting(self, customer: Customer) -> MeetingLimits:
        return MeetingLimits(self.account(customer), self._server_max_participants)

    def as_json(self, customer: Customer) -> dict[str, Any]:
        return dataclasses.asdict(self.account(customer))
