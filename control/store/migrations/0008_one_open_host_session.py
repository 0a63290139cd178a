"""One open sign-in per host, enforced by the database (issue 13): the store's login
policy (replace or refuse) then holds across nodes too. Sign-ins left open beside a newer
one (none should be) are ended first, as replaced."""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OPEN = sa.text("ended_at IS NULL")


def upgrade() -> None:
    op.execute(
        "UPDATE host_session SET ended_at = created_at, end_reason = 'signed_in_elsewhere'"
        " WHERE ended_at IS NULL AND EXISTS (SELECT 1 FROM host_session newer"
        " WHERE newer.host_id = host_session.host_id AND newer.ended_at IS NULL"
        " AND (newer.created_at > host_session.created_at"
        " OR (newer.created_at = host_session.created_at AND newer.id > host_session.id)))"
    )
    op.drop_index("host_session_active", "host_session")
    op.create_index("host_session_open", "host_session", ["host_id"], unique=True,
                    sqlite_where=OPEN, postgresql_where=OPEN)  # fmt: skip


def downgrade() -> None:
    op.drop_index("host_session_open", "host_session")
    op.create_index("host_session_active", "host_session", ["host_id"], sqlite_where=OPEN, postgresql_where=OPEN)
