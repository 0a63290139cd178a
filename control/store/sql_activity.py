"""SqlStore's part for what accumulates: a meeting's chat, the audit log (append-only,
enforced by the schema) and the record of webhook deliveries. A mixin of `SqlStore`, like
`sql_recordings`."""

from __future__ import annotations

import json
from typing import Any

from control.store import sql_rows as rows
from control.store.base import AuditEntry, ChatMessage, NotFound, WebhookDelivery, new_id
from control.store.sql_parts import SqlParts


class ActivityMixin(SqlParts):
    # ------------------------------------------------------------------ chat

    async def append_chat(
        self, meeting_id: str, participant_id: str, name: str, text: str, ts: int, *, keep: int | None = None
    ) -> ChatMessage:
        def append() -> ChatMessage:
            cursor = self._db.execute("UPDATE meeting SET chat_seq = chat_seq + 1 WHERE id = ?", (meeting_id,))
            if cursor.rowcount == 0:
                raise NotFound("meeting", meeting_id)
            seq = self._row("SELECT chat_seq FROM meeting WHERE id = ?", (meeting_id,))[0]
            message = self._insert("chat_message", ChatMessage(new_id(), meeting_id, seq, participant_id, name, text, ts))
            if keep is not None:  # seq grows by one per message: the oldest are below seq - keep + 1
                self._db.execute("DELETE FROM chat_message WHERE meeting_id = ? AND seq <= ?", (meeting_id, seq - keep))
            return message

        return await self._run(self._write, append)

    async def list_chat(self, meeting_id: str, *, after_seq: int = 0, limit: int | None = None) -> list[ChatMessage]:
        if limit is None:
            sql = "SELECT * FROM chat_message WHERE meeting_id = ? AND seq > ? ORDER BY seq"
            found = await self._run(self._rows, sql, (meeting_id, after_seq))
        else:
            sql = "SELECT * FROM chat_message WHERE meeting_id = ? AND seq > ? ORDER BY seq DESC LIMIT ?"
            found = list(reversed(await self._run(self._rows, sql, (meeting_id, after_seq, max(limit, 0)))))
        return [rows.chat(r) for r in found]

    async def delete_chat(self, meeting_id: str) -> int:
        def delete() -> int:
            return self._db.execute("DELETE FROM chat_message WHERE meeting_id = ?", (meeting_id,)).rowcount

        return await self._run(self._write, delete)

    # ------------------------------------------------------------------ audit

    async def append_audit(
        self,
        *,
        actor_kind: str,
        actor_id: str,
        action: str,
        target_kind: str = "",
        target_id: str = "",
        detail: dict[str, Any] | None = None,
        source_ip: str = "",
    ) -> AuditEntry:
        entry = AuditEntry(
            new_id(), self._clock(), actor_kind, actor_id, action, target_kind, target_id, dict(detail or {}), source_ip
        )
        return await self._run(self._write, self._insert, "audit", entry)

    async def query_audit(
        self,
        *,
        actor_kind: str | None = None,
        actor_id: str | None = None,
        action: str | None = None,
        target_id: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        where, params = ["1 = 1"], []
        rows.add_equal(where, params, actor_kind=actor_kind, actor_id=actor_id, action=action, target_id=target_id)
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        sql = f"SELECT * FROM audit WHERE {' AND '.join(where)} ORDER BY ts DESC, rowid DESC LIMIT ?"
        found = await self._run(self._rows, sql, (*params, max(limit, 0)))
        return [rows.audit(r) for r in found]

    # ------------------------------------------------------------------ webhook deliveries

    async def record_webhook_delivery(
        self,
        *,
        customer_id: str,
        event: str,
        payload: str,
        attempt: int,
        status: str,
        response_code: int | None,
        error: str = "",
    ) -> WebhookDelivery:
        delivery = WebhookDelivery(
            new_id(), customer_id, event, payload, attempt, status, response_code, self._clock(), error,
            _meeting_of(payload),
        )  # fmt: skip
        try:
            return await self._run(self._write, self._insert, "webhook_delivery", delivery)
        except self.IntegrityError:
            raise NotFound("customer", customer_id) from None

    async def list_webhook_deliveries(self, customer_id: str, *, limit: int = 100) -> list[WebhookDelivery]:
        sql = "SELECT * FROM webhook_delivery WHERE customer_id = ? ORDER BY ts DESC, rowid DESC LIMIT ?"
        return [rows.delivery(r) for r in await self._run(self._rows, sql, (customer_id, max(limit, 0)))]


def _meeting_of(payload: str) -> str | None:
    """The meeting a webhook body is about (`data.meeting_id`), so its deletion finds it."""
    try:
        data = json.loads(payload).get("data")
    except (ValueError, AttributeError):
        return None
    meeting_id = data.get("meeting_id") if isinstance(data, dict) else None
    return meeting_id if isinstance(meeting_id, str) else None
