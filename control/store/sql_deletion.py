"""SqlStore's part for deletion and retention (issue 10): what a deleted recording is to
take from its storage (`storage_deletion`), what a meeting's deletion takes from the store,
and the periodic purges. A mixin of `SqlStore`, like `sql_recordings`.
"""

from __future__ import annotations

import json
from typing import Any

from control.store import sql_rows as rows
from control.store.base import STORAGE_DELETION_STATES, NotFound, StorageDeletion, new_id
from control.store.sql_parts import SqlParts

# The open live sessions: their participant rows and ledger are never purged.
_OPEN_SESSIONS = "SELECT id FROM live_session WHERE ended_at IS NULL"


class DeletionMixin(SqlParts):
    # ------------------------------------------------------------------ deleted recordings

    async def retire_recording(self, recording_id: str) -> StorageDeletion:
        def retire() -> StorageDeletion:
            row = self._row("SELECT * FROM recording WHERE id = ?", (recording_id,))
            if row is None:
                raise NotFound("recording", recording_id)
            settings = row["storage"]
            if not settings:  # made before recordings kept theirs: the customer's, now
                current = self._row(
                    "SELECT settings FROM customer_storage WHERE customer_id = ?", (row["customer_id"],)
                )
                settings = current["settings"] if current else ""
            keys = [r["key"] for r in self._rows(
                'SELECT "key" FROM recording_file WHERE recording_id = ? ORDER BY uploaded_at, rowid', (recording_id,)
            )]  # fmt: skip
            now = self._clock()
            deletion = StorageDeletion(
                id=new_id(),
                recording_id=recording_id,
                customer_id=row["customer_id"],
                meeting_id=row["meeting_id"],
                key_prefix=row["key_prefix"],
                keys=keys,
                created_at=now,
                updated_at=now,
                storage=json.loads(settings) if settings else None,
            )
            self._db.execute("DELETE FROM recording WHERE id = ?", (recording_id,))
            return self._insert("storage_deletion", deletion)

        return await self._run(self._write, retire)

    async def get_storage_deletion(self, deletion_id: str) -> StorageDeletion | None:
        return await self._run(self._get, "storage_deletion", deletion_id, rows.storage_deletion)

    async def storage_deletion_of(self, recording_id: str) -> StorageDeletion | None:
        sql = "SELECT * FROM storage_deletion WHERE recording_id = ? ORDER BY created_at DESC, rowid DESC"
        row = await self._run(self._row, sql, (recording_id,))
        return rows.storage_deletion(row) if row else None

    async def list_storage_deletions(
        self, *, state: str | None = None, customer_id: str | None = None, limit: int = 1000
    ) -> list[StorageDeletion]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        rows.add_equal(where, params, state=state, customer_id=customer_id)
        sql = f"SELECT * FROM storage_deletion WHERE {' AND '.join(where)} ORDER BY created_at, rowid LIMIT ?"
        return [rows.storage_deletion(r) for r in await self._run(self._rows, sql, (*params, max(limit, 0)))]

    async def update_storage_deletion(self, deletion_id: str, **changes: Any) -> StorageDeletion:
        state = changes.get("state")
        if state is not None and state not in STORAGE_DELETION_STATES:
            raise ValueError(f"unknown storage deletion state {state!r}")
        if "keys" in changes:
            changes["keys"] = list(changes["keys"])
        changes["updated_at"] = self._clock()

        def update() -> StorageDeletion:
            return self._update(
                "storage_deletion", deletion_id, rows.STORAGE_DELETION_FIELDS, changes, rows.storage_deletion
            )

        return await self._run(self._write, update)

    async def forget_storage_deletion(self, deletion_id: str) -> bool:
        def forget() -> bool:
            return self._db.execute("DELETE FROM storage_deletion WHERE id = ?", (deletion_id,)).rowcount > 0

        return await self._run(self._write, forget)

    # ------------------------------------------------------------------ a meeting's people

    async def remove_meeting_data(self, meeting_id: str, *, keep_live_session_id: str | None = None) -> dict[str, int]:
        def remove() -> dict[str, int]:
            db = self._db
            kept = "" if keep_live_session_id is None else " AND live_session_id IS DISTINCT FROM ?"
            extra: tuple[Any, ...] = () if keep_live_session_id is None else (keep_live_session_id,)
            return {
                "chat_messages": db.execute("DELETE FROM chat_message WHERE meeting_id = ?", (meeting_id,)).rowcount,
                "participants": db.execute(
                    f"DELETE FROM participant WHERE meeting_id = ?{kept}", (meeting_id, *extra)
                ).rowcount,
                "consent_entries": db.execute(
                    f"DELETE FROM consent WHERE meeting_id = ?{kept}", (meeting_id, *extra)
                ).rowcount,
                "webhook_deliveries": db.execute(
                    "DELETE FROM webhook_delivery WHERE meeting_id = ?", (meeting_id,)
                ).rowcount,
            }

        return await self._run(self._write, remove)

    # ------------------------------------------------------------------ retention

    async def purge_webhook_deliveries(self, before: float) -> int:
        def purge() -> int:
            return self._db.execute("DELETE FROM webhook_delivery WHERE ts < ?", (before,)).rowcount

        return await self._run(self._write, purge)

    async def purge_participants(self, before: float) -> int:
        def purge() -> int:
            sql = (
                "DELETE FROM participant WHERE joined_at < ? AND"
                f" ((live_session_id IS NOT NULL AND live_session_id NOT IN ({_OPEN_SESSIONS}))"
                # Joined before the host started: kept while the meeting is live.
                "  OR (live_session_id IS NULL AND meeting_id NOT IN (SELECT id FROM meeting WHERE status = 'live')))"
            )
            return self._db.execute(sql, (before,)).rowcount

        return await self._run(self._write, purge)

    async def purge_storage_deletions(self, before: float) -> int:
        def purge() -> int:
            sql = "DELETE FROM storage_deletion WHERE state = 'done' AND updated_at < ?"
            return self._db.execute(sql, (before,)).rowcount

        return await self._run(self._write, purge)
