"""What recording left in the customer's storage and in the store, and taking it away again.

Deleting a recording (`remove_recording`):
1. the recorder drops whatever it still holds of it (control.recording.service.Recordings.discard:
   running, spooled, being transcribed; it is told later when it is down);
2. the recording's rows go, and in the same store transaction a `StorageDeletion` is kept:
   the storage the recording was written to, its key prefix, its files' keys;
3. its files are deleted from that storage (control.recording.deletion). When the storage
   refuses or cannot be reached, the deletion stays `pending` (retried periodically and
   by the operator) and the caller reports it apart: the rows are gone either way.

A meeting's content (`remove_meeting_content`: operator content removal, the meeting's
deletion, its host's or customer's deletion) is every recording and transcript of it as
above, then what the store keeps about its people: chat, participant rows, consent
ledger, webhook deliveries about it. A removal that keeps the meeting keeps the people of
its open live session (they are in it now). The result says what went, and what is still
to go from a storage (`storage_pending`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common.storage import StorageBackend, StorageError, open_storage
from control.errors import ApiError
from control.recording.deletion import StorageDeletions, public_view
from control.recording.service import Recordings
from control.recording.storage_settings import resolve_storage
from control.store.base import MeetingRecord, Recording, StorageDeletion, Store

ALL_MEETING_STATUSES = ("scheduled", "live", "ended", "removed")


@dataclass
class Removal:
    """What a deletion took, and what its storage still holds (`storage_pending`)."""

    removed: dict[str, int] = field(default_factory=dict)
    pending: list[StorageDeletion] = field(default_factory=list)

    def add(self, other: Removal) -> None:
        for name, count in other.removed.items():
            self.removed[name] = self.removed.get(name, 0) + count
        self.pending.extend(other.pending)

    def storage_pending(self) -> list[dict[str, Any]]:
        return [public_view(deletion) for deletion in self.pending]


class RecordingArchive:
    def __init__(
        self, store: Store, recordings: Recordings, deletions: StorageDeletions, allowed_networks: tuple[str, ...] = ()
    ) -> None:
        self._store = store
        self._recordings = recordings
        self.deletions = deletions
        self._allowed_networks = allowed_networks  # S3 endpoints: public addresses and these (common.netguard)

    async def storage_for(self, recording: Recording) -> StorageBackend:
        """The storage the recording's files are in (control.recording.storage_settings.resolve_storage);
        409 when nobody knows (a recording older than this rule whose customer has no
        settings any more: set them again to reach the files), 502 when they do not open."""
        settings = resolve_storage(
            await self._store.get_recording_storage(recording.id),
            await self._store.get_customer_storage(recording.customer_id),
        )
        if settings is None:
            raise ApiError(409, "storage_not_configured", "the account has no storage configured")
        try:
            return open_storage(settings, allowed_networks=self._allowed_networks)
        except (StorageError, ValueError):
            raise ApiError(502, "storage_unavailable", "the storage cannot be opened; try again") from None

    async def remove_recording(self, recording: Recording) -> Removal:
        """Delete the recording (see the module's doc): {recordings: 1, files: n}, and its
        storage deletion when the storage still holds its files."""
        files = len(await self._store.list_recording_files(recording.id))
        await self._recordings.discard(recording.id)  # first: nothing of it is uploaded after step 3
        deletion = await self._store.retire_recording(recording.id)
        deletion = await self.deletions.attempt(deletion)
        return Removal({"recordings": 1, "files": files}, [deletion] if deletion.state == "pending" else [])

    async def remove_meeting_content(self, meeting: MeetingRecord, *, keep_live_people: bool) -> Removal:
        """Stop what runs, delete every recording and transcript of the meeting, then its
        chat, participant rows, consent ledger and webhook deliveries (of the open live
        session, participants and ledger stay when `keep_live_people`)."""
        recordings = await self._store.list_recordings(meeting.id)
        if any(r.state == "active" for r in recordings):
            await self._recordings.stop_everything(meeting, "the operator")
        removal = Removal({"recordings": 0, "files": 0})
        for recording in await self._store.list_recordings(meeting.id):
            removal.add(await self.remove_recording(recording))
        live = await self._store.get_live_session(meeting.id) if keep_live_people else None
        people = await self._store.remove_meeting_data(meeting.id, keep_live_session_id=live.id if live else None)
        removal.add(Removal(people))
        return removal

    async def remove_meetings_of(self, *, host_id: str | None = None, customer_id: str | None = None) -> Removal:
        """Before a host or a customer is deleted: every one of their meetings' content
        (the store's cascade would take the rows but leave the files)."""
        removal = Removal()
        meetings = await self._store.list_meetings(host_id=host_id, customer_id=customer_id, statuses=ALL_MEETING_STATUSES)
        for meeting in meetings:
            removal.add(await self.remove_meeting_content(meeting, keep_live_people=False))
        return removal
