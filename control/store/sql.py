"""The store's queries, once for both databases: `SqlStore`, the plumbing and every table
but those its mixins hold (chat, audit and webhook deliveries: `sql_activity`; recordings
and consent: `sql_recordings`; deletion and retention: `sql_deletion`; ingests:
`sql_ingests`; viewer tokens: `sql_viewers`); rows to records: `sql_rows`.

A call runs synchronous code on the store's own threads (the event loop never waits on
the database), and each call that writes is one transaction run by the backend's
`_write`, in which the checks (the host's live-meeting limit, the login policy, a
meeting's capacity) hold against every other writer: SQLite (`control.store.sqlite`)
takes the file's write lock first (BEGIN IMMEDIATE); PostgreSQL (`control.store.postgres`)
runs it SERIALIZABLE and runs it again when the database says another transaction
conflicted. The SQL is the dialect both speak: `?` placeholders (PostgreSQL's connection
translates them), `rowid` (an identity column on PostgreSQL, see the baseline migration).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from control.store import sql_rows as rows
from control.store.base import (
    PRESENT_STATES,
    AlreadyLive,
    Conflict,
    Customer,
    CustomerLimitReached,
    Host,
    HostHasLiveMeeting,
    HostSession,
    HostSessionActive,
    LiveSession,
    MeetingFull,
    MeetingNotStartable,
    MeetingRecord,
    NotFound,
    ParticipantRecord,
    Store,
    StoreError,
    StoreStats,
    WaitingRoomFull,
    new_id,
)
from control.store.sql_activity import ActivityMixin
from control.store.sql_deletion import DeletionMixin
from control.store.sql_ingests import IngestsMixin
from control.store.sql_recordings import RecordingsMixin
from control.store.sql_rows import Row
from control.store.sql_viewers import ViewerTokensMixin

T = TypeVar("T")


class SqlStore(ActivityMixin, RecordingsMixin, DeletionMixin, IngestsMixin, ViewerTokensMixin, Store):
    """The queries; a backend subclass gives `_db` (this thread's connection), `_write`
    (one transaction), `IntegrityError` (what its connection raises for a refused
    constraint, with SQLite's wording), `BACKEND` (its name on /metrics), `open`, `close`
    and `schema_version`."""

    IntegrityError: type[Exception]
    BACKEND: str
    _clock: Callable[[], float]
    _executor: ThreadPoolExecutor | None
    _transactions_retried = 0

    def stats(self) -> StoreStats:
        return StoreStats(self.BACKEND, self._transactions_retried)

    # ------------------------------------------------------------------ plumbing

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreError("the store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    @property
    def _db(self) -> Any:
        raise NotImplementedError

    def _write(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        return self._db.execute(sql, tuple(params)).fetchall()

    def _row(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        return self._db.execute(sql, tuple(params)).fetchone()

    def _get(self, table: str, row_id: str, convert: Callable[[Row], T]) -> T | None:
        """The row `row_id` of `table` as a record (`convert`: a `sql_rows` function), or None."""
        row = self._row(f"SELECT * FROM {table} WHERE id = ?", (row_id,))
        return convert(row) if row else None

    def _require(self, table: str, row_id: str) -> None:
        """NotFound(table, row_id) unless the row exists."""
        if self._row(f"SELECT 1 FROM {table} WHERE id = ?", (row_id,)) is None:
            raise NotFound(table, row_id)

    def _insert(self, table: str, record: T) -> T:
        """INSERT a record dataclass (its fields are the table's columns); returns it."""
        values = {name: getattr(record, name) for name in record.__dataclass_fields__}
        columns = ", ".join(f'"{name}"' for name in values)  # quoted: "key" and "end" are SQL words
        params = [rows.column_value(v) for v in values.values()]
        self._db.execute(f"INSERT INTO {table} ({columns}) VALUES ({rows.placeholders(params)})", params)
        return record

    def _insert_new(self, table: str, record: T) -> T:
        """`_insert`, with a refused unique constraint or a missing parent raised as `_conflict` says."""
        try:
            return self._insert(table, record)
        except self.IntegrityError as exc:
            raise _conflict(exc, table) from None

    def _update(
        self, table: str, row_id: str, allowed: set[str], changes: dict[str, Any], convert: Callable[[Row], T]
    ) -> T:
        """UPDATE the `changes` (columns of `allowed` only) and return the row as it is now."""
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"{table}: cannot change {', '.join(sorted(unknown))}")
        if changes:
            columns = ", ".join(f"{name} = ?" for name in changes)
            values = [rows.column_value(v) for v in changes.values()]
            self._db.execute(f"UPDATE {table} SET {columns} WHERE id = ?", (*values, row_id))
        record = self._get(table, row_id, convert)
        if record is None:
            raise NotFound(table, row_id)
        return record

    def _stamp_unset(self, table: str, row_id: str, column: str, changes: dict[str, Any]) -> None:
        """Add `column`: now to `changes` unless they set it or the row has it set already."""
        if column not in changes:
            row = self._row(f"SELECT {column} FROM {table} WHERE id = ?", (row_id,))
            if row is not None and row[0] is None:
                changes[column] = self._clock()

    # ------------------------------------------------------------------ customers

    async def create_customer(
        self,
        name: str,
        *,
        api_key_hash: str,
        limits: dict[str, Any] | None = None,
        webhook_url: str = "",
        webhook_secret: str = "",
    ) -> Customer:
        customer = Customer(
            id=new_id(),
            name=name,
            api_key_hash=api_key_hash,
            limits=dict(limits or {}),
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            created_at=self._clock(),
        )
        return await self._run(self._write, self._insert_new, "customer", customer)

    async def get_customer(self, customer_id: str) -> Customer | None:
        return await self._run(self._get, "customer", customer_id, rows.customer)

    async def get_customer_by_api_key_hash(self, api_key_hash: str) -> Customer | None:
        if not api_key_hash:
            return None
        row = await self._run(self._row, "SELECT * FROM customer WHERE api_key_hash = ?", (api_key_hash,))
        return rows.customer(row) if row else None

    async def list_customers(self) -> list[Customer]:
        found = await self._run(self._rows, "SELECT * FROM customer ORDER BY created_at, rowid")
        return [rows.customer(r) for r in found]

    async def count_customers(self) -> int:
        return await self._run(lambda: self._row("SELECT COUNT(*) FROM customer")[0])

    async def update_customer(self, customer_id: str, **changes: Any) -> Customer:
        def update() -> Customer:
            try:
                return self._update("customer", customer_id, rows.CUSTOMER_FIELDS, changes, rows.customer)
            except self.IntegrityError as exc:
                raise _conflict(exc, "customer") from None

        return await self._run(self._write, update)

    async def delete_customer(self, customer_id: str) -> None:
        await self._run(self._write, self._delete, "customer", customer_id)

    def _delete(self, table: str, row_id: str) -> None:
        if self._db.execute(f"DELETE FROM {table} WHERE id = ?", (row_id,)).rowcount == 0:
            raise NotFound(table, row_id)

    # ------------------------------------------------------------------ hosts

    async def create_host(self, customer_id: str, email: str, name: str, password_hash: str) -> Host:
        host = Host(new_id(), customer_id, email.strip().lower(), name, password_hash, "active", self._clock())

        def insert() -> Host:
            self._require("customer", customer_id)
            return self._insert_new("host", host)

        return await self._run(self._write, insert)

    async def get_host(self, host_id: str) -> Host | None:
        return await self._run(self._get, "host", host_id, rows.host)

    async def get_host_by_email(self, email: str) -> Host | None:
        row = await self._run(self._row, "SELECT * FROM host WHERE email = ?", (email.strip().lower(),))
        return rows.host(row) if row else None

    async def list_hosts(self, customer_id: str | None = None) -> list[Host]:
        if customer_id is None:
            found = await self._run(self._rows, "SELECT * FROM host ORDER BY created_at, rowid")
        else:
            found = await self._run(
                self._rows, "SELECT * FROM host WHERE customer_id = ? ORDER BY created_at, rowid", (customer_id,)
            )
        return [rows.host(r) for r in found]

    async def update_host(self, host_id: str, **changes: Any) -> Host:
        if isinstance(changes.get("email"), str):
            changes["email"] = changes["email"].strip().lower()

        def update() -> Host:
            try:
                return self._update("host", host_id, rows.HOST_FIELDS, changes, rows.host)
            except self.IntegrityError as exc:
                raise _conflict(exc, "host") from None

        return await self._run(self._write, update)

    async def delete_host(self, host_id: str) -> None:
        await self._run(self._write, self._delete, "host", host_id)

    # ------------------------------------------------------------------ host sessions

    async def open_host_session(
        self, host_id: str, session_id: str, *, policy: str, replaced_reason: str = "signed_in_elsewhere"
    ) -> tuple[HostSession, list[HostSession]]:
        if policy not in ("replace", "refuse"):
            raise ValueError(f"unknown login policy {policy!r}")

        def open_session() -> tuple[HostSession, list[HostSession]]:
            self._require("host", host_id)
            active = [
                rows.host_session(r)
                for r in self._rows("SELECT * FROM host_session WHERE host_id = ? AND ended_at IS NULL", (host_id,))
            ]
            if active and policy == "refuse":
                raise HostSessionActive(f"host {host_id} is signed in elsewhere")
            now = self._clock()
            for old in active:
                self._db.execute(
                    "UPDATE host_session SET ended_at = ?, end_reason = ? WHERE id = ?", (now, replaced_reason, old.id)
                )
                old.ended_at, old.end_reason = now, replaced_reason
            try:
                created = self._insert("host_session", HostSession(session_id, host_id, now))
            except self.IntegrityError as exc:
                # host_session_open (one open sign-in per host): another sign-in won the race.
                raise _conflict(exc, "host_session") from None
            return created, active

        return await self._run(self._write, open_session)

    async def get_host_session(self, session_id: str) -> HostSession | None:
        return await self._run(self._get, "host_session", session_id, rows.host_session)

    async def touch_host_session(self, session_id: str, at: float) -> None:
        def work() -> None:
            self._db.execute(
                "UPDATE host_session SET last_used_at = ? WHERE id = ? AND ended_at IS NULL", (at, session_id)
            )

        await self._run(self._write, work)

    async def end_host_session(self, session_id: str, reason: str) -> HostSession | None:
        def end() -> HostSession | None:
            self._db.execute(
                "UPDATE host_session SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL",
                (self._clock(), reason, session_id),
            )
            return self._get("host_session", session_id, rows.host_session)

        return await self._run(self._write, end)

    async def end_host_sessions_of(self, host_id: str, reason: str) -> list[HostSession]:
        def end() -> list[HostSession]:
            active = [
                rows.host_session(r)
                for r in self._rows("SELECT * FROM host_session WHERE host_id = ? AND ended_at IS NULL", (host_id,))
            ]
            now = self._clock()
            self._db.execute(
                "UPDATE host_session SET ended_at = ?, end_reason = ? WHERE host_id = ? AND ended_at IS NULL",
                (now, reason, host_id),
            )
            for session in active:
                session.ended_at, session.end_reason = now, reason
            return active

        return await self._run(self._write, end)

    # ------------------------------------------------------------------ meetings

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
        meeting = MeetingRecord(
            id=new_id(),
            meeting_number=meeting_number,
            host_id=host_id,
            customer_id=customer_id,
            title=title,
            passcode=passcode,
            start_time=start_time,
            duration_minutes=duration_minutes,
            waiting_room=waiting_room,
            created_at=self._clock(),
            last_n=last_n,
            attendees_publish=attendees_publish,
        )
        return await self._run(self._write, self._insert_new, "meeting", meeting)

    async def get_meeting(self, meeting_id: str) -> MeetingRecord | None:
        return await self._run(self._get, "meeting", meeting_id, rows.meeting)

    async def get_meeting_by_number(self, meeting_number: str) -> MeetingRecord | None:
        row = await self._run(
            self._row, "SELECT * FROM meeting WHERE meeting_number = ? AND status != 'removed'", (meeting_number,)
        )
        return rows.meeting(row) if row else None

    async def list_meetings(
        self,
        *,
        host_id: str | None = None,
        customer_id: str | None = None,
        statuses: Sequence[str] | None = None,
    ) -> list[MeetingRecord]:
        where: list[str] = []
        params: list[Any] = []
        rows.add_equal(where, params, host_id=host_id, customer_id=customer_id)
        if statuses is None:
            where.append("status != 'removed'")
        else:
            where.append(rows.is_in("status", statuses))
            params.extend(statuses)
        sql = f"SELECT * FROM meeting WHERE {' AND '.join(where)} ORDER BY created_at DESC, rowid DESC"
        return [rows.meeting(r) for r in await self._run(self._rows, sql, params)]

    async def update_meeting(self, meeting_id: str, **changes: Any) -> MeetingRecord:
        fields = rows.MEETING_FIELDS
        return await self._run(self._write, self._update, "meeting", meeting_id, fields, changes, rows.meeting)

    async def remove_meeting(self, meeting_id: str) -> MeetingRecord:
        def remove() -> MeetingRecord:
            row = self._row("SELECT * FROM meeting WHERE id = ?", (meeting_id,))
            if row is None:
                raise NotFound("meeting", meeting_id)
            if row["status"] == "live":
                raise StoreError(f"meeting {meeting_id} is live: end it before removing it")
            self._db.execute("UPDATE meeting SET status = 'removed', locked = 0 WHERE id = ?", (meeting_id,))
            self._db.execute("DELETE FROM chat_message WHERE meeting_id = ?", (meeting_id,))
            return self._get("meeting", meeting_id, rows.meeting)

        return await self._run(self._write, remove)

    # ------------------------------------------------------------------ live sessions

    async def start_live_session(
        self, meeting_id: str, host_id: str, max_live_per_host: int, max_live_per_customer: int | None = None
    ) -> LiveSession:
        return await self._run(self._write, self._start, meeting_id, host_id, max_live_per_host, max_live_per_customer)

    def _start(self, meeting_id: str, host_id: str, per_host: int, per_customer: int | None) -> LiveSession:
        meeting = self._row("SELECT * FROM meeting WHERE id = ?", (meeting_id,))
        if meeting is None:
            raise NotFound("meeting", meeting_id)
        if meeting["status"] == "removed":
            raise MeetingNotStartable(meeting_id, meeting["status"])
        current = self._row("SELECT * FROM live_session WHERE meeting_id = ? AND ended_at IS NULL", (meeting_id,))
        if current is not None:
            raise AlreadyLive(rows.live_session(current))
        others = self._rows(
            "SELECT m.id, m.meeting_number, m.title FROM live_session s JOIN meeting m ON m.id = s.meeting_id"
            " WHERE s.host_id = ? AND s.ended_at IS NULL ORDER BY s.started_at, s.rowid",
            (host_id,),
        )
        if len(others) >= per_host:
            first = others[0]
            raise HostHasLiveMeeting(first["id"], first["meeting_number"], first["title"])
        if per_customer is not None:
            live = self._row(
                "SELECT COUNT(*) FROM live_session WHERE customer_id = ? AND ended_at IS NULL",
                (meeting["customer_id"],),
            )[0]
            if live >= per_customer:
                raise CustomerLimitReached(per_customer)
        session = self._insert(
            "live_session", LiveSession(new_id(), meeting_id, host_id, meeting["customer_id"], self._clock())
        )
        self._db.execute("UPDATE meeting SET status = 'live', locked = 0 WHERE id = ?", (meeting_id,))
        return session

    async def end_live_session(self, meeting_id: str, reason: str) -> LiveSession | None:
        return await self._run(self._write, self._end, meeting_id, reason)

    def _end(self, meeting_id: str, reason: str) -> LiveSession | None:
        row = self._row("SELECT * FROM live_session WHERE meeting_id = ? AND ended_at IS NULL", (meeting_id,))
        if row is None:
            return None
        session = rows.live_session(row)
        session.ended_at, session.end_reason = self._clock(), reason
        self._db.execute(
            "UPDATE live_session SET ended_at = ?, end_reason = ? WHERE id = ?",
            (session.ended_at, reason, session.id),
        )
        self._db.execute(
            "UPDATE meeting SET status = 'ended', locked = 0 WHERE id = ? AND status = 'live'", (meeting_id,)
        )
        self._db.execute(
            f"UPDATE participant SET state = 'left', left_at = COALESCE(left_at, ?)"
            f" WHERE meeting_id = ? AND {rows.is_in('state', PRESENT_STATES)}",
            (session.ended_at, meeting_id, *PRESENT_STATES),
        )
        return session

    async def get_live_session(self, meeting_id: str) -> LiveSession | None:
        row = await self._run(
            self._row, "SELECT * FROM live_session WHERE meeting_id = ? AND ended_at IS NULL", (meeting_id,)
        )
        return rows.live_session(row) if row else None

    async def get_live_session_by_id(self, live_session_id: str) -> LiveSession | None:
        return await self._run(self._get, "live_session", live_session_id, rows.live_session)

    async def list_live_sessions(
        self, *, host_id: str | None = None, customer_id: str | None = None
    ) -> list[LiveSession]:
        where, params = ["ended_at IS NULL"], []
        rows.add_equal(where, params, host_id=host_id, customer_id=customer_id)
        sql = f"SELECT * FROM live_session WHERE {' AND '.join(where)} ORDER BY started_at, rowid"
        return [rows.live_session(r) for r in await self._run(self._rows, sql, params)]

    async def end_all_live_sessions(self, reason: str) -> list[LiveSession]:
        def end_all() -> list[LiveSession]:
            found = self._rows("SELECT meeting_id FROM live_session WHERE ended_at IS NULL ORDER BY started_at, rowid")
            ended = [self._end(r["meeting_id"], reason) for r in found]
            # A meeting marked live without a session (should not happen) is ended too.
            self._db.execute("UPDATE meeting SET status = 'ended', locked = 0 WHERE status = 'live'")
            return [s for s in ended if s is not None]

        return await self._run(self._write, end_all)

    # ------------------------------------------------------------------ participants

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
        participant = ParticipantRecord(
            id=participant_id or new_id(),
            meeting_id=meeting_id,
            live_session_id=live_session_id,
            name=name,
            role=role,
            state=state,
            joined_at=self._clock(),
        )

        def insert() -> ParticipantRecord:
            self._require("meeting", meeting_id)
            if max_present is not None and self._count_present(meeting_id, PRESENT_STATES) >= max_present:
                raise MeetingFull(max_present)
            if max_waiting is not None and state == "waiting" and self._count_present(meeting_id, ("waiting",)) >= max_waiting:
                raise WaitingRoomFull(max_waiting)
            return self._insert_new("participant", participant)

        return await self._run(self._write, insert)

    def _count_present(self, meeting_id: str, states: Sequence[str]) -> int:
        sql = f"SELECT COUNT(*) FROM participant WHERE meeting_id = ? AND {rows.is_in('state', states)}"
        return self._row(sql, (meeting_id, *states))[0]

    async def get_participant(self, participant_id: str) -> ParticipantRecord | None:
        return await self._run(self._get, "participant", participant_id, rows.participant)

    async def list_participants(
        self,
        meeting_id: str,
        *,
        live_session_id: str | None = None,
        states: Sequence[str] | None = None,
    ) -> list[ParticipantRecord]:
        where, params = ["meeting_id = ?"], [meeting_id]
        rows.add_equal(where, params, live_session_id=live_session_id)
        if states is not None:
            where.append(rows.is_in("state", states))
            params.extend(states)
        sql = f"SELECT * FROM participant WHERE {' AND '.join(where)} ORDER BY joined_at, rowid"
        return [rows.participant(r) for r in await self._run(self._rows, sql, params)]

    async def count_participants(self, meeting_id: str, states: Sequence[str] = PRESENT_STATES) -> int:
        return await self._run(self._count_present, meeting_id, tuple(states))

    async def update_participant(self, participant_id: str, **changes: Any) -> ParticipantRecord:
        if changes.get("state") == "removed":
            changes["removed"] = True

        def update() -> ParticipantRecord:
            if changes.get("state") in rows.ENDED_STATES:
                self._stamp_unset("participant", participant_id, "left_at", changes)
            return self._update("participant", participant_id, rows.PARTICIPANT_FIELDS, changes, rows.participant)

        try:
            return await self._run(self._write, update)
        except self.IntegrityError as exc:
            raise StoreError(f"participant {participant_id}: {exc}") from None

def _conflict(exc: Exception, table: str) -> StoreError:
    """Name the field a unique constraint refused; other integrity errors (a missing
    parent row) become NotFound of the parent."""
    text = str(exc)
    if "host_session_open" in text or "host_session.host_id" in text:
        return HostSessionActive("the host is signed in elsewhere")
    if "UNIQUE" in text:
        for name in ("meeting_number", "email", "api_key_hash", "id"):
            if name in text:
                return Conflict(name)
        return Conflict("id")
    if "FOREIGN KEY" in text:
        return NotFound("parent of " + table, "?")
    return StoreError(f"{table}: {text}")
