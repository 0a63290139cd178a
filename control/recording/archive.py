"""What recording left in the customer's storage, and taking it away again.

Deleting a recording deletes its files from the customer's storage first, then its rows
(a storage that refuses leaves the rows, so the deletion can be tried again: 502); a
meeting's content removal (operator, or the meeting's deletion) stops what still runs,
then deletes every recording and transcript of the meeting.
"""

from __future__ import annotations

import contextlib
import logging

from common.storage import InvalidKey, StorageBackend, StorageError, open_storage
from control.errors import ApiError
from control.recording.service import Recordings
from control.store.base import MeetingRecord, Recording, Store

log = logging.getLogger(__name__)


class RecordingArchive:
    def __init__(self, store: Store, recordings: Recordings, allowed_networks: tuple[str, ...] = ()) -> None:
        self._store = store
        self._recordings = recordings
        self._allowed_networks = allowed_networks  # S3 endpoints: public addresses and these (common.netguard)

    async def customer_storage(self, customer_id: str) -> StorageBackend:
        """The customer's storage to read or delete in; 409 when it has none configured (the
        settings were removed after recording: set them again to reach the files)."""
        settings = await self._store.get_customer_storage(customer_id)
        if settings is None:
            raise ApiError(409, "storage_not_configured", "the account has no storage configured")
        return open_storage(settings, allowed_networks=self._allowed_networks)

    async def remove_recording(self, recording: Recording) -> int:
        """Delete the recording's files from the customer's storage, then its rows; how many
        files went. Raises ApiError 502 (rows kept, so it can be tried again) when the storage
        refuses, 409 when the customer has no storage configured. Objects under the
        recording's key prefix that never reached the store (an upload that finished late) go
        too."""
        files = await self._store.list_recording_files(recording.id)
        storage = await self.customer_storage(recording.customer_id)
        try:
            for item in files:
                with contextlib.suppress(InvalidKey):  # a key outside the storage: nothing of ours there
                    await storage.delete(item.key)
            if recording.key_prefix:
                with contextlib.suppress(InvalidKey):
                    await storage.delete_prefix(recording.key_prefix)
        except StorageError as error:
            log.warning("cannot delete the files of recording %s: %s", recording.id, error)
            raise ApiError(502, "storage_unavailable", "the storage refused the deletion; try again") from None
        await self._store.delete_recording(recording.id)
        return len(files)

    async def remove_meeting_content(self, meeting: MeetingRecord) -> dict[str, int]:
        """Operator content removal: stop what is running (through the live side), then delete
        every recording and transcript of the meeting. {recordings, files} removed."""
        recordings = await self._store.list_recordings(meeting.id)
        if any(r.state == "active" for r in recordings):
            await self._recordings.stop_everything(meeting, "the operator")
        removed = {"recordings": 0, "files": 0}
        for recording in await self._store.list_recordings(meeting.id):
            if recording.state == "active":  # the live side could not stop it: the rows go anyway
                await self._store.update_recording(recording.id, state="stopped")
            removed["files"] += await self.remove_recording(recording)
            removed["recordings"] += 1
        return removed
