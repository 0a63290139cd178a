"""SqlStore's part for WHEP viewer tokens (issue 12, item 5): the rows behind the
signed tokens a host issues, so that a token can be listed and revoked. A mixin of
`SqlStore`, like `sql_recordings`."""

from __future__ import annotations

from control.store.base import NotFound, ViewerToken, new_id
from control.store.sql_parts import SqlParts
from control.store.sql_rows import Row


def _viewer_token(row: Row) -> ViewerToken:
    return ViewerToken(row["id"], row["meeting_id"], row["label"], row["created_at"], row["expires_at"],
                       row["revoked_at"])  # fmt: skip


class ViewerTokensMixin(SqlParts):
    async def create_viewer_token(self, meeting_id: str, label: str, expires_at: float) -> ViewerToken:
        def create() -> ViewerToken:
            if self._row("SELECT id FROM meeting WHERE id = ?", (meeting_id,)) is None:
                raise NotFound("meeting", meeting_id)
            token = ViewerToken(new_id(), meeting_id, label, self._clock(), expires_at)
            return self._insert("viewer_token", token)

        return await self._run(self._write, create)

    async def get_viewer_token(self, token_id: str) -> ViewerToken | None:
        row = await self._run(self._row, "SELECT * FROM viewer_token WHERE id = ?", (token_id,))
        return None if row is None else _viewer_token(row)

    async def list_viewer_tokens(self, meeting_id: str) -> list[ViewerToken]:
        found = await self._run(
            self._rows, "SELECT * FROM viewer_token WHERE meeting_id = ? ORDER BY created_at, rowid", (meeting_id,)
        )
        return [_viewer_token(row) for row in found]

    async def revoke_viewer_token(self, token_id: str) -> ViewerToken:
        def revoke() -> ViewerToken:
            self._db.execute(
                "UPDATE viewer_token SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (self._clock(), token_id)
            )
            row = self._row("SELECT * FROM viewer_token WHERE id = ?", (token_id,))
            if row is None:
                raise NotFound("viewer_token", token_id)
            return _viewer_token(row)

        return await self._run(self._write, revoke)
