"""The store interface: every persistent thing of the control plane, behind async methods.

All SQL lives in this package; the rest of control sees only `Store` and the plain
dataclasses below. `control.store.sql.SqlStore` implements it once, on SQLite
(`control.store.sqlite.SqliteStore`, the embedded default: one file, WAL) or PostgreSQL
(`control.store.postgres.PostgresStore`, for several nodes), so nothing here assumes a
single process: every rule that must hold under concurrency (the host's live-meeting
limit, one host session per host under the `refuse` policy, a meeting's capacity, chat
sequence numbers, unique meeting numbers) is enforced inside one store transaction.

Conventions:
- Ids are random URL-safe strings made by the store (`new_id()`), except a host
  session's id, which is the SHA-256 hex of its secret token (the token is never stored).
- Times are float seconds since the epoch (UTC); `None` where not set yet.
- A missing row is `None` from `get_*`, `NotFound` from methods that change one.
- Unique-constraint violations raise `Conflict(field)`; the caller picks the API error.
- Methods return fresh dataclass copies; mutating one changes nothing in the store.
"""

from __future__ import annotations

import abc
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from control.store.ingests import IngestStore

CustomerStatus = Literal["active", "suspended"]
HostStatus = Literal["active", "suspended"]
MeetingStatus = Literal["scheduled", "live", "ended", "removed"]
ParticipantRole = Literal["host", "participant"]
ParticipantState = Literal["waiting", "admitted", "denied", "removed", "left"]
ActorKind = Literal["operator", "customer", "host", "participant", "system"]

# Participants that count toward a meeting's capacity and are "in" it.
PRESENT_STATES: tuple[str, ...] = ("waiting", "admitted")


def new_id(nbytes: int = 9) -> str:
    """A random URL-safe id (9 bytes: 12 characters, 72 bits) that does not start with "-"
    (it would read as an option on a command line: `conclave host suspend ID`)."""
    while True:
        value = secrets.token_urlsafe(nbytes)
        if not value.startswith("-"):
            return value


# ---------------------------------------------------------------------- errors


class StoreError(Exception):
    """Base of the errors the store raises on purpose."""


class NotFound(StoreError):
    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"no {kind} {key!r}")
        self.kind = kind
        self.key = key


class Conflict(StoreError):
    """A unique constraint refused the change; `field` names it (email, meeting_number...)."""

    def __init__(self, field_name: str, message: str = "") -> None:
        super().__init__(message or f"{field_name} already in use")
        self.field = field_name


class HostHasLiveMeeting(StoreError):
    """`start_live_session` refused: the host already holds `max_live_per_host` live meetings.
    Names one of them (the oldest) so the API can tell the host which."""

    def __init__(self, meeting_id: str, meeting_number: str, title: str) -> None:
        super().__init__(f"host already has a live meeting: {meeting_number}")
        self.meeting_id = meeting_id
        self.meeting_number = meeting_number
        self.title = title


class CustomerLimitReached(StoreError):
    """`start_live_session` refused: the customer's concurrent live meetings are at the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the customer already has {limit} live meeting(s)")
        self.limit = limit


class MeetingNotStartable(StoreError):
    """The meeting is removed (or gone); `status` says what it is."""

    def __init__(self, meeting_id: str, status: str) -> None:
        super().__init__(f"meeting {meeting_id} cannot start: it is {status}")
        self.meeting_id = meeting_id
        self.status = status


class AlreadyLive(StoreError):
    """`start_live_session` on a meeting that is live already; carries its live session."""

    def __init__(self, live_session: LiveSession) -> None:
        super().__init__(f"meeting {live_session.meeting_id} is live already")
        self.live_session = live_session


class HostSessionActive(StoreError):
    """`open_host_session` with policy `refuse` while the host has a live session."""


class MeetingFull(StoreError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the meeting is full ({limit} participants)")
        self.limit = limit


class WaitingRoomFull(StoreError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the waiting room is full ({limit} people)")
        self.limit = limit


class RecordingActive(StoreError):
    """`create_recording` refused: the meeting already has an active recording of that kind
    (of racing starts exactly one wins); carries the active one."""

    def __init__(self, recording: Recording) -> None:
        super().__init__(f"meeting {recording.meeting_id} already has an active {recording.kind}")
        self.recording = recording


# ---------------------------------------------------------------------- records


@dataclass(slots=True)
class Customer:
    id: str
    name: str
    status: str = "active"  # CustomerStatus
    api_key_hash: str = ""  # sha256 hex of the customer admin's API key
    limits: dict[str, Any] = field(default_factory=dict)  # overrides of config `limits:`
    webhook_url: str = ""
    webhook_secret: str = ""
    created_at: float = 0.0


@dataclass(slots=True)
class Host:
    id: str
    customer_id: str
    email: str  # stored lower-case; unique over all customers
    name: str
    password_hash: str  # argon2 (control.accounts.service)
    status: str = "active"  # HostStatus
    created_at: float = 0.0


@dataclass(slots=True)
class HostSession:
    id: str  # sha256 hex of the `hs_...` token
    host_id: str
    created_at: float
    ended_at: float | None = None
    end_reason: str | None = None
    last_used_at: float | None = None  # stored at most every HOST_SESSION_TOUCH_S

    @property
    def active(self) -> bool:
        return self.ended_at is None


@dataclass(slots=True)
class MeetingRecord:
    id: str
    meeting_number: str  # 11 digits, no dashes
    host_id: str
    customer_id: str
    title: str
    passcode: str
    start_time: float | None = None
    duration_minutes: int | None = None
    waiting_room: bool = True
    status: str = "scheduled"  # MeetingStatus
    locked: bool = False
    created_at: float = 0.0
    # Last-N (issue 11): the host's setting; None: the server's default (control.meeting.limits).
    last_n: int | None = None
    # Webinar style when False (issue 16): participants join receive-only, as attendees,
    # until the host promotes them (control.meeting.roles).
    attendees_publish: bool = True


@dataclass(slots=True)
class LiveSession:
    id: str
    meeting_id: str
    host_id: str
    customer_id: str
    started_at: float
    ended_at: float | None = None
    end_reason: str | None = None


@dataclass(slots=True)
class ParticipantRecord:
    id: str
    meeting_id: str
    live_session_id: str | None  # None: joined before the host started (waiting for host)
    name: str
    role: str  # ParticipantRole
    state: str  # ParticipantState
    joined_at: float
    left_at: float | None = None
    removed: bool = False


@dataclass(slots=True)
class ChatMessage:
    id: str
    meeting_id: str
    seq: int  # 1, 2, 3... per meeting, assigned by the store
    participant_id: str
    name: str
    text: str
    ts: int  # milliseconds since the epoch (as signaling sends it)


@dataclass(slots=True)
class AuditEntry:
    id: str
    ts: float
    actor_kind: str  # ActorKind
    actor_id: str
    action: str  # e.g. "customer.suspend", "participant.remove"
    target_kind: str
    target_id: str
    detail: dict[str, Any] = field(default_factory=dict)
    source_ip: str = ""


@dataclass(slots=True)
class WebhookDelivery:
    id: str
    customer_id: str
    event: str
    payload: str  # the exact JSON body sent (what the signature covers)
    attempt: int  # 1 for the first try
    status: str  # "delivered" | "failed" (will retry) | "gave_up"
    response_code: int | None
    ts: float
    error: str = ""  # connection error text, if any
    meeting_id: str | None = None  # the meeting the event is about (from the payload's data)


RecordingKind = Literal["recording", "transcription"]
RecordingState = Literal["active", "stopped", "failed"]
ConsentDecision = Literal["pending", "continued", "left"]
RECORDING_ENDED_STATES: tuple[str, ...] = ("stopped", "failed")
CONSENT_DECIDED: tuple[str, ...] = ("continued", "left")


@dataclass(slots=True)
class Recording:
    """One recording (or transcription-only run) of a meeting, from start to stop."""

    id: str
    meeting_id: str
    live_session_id: str | None
    customer_id: str
    kind: str  # RecordingKind
    state: str  # RecordingState
    started_at: float
    stopped_at: float | None = None
    started_by: str = ""  # who started it: a participant id, "auto", ...
    error: str = ""  # why it failed (the recorder's reason), "" otherwise
    key_prefix: str = ""  # where its files live in the customer's storage


@dataclass(slots=True)
class RecordingFile:
    """A file the recorder uploaded to the customer's storage (kind: track|mix|manifest|
    transcript, the recorder's vocabulary)."""

    id: str
    recording_id: str
    key: str  # the storage key (relative to the storage's root/prefix)
    kind: str
    track_id: str = ""
    size: int = 0
    sha256: str = ""
    content_type: str = ""
    start: float | None = None  # seconds on the recording's timeline
    end: float | None = None
    uploaded_at: float = 0.0


@dataclass(slots=True)
class ConsentEntry:
    """The ledger: a participant was told a meeting is recorded/transcribed, and what they did."""

    id: str
    meeting_id: str
    live_session_id: str | None
    participant_id: str
    name: str
    notified_at: float
    channels: list[str] = field(default_factory=list)  # "banner", "audio", "event"
    decision: str = "pending"  # ConsentDecision
    decided_at: float | None = None
    recording_id: str | None = None  # kept after the recording is deleted: the ledger is evidence


STORAGE_DELETION_STATES: tuple[str, ...] = ("pending", "done")


@dataclass(slots=True)
class StorageDeletion:
    """What a deleted recording had in the storage it was written to: `pending` until that
    storage confirmed the deletion (retried; the operator sees the list), then `done` and
    kept a while, so that a file the recorder uploads late is deleted as well."""

    id: str
    recording_id: str
    customer_id: str
    meeting_id: str
    key_prefix: str = ""
    keys: list[str] = field(default_factory=list)
    state: str = "pending"  # pending | done
    attempts: int = 0
    last_error: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    # The storage settings, secret included (never hand them out); None when unknown.
    storage: dict[str, Any] | None = field(default=None, repr=False)


@dataclass(slots=True)
class ViewerToken:
    """A WHEP viewer token the host issued for one meeting (control.meeting.viewers): the
    signed token carries this row's id; the row says whether it still works."""

    id: str
    meeting_id: str
    label: str
    created_at: float
    expires_at: float
    revoked_at: float | None = None


# ---------------------------------------------------------------------- the interface


@dataclass(frozen=True)
class StoreStats:
    """What /metrics says of the store: which database, and how many write transactions
    it refused for a conflict with another and that were run again (PostgreSQL's
    SERIALIZABLE; SQLite takes its lock first and never does)."""

    backend: str
    transactions_retried: int = 0


class Store(IngestStore, abc.ABC):
    """Async persistence of the control plane. Open with `await open()`, stop with `close()`."""

    def stats(self) -> StoreStats:
        return StoreStats(type(self).__name__)

    # --- lifecycle

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending schema migrations in order."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def schema_version(self) -> int: ...

    # --- customers

    @abc.abstractmethod
    async def create_customer(
        self,
        name: str,
        *,
        api_key_hash: str,
        limits: dict[str, Any] | None = None,
        webhook_url: str = "",
        webhook_secret: str = "",
    ) -> Customer: ...

    @abc.abstractmethod
    async def get_customer(self, customer_id: str) -> Customer | None: ...

    @abc.abstractmethod
    async def get_customer_by_api_key_hash(self, api_key_hash: str) -> Customer | None: ...

    @abc.abstractmethod
    async def list_customers(self) -> list[Customer]: ...

    @abc.abstractmethod
    async def count_customers(self) -> int: ...

    @abc.abstractmethod
    async def update_customer(self, customer_id: str, **changes: Any) -> Customer:
        """Change any of: name, status, api_key_hash, limits, webhook_url, webhook_secret.
        Raises NotFound."""

    @abc.abstractmethod
    async def delete_customer(self, customer_id: str) -> None:
        """Delete it with its hosts, host sessions, meetings, live sessions, participants,
        chat, webhook deliveries, storage settings, recording rows and consent ledger (audit
        rows stay; files in the customer's storage are the caller's to delete first).
        End live meetings first (control.meeting.live).
        Raises NotFound."""

    # --- hosts

    @abc.abstractmethod
    async def create_host(self, customer_id: str, email: str, name: str, password_hash: str) -> Host:
        """Raises Conflict("email") when the address is taken, NotFound for the customer."""

    @abc.abstractmethod
    async def get_host(self, host_id: str) -> Host | None: ...

    @abc.abstractmethod
    async def get_host_by_email(self, email: str) -> Host | None: ...

    @abc.abstractmethod
    async def list_hosts(self, customer_id: str | None = None) -> list[Host]: ...

    @abc.abstractmethod
    async def update_host(self, host_id: str, **changes: Any) -> Host:
        """Change any of: email, name, password_hash, status. Raises NotFound, Conflict."""

    @abc.abstractmethod
    async def delete_host(self, host_id: str) -> None:
        """Delete it with its sessions and meetings (and their rows). Raises NotFound."""

    # --- host sessions (login)

    @abc.abstractmethod
    async def open_host_session(
        self, host_id: str, session_id: str, *, policy: str, replaced_reason: str = "signed_in_elsewhere"
    ) -> tuple[HostSession, list[HostSession]]:
        """Atomically open a session for the host under the login policy.

        policy "replace": every active session of the host is ended with `replaced_reason`;
        returns (new session, the ended ones). policy "refuse": raises HostSessionActive when
        the host has an active session. Two concurrent logins never both stay active."""

    @abc.abstractmethod
    async def get_host_session(self, session_id: str) -> HostSession | None: ...

    @abc.abstractmethod
    async def touch_host_session(self, session_id: str, at: float) -> None:
        """Note a use of an active host sign-in at `at` (for idle expiry)."""

    @abc.abstractmethod
    async def end_host_session(self, session_id: str, reason: str) -> HostSession | None:
        """End it if active; returns the session as it is now (None when unknown)."""

    @abc.abstractmethod
    async def end_host_sessions_of(self, host_id: str, reason: str) -> list[HostSession]:
        """End every active session of the host; returns those it ended."""

    # --- meetings

    @abc.abstractmethod
    async def create_meeting(
        self,
        *,
        meeting_number: str,
        host_id: str,
        customer_id: str,
        title: str,
        passcode: str,
        start_time: float | None = None,
        duration_minutes: int | None = None,
        waiting_room: bool = True,
        last_n: int | None = None,
        attendees_publish: bool = True,
    ) -> MeetingRecord:
        """Raises Conflict("meeting_number") when a meeting that exists (not removed) has
        that number: the caller draws another number and tries again."""

    @abc.abstractmethod
    async def get_meeting(self, meeting_id: str) -> MeetingRecord | None:
        """Any status, including removed."""

    @abc.abstractmethod
    async def get_meeting_by_number(self, meeting_number: str) -> MeetingRecord | None:
        """The meeting holding the number (11 digits, no dashes); never a removed one."""

    @abc.abstractmethod
    async def list_meetings(
        self,
        *,
        host_id: str | None = None,
        customer_id: str | None = None,
        statuses: Sequence[str] | None = None,
    ) -> list[MeetingRecord]:
        """Newest first. `statuses` None: every status but removed."""

    @abc.abstractmethod
    async def update_meeting(self, meeting_id: str, **changes: Any) -> MeetingRecord:
        """Change any of: title, passcode, start_time, duration_minutes, waiting_room, locked,
        last_n, attendees_publish.
        (status changes only through start/end/remove.) Raises NotFound."""

    @abc.abstractmethod
    async def remove_meeting(self, meeting_id: str) -> MeetingRecord:
        """Status `removed` (its number is free again) and its chat deleted. A live meeting
        must be ended first (control.meeting.live); raises StoreError if it is still live."""

    # --- live sessions (one row per start)

    @abc.abstractmethod
    async def start_live_session(
        self, meeting_id: str, host_id: str, max_live_per_host: int, max_live_per_customer: int | None = None
    ) -> LiveSession:
        """Atomically: check the host holds fewer than `max_live_per_host` OTHER live meetings
        (else HostHasLiveMeeting naming one) and the customer fewer than
        `max_live_per_customer` (else CustomerLimitReached), then insert a live session and
        set the meeting `live` (unlocked). Of racing starts exactly one wins.
        Raises AlreadyLive when this meeting is live, MeetingNotStartable when removed,
        NotFound when unknown."""

    @abc.abstractmethod
    async def end_live_session(self, meeting_id: str, reason: str) -> LiveSession | None:
        """End the meeting's live session if any: set ended_at/end_reason, the meeting
        `ended` and unlocked, and every waiting/admitted participant `left`. Returns the
        ended session, or None when the meeting was not live."""

    @abc.abstractmethod
    async def get_live_session(self, meeting_id: str) -> LiveSession | None:
        """The meeting's current (not ended) live session."""

    @abc.abstractmethod
    async def get_live_session_by_id(self, live_session_id: str) -> LiveSession | None: ...

    @abc.abstractmethod
    async def list_live_sessions(
        self, *, host_id: str | None = None, customer_id: str | None = None
    ) -> list[LiveSession]:
        """Live sessions not ended, oldest first, optionally of one host or customer."""

    @abc.abstractmethod
    async def end_all_live_sessions(self, reason: str) -> list[LiveSession]:
        """At startup: end every live session (as end_live_session does); returns them."""

    # --- participants

    @abc.abstractmethod
    async def add_participant(
        self,
        meeting_id: str,
        *,
        name: str,
        role: str,
        state: str,
        live_session_id: str | None = None,
        max_present: int | None = None,
        participant_id: str | None = None,
        max_waiting: int | None = None,
    ) -> ParticipantRecord:
        """Insert a participant. With `max_present`, atomically refuses (MeetingFull) when
        the meeting already has that many participants in PRESENT_STATES; with
        `max_waiting`, a `waiting` one (WaitingRoomFull) when that many are waiting."""

    @abc.abstractmethod
    async def get_participant(self, participant_id: str) -> ParticipantRecord | None: ...

    @abc.abstractmethod
    async def list_participants(
        self,
        meeting_id: str,
        *,
        live_session_id: str | None = None,
        states: Sequence[str] | None = None,
    ) -> list[ParticipantRecord]:
        """Oldest first; filtered by live session and/or states when given."""

    @abc.abstractmethod
    async def count_participants(self, meeting_id: str, states: Sequence[str] = PRESENT_STATES) -> int: ...

    @abc.abstractmethod
    async def update_participant(self, participant_id: str, **changes: Any) -> ParticipantRecord:
        """Change any of: state, live_session_id, name, left_at, removed. Setting state
        `removed` also sets removed=True; `left`/`denied`/`removed` set left_at when unset.
        Raises NotFound."""

    # --- chat

    @abc.abstractmethod
    async def append_chat(
        self, meeting_id: str, participant_id: str, name: str, text: str, ts: int, *, keep: int | None = None
    ) -> ChatMessage:
        """Store a message; its `seq` is the meeting's next one (atomic). With `keep`, the
        meeting keeps its latest `keep` messages: older ones go in the same transaction."""

    @abc.abstractmethod
    async def list_chat(self, meeting_id: str, *, after_seq: int = 0, limit: int | None = None) -> list[ChatMessage]:
        """Messages with seq > after_seq in order; with `limit`, the LAST `limit` of them."""

    @abc.abstractmethod
    async def delete_chat(self, meeting_id: str) -> int:
        """Delete the meeting's chat; returns how many messages went."""

    # --- audit (append-only: there is no method to change or delete an entry)

    @abc.abstractmethod
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
    ) -> AuditEntry: ...

    @abc.abstractmethod
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
        """Newest first."""

    # --- webhook deliveries (one row per attempt)

    @abc.abstractmethod
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
    ) -> WebhookDelivery: ...

    @abc.abstractmethod
    async def list_webhook_deliveries(self, customer_id: str, *, limit: int = 100) -> list[WebhookDelivery]:
        """Newest first."""

    # --- customer storage (where a customer's recordings go; settings include the secret)

    @abc.abstractmethod
    async def set_customer_storage(self, customer_id: str, settings: dict[str, Any]) -> None:
        """Replace the customer's storage settings (validated by the caller). Raises NotFound."""

    @abc.abstractmethod
    async def get_customer_storage(self, customer_id: str) -> dict[str, Any] | None:
        """The settings as set (secrets included: never hand them out), None when unset."""

    @abc.abstractmethod
    async def delete_customer_storage(self, customer_id: str) -> bool:
        """Forget the settings; True if there were any."""

    # --- recordings, their files, and the consent ledger

    @abc.abstractmethod
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
        """Insert an `active` recording (started_at: now unless given; id: new unless given,
        so a key prefix naming it can be made first). `storage`: the settings its files are
        written with (secret included; `get_recording_storage`). Atomically refuses with
        RecordingActive when the meeting has an active one of the same kind. NotFound for
        an unknown meeting; ValueError for an unknown kind."""

    @abc.abstractmethod
    async def get_recording_storage(self, recording_id: str) -> dict[str, Any] | None:
        """The storage settings the recording was written with (secret included: never hand
        them out); None when unknown (or no such recording)."""

    @abc.abstractmethod
    async def update_recording(self, recording_id: str, **changes: Any) -> Recording:
        """Change any of: state, stopped_at, error, key_prefix, live_session_id. Setting
        state `stopped`/`failed` sets stopped_at when unset. Raises NotFound."""

    @abc.abstractmethod
    async def get_recording(self, recording_id: str) -> Recording | None: ...

    @abc.abstractmethod
    async def list_recordings(self, meeting_id: str, *, kind: str | None = None) -> list[Recording]:
        """Oldest first."""

    @abc.abstractmethod
    async def active_recordings(self) -> list[Recording]:
        """Every `active` recording of every meeting, oldest first (for restarts)."""

    @abc.abstractmethod
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
        """Record an uploaded file. The same key again (a re-upload after a recorder
        restart) updates that file's row and returns it with its id. NotFound for an
        unknown recording."""

    @abc.abstractmethod
    async def get_recording_file(self, file_id: str) -> RecordingFile | None: ...

    @abc.abstractmethod
    async def list_recording_files(self, recording_id: str) -> list[RecordingFile]:
        """In upload order."""

    @abc.abstractmethod
    async def delete_recording(self, recording_id: str) -> None:
        """Delete the recording and its file rows (consent entries keep its id). Raises
        NotFound. (Deletion by users goes through `retire_recording`.)"""

    # --- deleted recordings: what is to go from their storage

    @abc.abstractmethod
    async def retire_recording(self, recording_id: str) -> StorageDeletion:
        """Delete the recording and its file rows and, in the same transaction, keep what is
        to be deleted from its storage: a `pending` StorageDeletion with the storage it was
        written with (the customer's current settings for a recording that has none), its
        key prefix and its files' keys. Raises NotFound."""

    @abc.abstractmethod
    async def get_storage_deletion(self, deletion_id: str) -> StorageDeletion | None: ...

    @abc.abstractmethod
    async def storage_deletion_of(self, recording_id: str) -> StorageDeletion | None:
        """The (latest) deletion of that recording, if it was deleted."""

    @abc.abstractmethod
    async def list_storage_deletions(
        self, *, state: str | None = None, customer_id: str | None = None, limit: int = 1000
    ) -> list[StorageDeletion]:
        """Oldest first."""

    @abc.abstractmethod
    async def update_storage_deletion(self, deletion_id: str, **changes: Any) -> StorageDeletion:
        """Change any of: state, attempts, last_error, keys (updated_at: now). NotFound."""

    @abc.abstractmethod
    async def forget_storage_deletion(self, deletion_id: str) -> bool:
        """Drop the record (and the storage settings it kept); True if there was one."""

    # --- what deletion and retention take away

    @abc.abstractmethod
    async def remove_meeting_data(self, meeting_id: str, *, keep_live_session_id: str | None = None) -> dict[str, int]:
        """Delete what the server keeps about the people of a meeting: its chat, participant
        rows, consent ledger and the webhook deliveries about it (their payloads name
        people). With `keep_live_session_id`, the participant rows and ledger of that (open)
        live session stay. Counts by kind: chat_messages, participants, consent_entries,
        webhook_deliveries."""

    @abc.abstractmethod
    async def purge_webhook_deliveries(self, before: float) -> int:
        """Delete delivery attempts made before `before`; how many went."""

    @abc.abstractmethod
    async def purge_participants(self, before: float) -> int:
        """Delete participant rows that joined before `before`, except those of a live
        session that is still open; how many went."""

    @abc.abstractmethod
    async def purge_storage_deletions(self, before: float) -> int:
        """Forget `done` storage deletions last changed before `before`; how many went."""

    @abc.abstractmethod
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
        """Append a ledger entry (notified_at: now unless given; a decided one gets
        decided_at now). NotFound for an unknown meeting."""

    @abc.abstractmethod
    async def update_consent(self, consent_id: str, **changes: Any) -> ConsentEntry:
        """Change any of: channels, decision, decided_at, recording_id, name. Setting
        decision `continued`/`left` sets decided_at when unset. Raises NotFound."""

    @abc.abstractmethod
    async def list_consent(self, meeting_id: str, live_session_id: str | None = None) -> list[ConsentEntry]:
        """The meeting's ledger (of one live session when given), oldest first."""

    # ------------------------------------------------------------------ viewer tokens (WHEP)

    @abc.abstractmethod
    async def create_viewer_token(self, meeting_id: str, label: str, expires_at: float) -> ViewerToken:
        """NotFound when the meeting does not exist."""

    @abc.abstractmethod
    async def get_viewer_token(self, token_id: str) -> ViewerToken | None: ...

    @abc.abstractmethod
    async def list_viewer_tokens(self, meeting_id: str) -> list[ViewerToken]:
        """Oldest first, revoked ones too."""

    @abc.abstractmethod
    async def revoke_viewer_token(self, token_id: str) -> ViewerToken:
        """Revoked now (a second revocation keeps the first time). NotFound if unknown."""
