"""The SQLite schema as it was built before Alembic: the hand-rolled migrations 1-7,
recorded in a `schema_version` table. Frozen: they only bring a file of an older release
to the baseline (revision 0007 of `control/store/migrations/`, the same schema), where it
is stamped. Every change of the schema since is an Alembic revision there."""

from __future__ import annotations

LEGACY_MIGRATIONS: list[list[str]] = [
    # 1: the model of docs/control-plane-reference.md
    [
        """CREATE TABLE customer (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
            api_key_hash TEXT NOT NULL DEFAULT '',
            limits TEXT NOT NULL DEFAULT '{}',
            webhook_url TEXT NOT NULL DEFAULT '',
            webhook_secret TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL)""",
        "CREATE UNIQUE INDEX customer_api_key ON customer (api_key_hash) WHERE api_key_hash != ''",
        """CREATE TABLE host (
            id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL REFERENCES customer (id) ON DELETE CASCADE,
            email TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
            created_at REAL NOT NULL)""",
        "CREATE INDEX host_customer ON host (customer_id)",
        """CREATE TABLE host_session (
            id TEXT PRIMARY KEY,
            host_id TEXT NOT NULL REFERENCES host (id) ON DELETE CASCADE,
            created_at REAL NOT NULL,
            ended_at REAL,
            end_reason TEXT)""",
        "CREATE INDEX host_session_active ON host_session (host_id) WHERE ended_at IS NULL",
        """CREATE TABLE meeting (
            id TEXT PRIMARY KEY,
            meeting_number TEXT NOT NULL CHECK (length(meeting_number) = 11),
            host_id TEXT NOT NULL REFERENCES host (id) ON DELETE CASCADE,
            customer_id TEXT NOT NULL REFERENCES customer (id) ON DELETE CASCADE,
            title TEXT NOT NULL,
            passcode TEXT NOT NULL,
            start_time REAL,
            duration_minutes INTEGER,
            waiting_room INTEGER NOT NULL DEFAULT 1,
            status TEXT NOT NULL DEFAULT 'scheduled'
                CHECK (status IN ('scheduled', 'live', 'ended', 'removed')),
            locked INTEGER NOT NULL DEFAULT 0,
            chat_seq INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL)""",
        # Unique while the meeting exists: a removed meeting frees its number.
        "CREATE UNIQUE INDEX meeting_number_held ON meeting (meeting_number) WHERE status != 'removed'",
        "CREATE INDEX meeting_host ON meeting (host_id)",
        "CREATE INDEX meeting_customer ON meeting (customer_id)",
        """CREATE TABLE live_session (
            id TEXT PRIMARY KEY,
            meeting_id TEXT NOT NULL REFERENCES meeting (id) ON DELETE CASCADE,
            host_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL,
            end_reason TEXT)""",
        # A safety net under start_live_session's check: one open session per meeting.
        "CREATE UNIQUE INDEX live_session_open ON live_session (meeting_id) WHERE ended_at IS NULL",
        "CREATE INDEX live_session_host ON live_session (host_id) WHERE ended_at IS NULL",
        """CREATE TABLE participant (
            id TEXT PRIMARY KEY,
            meeting_id TEXT NOT NULL REFERENCES meeting (id) ON DELETE CASCADE,
            live_session_id TEXT REFERENCES live_session (id) ON DELETE SET NULL,
            name TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('host', 'participant')),
            state TEXT NOT NULL CHECK (state IN ('waiting', 'admitted', 'denied', 'removed', 'left')),
            joined_at REAL NOT NULL,
            left_at REAL,
            removed INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX participant_meeting ON participant (meeting_id, state)",
        """CREATE TABLE chat_message (
            id TEXT PRIMARY KEY,
            meeting_id TEXT NOT NULL REFERENCES meeting (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            participant_id TEXT NOT NULL,
            name TEXT NOT NULL,
            text TEXT NOT NULL,
            ts INTEGER NOT NULL,
            UNIQUE (meeting_id, seq))""",
        """CREATE TABLE audit (
            id TEXT PRIMARY KEY,
            ts REAL NOT NULL,
            actor_kind TEXT NOT NULL,
            actor_id TEXT NOT NULL,
            action TEXT NOT NULL,
            target_kind TEXT NOT NULL,
            target_id TEXT NOT NULL,
            detail TEXT NOT NULL,
            source_ip TEXT NOT NULL)""",
        "CREATE INDEX audit_ts ON audit (ts)",
        # Append-only, enforced by the database itself.
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END",
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END",
        """CREATE TABLE webhook_delivery (
            id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL REFERENCES customer (id) ON DELETE CASCADE,
            event TEXT NOT NULL,
            payload TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            status TEXT NOT NULL,
            response_code INTEGER,
            error TEXT NOT NULL DEFAULT '',
            ts REAL NOT NULL)""",
        "CREATE INDEX webhook_delivery_customer ON webhook_delivery (customer_id, ts)",
    ],
    # 2: recording and transcription (issue 5): customer storage, recordings, their files,
    # the consent ledger
    [
        # The settings include the storage secret: this file is 0600 and the API never
        # returns it.
        """CREATE TABLE customer_storage (
            customer_id TEXT PRIMARY KEY REFERENCES customer (id) ON DELETE CASCADE,
            settings TEXT NOT NULL,
            updated_at REAL NOT NULL)""",
        """CREATE TABLE recording (
            id TEXT PRIMARY KEY,
            meeting_id TEXT NOT NULL REFERENCES meeting (id) ON DELETE CASCADE,
            live_session_id TEXT REFERENCES live_session (id) ON DELETE SET NULL,
            customer_id TEXT NOT NULL REFERENCES customer (id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('recording', 'transcription')),
            state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'stopped', 'failed')),
            started_at REAL NOT NULL,
            stopped_at REAL,
            started_by TEXT NOT NULL DEFAULT '',
            error TEXT NOT NULL DEFAULT '',
            key_prefix TEXT NOT NULL DEFAULT '')""",
        "CREATE INDEX recording_meeting ON recording (meeting_id, started_at)",
        # A safety net under create_recording's check: one active run per meeting and kind.
        "CREATE UNIQUE INDEX recording_active ON recording (meeting_id, kind) WHERE state = 'active'",
        """CREATE TABLE recording_file (
            id TEXT PRIMARY KEY,
            recording_id TEXT NOT NULL REFERENCES recording (id) ON DELETE CASCADE,
            "key" TEXT NOT NULL,
            kind TEXT NOT NULL,
            track_id TEXT NOT NULL DEFAULT '',
            size INTEGER NOT NULL DEFAULT 0,
            sha256 TEXT NOT NULL DEFAULT '',
            content_type TEXT NOT NULL DEFAULT '',
            start REAL,
            "end" REAL,
            uploaded_at REAL NOT NULL,
            UNIQUE (recording_id, "key"))""",
        # recording_id has no foreign key on purpose: the ledger outlives a deleted recording.
        """CREATE TABLE consent (
            id TEXT PRIMARY KEY,
            meeting_id TEXT NOT NULL REFERENCES meeting (id) ON DELETE CASCADE,
            live_session_id TEXT REFERENCES live_session (id) ON DELETE SET NULL,
            participant_id TEXT NOT NULL,
            name TEXT NOT NULL,
            notified_at REAL NOT NULL,
            channels TEXT NOT NULL DEFAULT '[]',
            decision TEXT NOT NULL DEFAULT 'pending' CHECK (decision IN ('pending', 'continued', 'left')),
            decided_at REAL,
            recording_id TEXT)""",
        "CREATE INDEX consent_meeting ON consent (meeting_id, notified_at)",
    ],
    # 3: deletion is real, retention (issue 10): each recording keeps the storage it was
    # written to; a deleted recording leaves a record of what is to go from (or went from)
    # that storage; webhook deliveries name their meeting (so its deletion finds them);
    # indexes for the periodic purge.
    [
        # Settings with the secret, like customer_storage (never handed out). Recordings made
        # before this migration get their customer's settings of now: the best guess left.
        "ALTER TABLE recording ADD COLUMN storage TEXT NOT NULL DEFAULT ''",
        """UPDATE recording SET storage = COALESCE(
            (SELECT settings FROM customer_storage WHERE customer_storage.customer_id = recording.customer_id), '')""",
        # No foreign keys on purpose: it outlives the recording, its meeting and its customer.
        """CREATE TABLE storage_deletion (
            id TEXT PRIMARY KEY,
            recording_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            meeting_id TEXT NOT NULL,
            storage TEXT,
            key_prefix TEXT NOT NULL DEFAULT '',
            keys TEXT NOT NULL DEFAULT '[]',
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL)""",
        "CREATE INDEX storage_deletion_recording ON storage_deletion (recording_id)",
        "CREATE INDEX storage_deletion_state ON storage_deletion (state, updated_at)",
        "ALTER TABLE webhook_delivery ADD COLUMN meeting_id TEXT",
        """UPDATE webhook_delivery SET meeting_id = json_extract(payload, '$.data.meeting_id')
            WHERE json_valid(payload) AND json_type(payload, '$.data.meeting_id') = 'text'""",
        "CREATE INDEX webhook_delivery_meeting ON webhook_delivery (meeting_id) WHERE meeting_id IS NOT NULL",
        "CREATE INDEX webhook_delivery_ts ON webhook_delivery (ts)",
        "CREATE INDEX participant_joined ON participant (joined_at)",
    ],
    # 4: a host sign-in's last use is stored (written at most once a minute), so idle
    # expiry survives a restart of control and holds on every node.
    [
        "ALTER TABLE host_session ADD COLUMN last_used_at REAL",
    ],
    # 5: a meeting's last-N (issue 11): how many participants' video each subscriber
    # receives at once; NULL is the server's default.
    [
        "ALTER TABLE meeting ADD COLUMN last_n INTEGER CHECK (last_n IS NULL OR last_n >= 1)",
    ],
    # 6: ingests (issue 12, items 4 and 6): WHIP and plain-RTP streams a host brings into
    # a live session of a meeting; a WHIP token is kept only as its SHA-256.
    [
        """CREATE TABLE ingest (
            id TEXT PRIMARY KEY,
            meeting_id TEXT NOT NULL REFERENCES meeting (id) ON DELETE CASCADE,
            live_session_id TEXT REFERENCES live_session (id) ON DELETE SET NULL,
            kind TEXT NOT NULL CHECK (kind IN ('whip', 'rtp')),
            name TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            token_hash TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'revoked', 'ended')),
            ended_at REAL,
            end_reason TEXT NOT NULL DEFAULT '',
            details TEXT NOT NULL DEFAULT '{}')""",
        "CREATE INDEX ingest_meeting ON ingest (meeting_id, state)",
    ],
    # 7: WHEP viewer tokens (issue 12, item 5): what the host issued, with a label; the
    # signed token names its row, and a revoked row stops it.
    [
        """CREATE TABLE viewer_token (
            id TEXT PRIMARY KEY,
            meeting_id TEXT NOT NULL REFERENCES meeting (id) ON DELETE CASCADE,
            label TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            revoked_at REAL)""",
        "CREATE INDEX viewer_token_meeting ON viewer_token (meeting_id, created_at)",
    ],
]
