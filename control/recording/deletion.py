"""Deleting a deleted recording's files from the storage they were written to, until that
storage confirms it.

A recording's deletion (control.recording.archive) takes its rows at once and leaves a
`StorageDeletion` (control.store): the storage it was written with, its key prefix and
its files' keys. `attempt` deletes them (the keys, then everything under the prefix,
which also catches uploads that never reached the store); a storage that refuses or
cannot be reached leaves the deletion `pending` with the error, for the periodic retry
(control.recording.retention) and the operator (`GET /storage-deletions`, `POST
/storage-deletions/{id}/retry`). A `done` one is kept a while: a file the recorder
uploads late (`late_upload`) is deleted with the same settings.

The storage settings used are the ones the recording was written with; when the customer
still has settings naming the same storage, those (a rotated secret works). Secrets never
reach a log line, an error text or `public_view`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from common.storage import InvalidKey, StorageError, open_storage
from control.clock import iso_time
from control.recording.storage_settings import resolve_storage
from control.store.base import StorageDeletion, Store

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 300


class StorageDeletions:
    def __init__(self, store: Store, allowed_networks: tuple[str, ...] = ()) -> None:
        self._store = store
        self._allowed_networks = allowed_networks  # S3 endpoints: public addresses and these (common.netguard)

    async def attempt(self, deletion: StorageDeletion) -> StorageDeletion:
        """One try at deleting its files; the deletion as it is now (`done`, or `pending`
        with `last_error`)."""
        current = await self._store.get_customer_storage(deletion.customer_id)
        settings = resolve_storage(deletion.storage, current)
        attempts = deletion.attempts + 1
        if settings is None:
            return await self._store.update_storage_deletion(
                deletion.id, attempts=attempts, last_error="storage_not_configured: nobody knows where its files are"
            )
        try:
            storage = open_storage(settings, allowed_networks=self._allowed_networks)
            for key in deletion.keys:
                with contextlib.suppress(InvalidKey):  # a key outside the storage: nothing of ours there
                    await storage.delete(key)
            if deletion.key_prefix:
                with contextlib.suppress(InvalidKey):
                    await storage.delete_prefix(deletion.key_prefix)
        except (StorageError, ValueError) as error:
            # StorageError messages name the key or the server's code, never the secret.
            text = f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
            log.warning("recording %s: deleting its files failed (attempt %d): %s", deletion.recording_id,
                        attempts, text)  # fmt: skip
            return await self._store.update_storage_deletion(
                deletion.id, state="pending", attempts=attempts, last_error=text
            )
        log.info("recording %s: its files are gone from the storage", deletion.recording_id)
        return await self._store.update_storage_deletion(deletion.id, state="done", attempts=attempts, last_error="")

    async def retry_pending(self) -> list[StorageDeletion]:
        """Try every pending deletion once; those still pending."""
        still = []
        for deletion in await self._store.list_storage_deletions(state="pending"):
            deletion = await self.attempt(deletion)
            if deletion.state == "pending":
                still.append(deletion)
        return still

    async def late_upload(self, recording_id: str, key: str) -> StorageDeletion | None:
        """The recorder uploaded `key` of a recording that is deleted: delete it too (None
        when the recording is unknown: nobody knows its storage)."""
        deletion = await self._store.storage_deletion_of(recording_id)
        if deletion is None:
            return None
        keys = deletion.keys if key in deletion.keys else [*deletion.keys, key]
        deletion = await self._store.update_storage_deletion(deletion.id, state="pending", keys=keys)
        return await self.attempt(deletion)


def public_view(deletion: StorageDeletion) -> dict[str, Any]:
    """What the operator sees (never the storage settings)."""
    return {
        "id": deletion.id,
        "recording_id": deletion.recording_id,
        "meeting_id": deletion.meeting_id,
        "customer_id": deletion.customer_id,
        "state": deletion.state,
        "files": len(deletion.keys),
        "attempts": deletion.attempts,
        "last_error": deletion.last_error,
        "created_at": iso_time(deletion.created_at),
        "updated_at": iso_time(deletion.updated_at),
    }
