"""The baseline: the schema as the hand-rolled SQLite migrations 1-7 left it
(`control.store.sqlite_legacy`), for SQLite and PostgreSQL alike. A SQLite file of those
migrations is stamped at this revision (`control.store.schema`), not rebuilt.

Types are spelled so that SQLite gets the column types it always had (TEXT, REAL,
INTEGER) and PostgreSQL gets exact equivalents: DOUBLE PRECISION for times (its REAL is
4 bytes), BIGINT for integers (chat timestamps are milliseconds). PostgreSQL has no
`rowid`: each table gets an identity column of that name, so the store's "in insertion
order" ties (`ORDER BY created_at, rowid`) break the same way on both.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = None
branch_labels = None
depends_on = None

TEXT = sa.Text()
REAL = sa.Double().with_variant(sa.REAL(), "sqlite")
INT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def col(name: str, kind: sa.types.TypeEngine, *args, default: str | None = None, null: bool = False, **kw) -> sa.Column:
    server_default = sa.text(default) if default is not None else None
    return sa.Column(name, kind, *args, nullable=null, server_default=server_default, **kw)


def fk(target: str, on_delete: str = "CASCADE") -> sa.ForeignKey:
    return sa.ForeignKey(target, ondelete=on_delete)


def table(name: str, *items) -> None:
    if _postgres():
        items = (*items, sa.Column("rowid", sa.BigInteger, sa.Identity(), nullable=False))
    op.create_table(name, *items)


def index(name: str, table_name: str, columns: list[str], *, where: str | None = None, unique: bool = False) -> None:
    condition = sa.text(where) if where else None
    op.create_index(name, table_name, columns, unique=unique, sqlite_where=condition, postgresql_where=condition)


def upgrade() -> None:
    _accounts()
    _meetings()
    _recordings()
    _webhooks_and_audit()
    _ingests_and_viewers()


def _accounts() -> None:
    table("customer",
          col("id", TEXT, primary_key=True),
          col("name", TEXT),
          col("status", TEXT, default="'active'"),
          col("api_key_hash", TEXT, default="''"),
          col("limits", TEXT, default="'{}'"),
          col("webhook_url", TEXT, default="''"),
          col("webhook_secret", TEXT, default="''"),
          col("created_at", REAL),
          sa.CheckConstraint("status IN ('active', 'suspended')", name="customer_status"))  # fmt: skip
    index("customer_api_key", "customer", ["api_key_hash"], where="api_key_hash != ''", unique=True)
    table("host",
          col("id", TEXT, primary_key=True),
          col("customer_id", TEXT, fk("customer.id")),
          col("email", TEXT),
          col("name", TEXT),
          col("password_hash", TEXT),
          col("status", TEXT, default="'active'"),
          col("created_at", REAL),
          sa.UniqueConstraint("email", name="host_email"),
          sa.CheckConstraint("status IN ('active', 'suspended')", name="host_status"))  # fmt: skip
    index("host_customer", "host", ["customer_id"])
    # A sign-in's last use (written at most once a minute): idle expiry holds on every node.
    table("host_session",
          col("id", TEXT, primary_key=True),
          col("host_id", TEXT, fk("host.id")),
          col("created_at", REAL),
          col("ended_at", REAL, null=True),
          col("end_reason", TEXT, null=True),
          col("last_used_at", REAL, null=True))  # fmt: skip
    index("host_session_active", "host_session", ["host_id"], where="ended_at IS NULL")
    # Settings with the storage secret: the API never returns them.
    table("customer_storage",
          col("customer_id", TEXT, fk("customer.id"), primary_key=True),
          col("settings", TEXT),
          col("updated_at", REAL))  # fmt: skip


def _meetings() -> None:
    table("meeting",
          col("id", TEXT, primary_key=True),
          col("meeting_number", TEXT),
          col("host_id", TEXT, fk("host.id")),
          col("customer_id", TEXT, fk("customer.id")),
          col("title", TEXT),
          col("passcode", TEXT),
          col("start_time", REAL, null=True),
          col("duration_minutes", INT, null=True),
          col("waiting_room", INT, default="1"),
          col("status", TEXT, default="'scheduled'"),
          col("locked", INT, default="0"),
          col("chat_seq", INT, default="0"),
          col("created_at", REAL),
          col("last_n", INT, null=True),
          sa.CheckConstraint("length(meeting_number) = 11", name="meeting_number_length"),
          sa.CheckConstraint("status IN ('scheduled', 'live', 'ended', 'removed')", name="meeting_status"),
          sa.CheckConstraint("last_n IS NULL OR last_n >= 1", name="meeting_last_n"))  # fmt: skip
    # Unique while the meeting exists: a removed meeting frees its number.
    index("meeting_number_held", "meeting", ["meeting_number"], where="status != 'removed'", unique=True)
    index("meeting_host", "meeting", ["host_id"])
    index("meeting_customer", "meeting", ["customer_id"])
    table("live_session",
          col("id", TEXT, primary_key=True),
          col("meeting_id", TEXT, fk("meeting.id")),
          col("host_id", TEXT),
          col("customer_id", TEXT),
          col("started_at", REAL),
          col("ended_at", REAL, null=True),
          col("end_reason", TEXT, null=True))  # fmt: skip
    # One open session per meeting, whatever the store's checks.
    index("live_session_open", "live_session", ["meeting_id"], where="ended_at IS NULL", unique=True)
    index("live_session_host", "live_session", ["host_id"], where="ended_at IS NULL")
    table("participant",
          col("id", TEXT, primary_key=True),
          col("meeting_id", TEXT, fk("meeting.id")),
          col("live_session_id", TEXT, fk("live_session.id", "SET NULL"), null=True),
          col("name", TEXT),
          col("role", TEXT),
          col("state", TEXT),
          col("joined_at", REAL),
          col("left_at", REAL, null=True),
          col("removed", INT, default="0"),
          sa.CheckConstraint("role IN ('host', 'participant')", name="participant_role"),
          sa.CheckConstraint("state IN ('waiting', 'admitted', 'denied', 'removed', 'left')",
                             name="participant_state"))  # fmt: skip
    index("participant_meeting", "participant", ["meeting_id", "state"])
    index("participant_joined", "participant", ["joined_at"])
    table("chat_message",
          col("id", TEXT, primary_key=True),
          col("meeting_id", TEXT, fk("meeting.id")),
          col("seq", INT),
          col("participant_id", TEXT),
          col("name", TEXT),
          col("text", TEXT),
          col("ts", INT),
          sa.UniqueConstraint("meeting_id", "seq", name="chat_message_seq"))  # fmt: skip


def _recordings() -> None:
    table("recording",
          col("id", TEXT, primary_key=True),
          col("meeting_id", TEXT, fk("meeting.id")),
          col("live_session_id", TEXT, fk("live_session.id", "SET NULL"), null=True),
          col("customer_id", TEXT, fk("customer.id")),
          col("kind", TEXT),
          col("state", TEXT, default="'active'"),
          col("started_at", REAL),
          col("stopped_at", REAL, null=True),
          col("started_by", TEXT, default="''"),
          col("error", TEXT, default="''"),
          col("key_prefix", TEXT, default="''"),
          # The storage it was written to, with its secret (never handed out).
          col("storage", TEXT, default="''"),
          sa.CheckConstraint("kind IN ('recording', 'transcription')", name="recording_kind"),
          sa.CheckConstraint("state IN ('active', 'stopped', 'failed')", name="recording_state"))  # fmt: skip
    index("recording_meeting", "recording", ["meeting_id", "started_at"])
    # One active run per meeting and kind, whatever the store's checks.
    index("recording_active", "recording", ["meeting_id", "kind"], where="state = 'active'", unique=True)
    table("recording_file",
          col("id", TEXT, primary_key=True),
          col("recording_id", TEXT, fk("recording.id")),
          col("key", TEXT),
          col("kind", TEXT),
          col("track_id", TEXT, default="''"),
          col("size", INT, default="0"),
          col("sha256", TEXT, default="''"),
          col("content_type", TEXT, default="''"),
          col("start", REAL, null=True),
          col("end", REAL, null=True),
          col("uploaded_at", REAL),
          sa.UniqueConstraint("recording_id", "key", name="recording_file_key"))  # fmt: skip
    # recording_id has no foreign key on purpose: the ledger outlives a deleted recording.
    table("consent",
          col("id", TEXT, primary_key=True),
          col("meeting_id", TEXT, fk("meeting.id")),
          col("live_session_id", TEXT, fk("live_session.id", "SET NULL"), null=True),
          col("participant_id", TEXT),
          col("name", TEXT),
          col("notified_at", REAL),
          col("channels", TEXT, default="'[]'"),
          col("decision", TEXT, default="'pending'"),
          col("decided_at", REAL, null=True),
          col("recording_id", TEXT, null=True),
          sa.CheckConstraint("decision IN ('pending', 'continued', 'left')", name="consent_decision"))  # fmt: skip
    index("consent_meeting", "consent", ["meeting_id", "notified_at"])
    # No foreign keys on purpose: it outlives the recording, its meeting and its customer.
    table("storage_deletion",
          col("id", TEXT, primary_key=True),
          col("recording_id", TEXT),
          col("customer_id", TEXT),
          col("meeting_id", TEXT),
          col("storage", TEXT, null=True),
          col("key_prefix", TEXT, default="''"),
          col("keys", TEXT, default="'[]'"),
          col("state", TEXT, default="'pending'"),
          col("attempts", INT, default="0"),
          col("last_error", TEXT, default="''"),
          col("created_at", REAL),
          col("updated_at", REAL),
          sa.CheckConstraint("state IN ('pending', 'done')", name="storage_deletion_state_check"))  # fmt: skip
    index("storage_deletion_recording", "storage_deletion", ["recording_id"])
    index("storage_deletion_state", "storage_deletion", ["state", "updated_at"])


def _webhooks_and_audit() -> None:
    table("audit",
          col("id", TEXT, primary_key=True),
          col("ts", REAL),
          col("actor_kind", TEXT),
          col("actor_id", TEXT),
          col("action", TEXT),
          col("target_kind", TEXT),
          col("target_id", TEXT),
          col("detail", TEXT),
          col("source_ip", TEXT))  # fmt: skip
    index("audit_ts", "audit", ["ts"])
    _audit_append_only()
    table("webhook_delivery",
          col("id", TEXT, primary_key=True),
          col("customer_id", TEXT, fk("customer.id")),
          col("event", TEXT),
          col("payload", TEXT),
          col("attempt", INT),
          col("status", TEXT),
          col("response_code", INT, null=True),
          col("error", TEXT, default="''"),
          col("ts", REAL),
          col("meeting_id", TEXT, null=True))  # fmt: skip
    index("webhook_delivery_customer", "webhook_delivery", ["customer_id", "ts"])
    index("webhook_delivery_meeting", "webhook_delivery", ["meeting_id"], where="meeting_id IS NOT NULL")
    index("webhook_delivery_ts", "webhook_delivery", ["ts"])


def _audit_append_only() -> None:
    """Append-only, enforced by the database itself (each has its own trigger language)."""
    if _postgres():
        op.execute("CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS"
                   " $$ BEGIN RAISE EXCEPTION 'audit is append-only'; END $$")  # fmt: skip
        for verb in ("update", "delete"):
            op.execute(f"CREATE TRIGGER audit_no_{verb} BEFORE {verb.upper()} ON audit"
                       " FOR EACH ROW EXECUTE FUNCTION audit_append_only()")  # fmt: skip
        return
    for verb in ("update", "delete"):
        op.execute(f"CREATE TRIGGER audit_no_{verb} BEFORE {verb.upper()} ON audit"
                   " BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END")  # fmt: skip


def _ingests_and_viewers() -> None:
    # A WHIP token is kept only as its SHA-256.
    table("ingest",
          col("id", TEXT, primary_key=True),
          col("meeting_id", TEXT, fk("meeting.id")),
          col("live_session_id", TEXT, fk("live_session.id", "SET NULL"), null=True),
          col("kind", TEXT),
          col("name", TEXT),
          col("created_by", TEXT),
          col("created_at", REAL),
          col("expires_at", REAL),
          col("token_hash", TEXT, default="''"),
          col("state", TEXT, default="'active'"),
          col("ended_at", REAL, null=True),
          col("end_reason", TEXT, default="''"),
          col("details", TEXT, default="'{}'"),
          sa.CheckConstraint("kind IN ('whip', 'rtp')", name="ingest_kind"),
          sa.CheckConstraint("state IN ('active', 'revoked', 'ended')", name="ingest_state"))  # fmt: skip
    index("ingest_meeting", "ingest", ["meeting_id", "state"])
    table("viewer_token",
          col("id", TEXT, primary_key=True),
          col("meeting_id", TEXT, fk("meeting.id")),
          col("label", TEXT),
          col("created_at", REAL),
          col("expires_at", REAL),
          col("revoked_at", REAL, null=True))  # fmt: skip
    index("viewer_token_meeting", "viewer_token", ["meeting_id", "created_at"])


def downgrade() -> None:
    raise NotImplementedError("the baseline is not undone: restore the backup taken before migrating")
