"""SqlStore's part for ingests (`control.store.ingests`): a mixin of `SqlStore`,
kept apart like the recordings' part."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from control.store import sql_rows as rows
from control.store.base import NotFound, new_id
from control.store.ingests import INGEST_KINDS, INGEST_STATES, IngestRecord
from control.store.sql_parts import SqlParts
from control.store.sql_rows import Row

INGEST_FIELDS = {"state", "end_reason", "details", "token_hash"}


def ingest_row(row: Row) -> IngestRecord:
    values = {f.name: row[f.name] for f in fields(IngestRecord) if f.name != "details"}
    return IngestRecord(**values, details=json.loads(row["details"]))


class IngestsMixin(SqlParts):
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
        if kind not in INGEST_KINDS:
            raise ValueError(f"kind: one of {INGEST_KINDS}")
        record = IngestRecord(
            id=ingest_id or new_id(), meeting_id=meeting_id, live_session_id=live_session_id, kind=kind, name=name,
            created_by=created_by, created_at=self._clock(), expires_at=expires_at, token_hash=token_hash,
            details=dict(details or {}),
        )  # fmt: skip

        def insert() -> IngestRecord:
            self._require("meeting", meeting_id)
            return self._insert("ingest", record)

        return await self._run(self._write, insert)

    async def get_ingest(self, ingest_id: str) -> IngestRecord | None:
        return await self._run(self._get, "ingest", ingest_id, ingest_row)

    async def list_ingests(self, meeting_id: str, *, states: Sequence[str] | None = None) -> list[IngestRecord]:
        where, params = ["meeting_id = ?"], [meeting_id]
        if states is not None:
            where.append(rows.is_in("state", states))
            params.extend(states)
        sql = f"SELECT * FROM ingest WHERE {' AND '.join(where)} ORDER BY created_at, id"
        return [ingest_row(row) for row in await self._run(self._rows, sql, params)]

    async def update_ingest(self, ingest_id: str, **changes: Any) -> IngestRecord:
        state = changes.get("state")
        if state is not None and state not in INGEST_STATES:
            raise ValueError(f"state: one of {INGEST_STATES}")

        def update() -> IngestRecord:
            self._require("ingest", ingest_id)
            if state not in (None, "active"):
                self._stamp_unset("ingest", ingest_id, "ended_at", changes)
            return self._update("ingest", ingest_id, INGEST_FIELDS | {"ended_at"}, changes, ingest_row)

        try:
            return await self._run(self._write, update)
        except NotFound:
            raise NotFound("ingest", ingest_id) from None
