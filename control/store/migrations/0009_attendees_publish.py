"""Webinar meetings (issue 16 item 3): the meeting setting `attendees_publish`. True (every
meeting so far): everyone admitted may publish. False: participants join receive-only as
attendees and publish once the host promotes them (control.meeting.roles)."""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The baseline's INT (control/store/migrations/0007_baseline.py): booleans are 0/1 integers
# in both databases, as `waiting_room` and `locked` are.
INT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("meeting", sa.Column("attendees_publish", INT, nullable=False, server_default=sa.text("1")))


def downgrade() -> None:
    op.drop_column("meeting", "attendees_publish")
