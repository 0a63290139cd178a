"""SqlStore's part for recording (issue 5): customer storage settings, recordings, their
uploaded files and the consent ledger. A mixin of `SqlStore` (it uses the plumbing
listed below and its clock), kept apart so neither module grows past a readable size.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from control.store import sql_rows as rows
from control.store.base import (
    CONSENT_DECIDED,
    RECORDING_ENDED_STATES,
    ConsentEntry,
    NotFound,
    Recording,
    RecordingActive,
    RecordingFile,
    new_id,
)
from control.store.sql_parts import SqlParts

RECORDING_KINDS = ("recording", "transcription")
CONSENT_DECISIONS = ("pending", *CONSENT_DECIDED)


class RecordingsMixin(SqlParts):
    # ------------------------------------------------------------------ customer storage

    async def set_customer_storage(self, customer_id: str, settings: dict[str, Any]) -> None:
        text = json.dumps(dict(settings), sort_keys=True)

        def put() -> None:
            self._require("customer", customer_id)
            self._db.execute(
                "INSERT INTO customer_storage (customer_id, settings, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (customer_id) DO UPDATE SET settings = excluded.settings,"
                " updated_at = excluded.updated_at",
                (customer_id, text, self._clock()),
            )

        await self._run(self._write, put)

    async def get_customer_storage(self, customer_id: str) -> dict[str, Any] | None:
        row = await self._run(self._row, "SELECT settings FROM customer_storage WHERE customer_id = ?", (customer_id,))
        return json.loads(row["settings"]) if row else None

    async def delete_customer_storage(self, customer_id: str) -> bool:
        def delete() -> bool:
            sql = "DELETE FROM customer_storage WHERE customer_id = ?"
            return self._db.execute(sql, (customer_id,)).rowcount > 0

        return await self._run(self._write, delete)

    # ------------------------------------------------------------------ recordings

    async def create_recording(
        self,
        *,
        meeting_id: str,
        customer_id: str,
        kind: str,
        started_by: str,
        live_session_id: str | None = None,
        key_prefix: str = "",
        started_at: float | None = None,
        recording_id: str | None = None,
        storage: dict[str, Any] | None = None,
    ) -> Recording:
        if kind not in RECORDING_KINDS:
            raise ValueError(f"recording kind must be one of {RECORDING_KINDS}, not {kind!r}")
        recording = Recording(
            id=recording_id or new_id(),
            meeting_id=meeting_id,
            live_session_id=live_session_id,
            customer_id=customer_id,
            kind=kind,
            state="active",
            started_at=self._clock() if started_at is None else started_at,
            started_by=started_by,
            key_prefix=key_prefix,
        )

        def insert() -> Recording:
            self._require("meeting", meeting_id)
            active = self._row(
                "SELECT * FROM recording WHERE meeting_id = ? AND kind = ? AND state = 'active'", (meeting_id, kind)
            )
            if active is not None:
                raise RecordingActive(rows.recording(active))
            try:
                self._insert("recording", recording)
            except self.IntegrityError as exc:
                raise NotFound("parent of recording", str(exc)) from None
            if storage:  # not a field of Recording: the secret never rides in a record
                sql = "UPDATE recording SET storage = ? WHERE id = ?"
                self._db.execute(sql, (json.dumps(dict(storage), sort_keys=True), recording.id))
            return recording

        return await self._run(self._write, insert)

    async def get_recording_storage(self, recording_id: str) -> dict[str, Any] | None:
        row = await self._run(self._row, "SELECT storage FROM recording WHERE id = ?", (recording_id,))
        return json.loads(row["storage"]) if row and row["storage"] else None

    async def update_recording(self, recording_id: str, **changes: Any) -> Recording:
        state = changes.get("state")
        if state is not None and state not in ("active", *RECORDING_ENDED_STATES):
            raise ValueError(f"unknown recording state {state!r}")

        def update() -> Recording:
            if state in RECORDING_ENDED_STATES:
                self._stamp_unset("recording", recording_id, "stopped_at", changes)
            # Read before: after a refused statement PostgreSQL reads nothing more in the transaction.
            before = self._get("recording", recording_id, rows.recording)
            try:
                return self._update("recording", recording_id, rows.RECORDING_FIELDS, changes, rows.recording)
            except self.IntegrityError:
                # Back to `active` while another run of that kind is active.
                raise RecordingActive(before) from None

        return await self._run(self._write, update)

    async def get_recording(self, recording_id: str) -> Recording | None:
        return await self._run(self._get, "recording", recording_id, rows.recording)

    async def list_recordings(self, meeting_id: str, *, kind: str | None = None) -> list[Recording]:
        where, params = ["meeting_id = ?"], [meeting_id]
        rows.add_equal(where, params, kind=kind)
        sql = f"SELECT * FROM recording WHERE {' AND '.join(where)} ORDER BY started_at, rowid"
        found = await self._run(self._rows, sql, params)
        return [rows.recording(r) for r in found]

    async def active_recordings(self) -> list[Recording]:
        sql = "SELECT * FROM recording WHERE state = 'active' ORDER BY started_at, rowid"
        return [rows.recording(r) for r in await self._run(self._rows, sql)]

    async def delete_recording(self, recording_id: str) -> None:
        await self._run(self._write, self._delete, "recording", recording_id)

    # ------------------------------------------------------------------ recording files

    async def add_recording_file(
        self,
        recording_id: str,
        *,
        key: str,
        kind: str,
        size: int = 0,
        sha256: str = "",
        content_type: str = "",
        track_id: str = "",
        start: float | None = None,
        end: float | None = None,
    ) -> RecordingFile:
        def add() -> RecordingFile:
            self._require("recording", recording_id)
            old = self._row('SELECT id FROM recording_file WHERE recording_id = ? AND "key" = ?', (recording_id, key))
            record = RecordingFile(
                id=old["id"] if old else new_id(),
                recording_id=recording_id,
                key=key,
                kind=kind,
                track_id=track_id or "",
                size=int(size),
                sha256=sha256,
                content_type=content_type,
                start=start,
                end=end,
                uploaded_at=self._clock(),
            )
            if old is not None:
                # A re-upload (the recorder restarted and rescanned its spool): same row.
                self._db.execute("DELETE FROM recording_file WHERE id = ?", (old["id"],))
            return self._insert("recording_file", record)

        return await self._run(self._write, add)

    async def get_recording_file(self, file_id: str) -> RecordingFile | None:
        return await self._run(self._get, "recording_file", file_id, rows.recording_file)

    async def list_recording_files(self, recording_id: str) -> list[RecordingFile]:
        sql = "SELECT * FROM recording_file WHERE recording_id = ? ORDER BY uploaded_at, rowid"
        return [rows.recording_file(r) for r in await self._run(self._rows, sql, (recording_id,))]

    # ------------------------------------------------------------------ consent ledger

    async def add_consent(
        self,
        *,
        meeting_id: str,
        participant_id: str,
        name: str,
        live_session_id: str | None = None,
        recording_id: str | None = None,
        channels: Sequence[str] = (),
        notified_at: float | None = None,
        decision: str = "pending",
    ) -> ConsentEntry:
        if decision not in CONSENT_DECISIONS:
            raise ValueError(f"unknown consent decision {decision!r}")
        now = self._clock()
        entry = ConsentEntry(
            id=new_id(),
            meeting_id=meeting_id,
            live_session_id=live_session_id,
            participant_id=participant_id,
            name=name,
            notified_at=now if notified_at is None else notified_at,
            channels=list(channels),
            decision=decision,
            decided_at=now if decision in CONSENT_DECIDED else None,
            recording_id=recording_id,
        )

        def insert() -> ConsentEntry:
            self._require("meeting", meeting_id)
            return self._insert("consent", entry)

        return await self._run(self._write, insert)

    async def update_consent(self, consent_id: str, **changes: Any) -> ConsentEntry:
        decision = changes.get("decision")
        if decision is not None and decision not in CONSENT_DECISIONS:
            raise ValueError(f"unknown consent decision {decision!r}")
        if "channels" in changes:
            changes["channels"] = list(changes["channels"])

        def update() -> ConsentEntry:
            if decision in CONSENT_DECIDED:
                self._stamp_unset("consent", consent_id, "decided_at", changes)
            return self._update("consent", consent_id, rows.CONSENT_FIELDS, changes, rows.consent)

        return await self._run(self._write, update)

    async def list_consent(self, meeting_id: str, live_session_id: str | None = None) -> list[ConsentEntry]:
        where, params = ["meeting_id = ?"], [meeting_id]
        rows.add_equal(where, params, live_session_id=live_session_id)
        sql = f"SELECT * FROM consent WHERE {' AND '.join(where)} ORDER BY notified_at, rowid"
        found = await self._run(self._rows, sql, params)
        return [rows.consent(r) for r in found]
