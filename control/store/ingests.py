"""The store's part for ingests (issue 12, items 4 and 6): a stream a host brings into a
meeting from outside, by WHIP (a bearer token) or as plain RTP (ffmpeg, GStreamer).

Kept apart from `control.store.base` (which inherits `IngestStore`) so the record and its
methods are found in one place. An ingest belongs to one live session of its meeting:
it ends with it (`ended`), or when its host revokes it (`revoked`). A WHIP ingest's
token is never stored, only its SHA-256 (`token_hash`).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

INGEST_KINDS = ("whip", "rtp")
INGEST_STATES = ("active", "revoked", "ended")


@dataclass(slots=True)
class IngestRecord:
    id: str
    meeting_id: str
    live_session_id: str | None
    kind: str  # whip | rtp
    name: str  # shown to the meeting as the participant's name
    created_by: str  # the host id
    created_at: float
    expires_at: float
    token_hash: str = ""  # whip: SHA-256 hex of the bearer token
    state: str = "active"  # active | revoked | ended
    ended_at: float | None = None
    end_reason: str = ""
    # rtp: where to send and what ({"ip", "port", "video_ssrc", "audio_ssrc", "srtp"}); no keys.
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state == "active"


class IngestStore(abc.ABC):
    @abc.abstractmethod
    async def create_ingest(
        self,
        *,
        meeting_id: str,
        live_session_id: str | None,
        kind: str,
        name: str,
        created_by: str,
        expires_at: float,
        ingest_id: str | None = None,
        token_hash: str = "",
        details: dict[str, Any] | None = None,
    ) -> IngestRecord:
        """A new active ingest (NotFound when the meeting does not exist)."""

    @abc.abstractmethod
    async def get_ingest(self, ingest_id: str) -> IngestRecord | None: ...

    @abc.abstractmethod
    async def list_ingests(self, meeting_id: str, *, states: Sequence[str] | None = None) -> list[IngestRecord]:
        """Oldest first."""

    @abc.abstractmethod
    async def update_ingest(self, ingest_id: str, **changes: Any) -> IngestRecord:
        """Change any of: state, end_reason, details, token_hash. Leaving `active` stamps
        ended_at. Raises NotFound."""
