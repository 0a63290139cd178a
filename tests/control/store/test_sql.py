"""control/store/sql.py: the store suite — every test taking `store` runs on a real SQLite
file and on a real PostgreSQL database (conftest.py): the atomic host limit under real
concurrent calls, constraints and the append-only audit log. And SQLite's own: its
migrations recorded, persistence across reopen, two connections on one file."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat

import pytest

from control.store import (
    AlreadyLive,
    Conflict,
    CustomerLimitReached,
    HostHasLiveMeeting,
    HostSessionActive,
    MeetingFull,
    MeetingNotStartable,
    NotFound,
    StoreError,
)
from control.store.schema import SCHEMA_VERSION, revision_of
from control.store.sql import SqlStore
from control.store.sqlite import SqliteStore
from tests.support.stores import direct_connection


async def make_host(store: SqlStore, email: str = "ann@example.com", customer_id: str | None = None):
    if customer_id is None:
        customer_id = (await store.create_customer("Acme", api_key_hash=f"h-{email}")).id
    return await store.create_host(customer_id, email, "Ann", "argon2-hash")


async def make_meeting(store: SqlStore, host, number: str = "12345678901", **extra):
    return await store.create_meeting(
        meeting_number=number, host_id=host.id, customer_id=host.customer_id, title="t", passcode="123456", **extra
    )


# ---------------------------------------------------------------------- schema


async def test_migrations_are_applied_once_and_recorded(tmp_path):
    path = tmp_path / "db.sqlite"
    store = SqliteStore(str(path))
    await store.open()
    assert await store.schema_version() == SCHEMA_VERSION
    await store.close()
    await store.open()  # reopening applies nothing again
    assert await store.schema_version() == SCHEMA_VERSION
    await store.close()
    conn = sqlite3.connect(path)
    versions = [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]
    journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    assert versions == [revision_of(SCHEMA_VERSION)]  # Alembic's record: the head revision
    assert journal == "wal"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "db.sqlite"
    store = SqliteStore(str(path))
    await store.open()
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE alembic_version SET version_num = ?", (revision_of(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        await SqliteStore(str(path)).open()


async def test_everything_survives_reopening(tmp_path):
    path = str(tmp_path / "conclave.db")
    store = SqliteStore(path)
    await store.open()
    host = await make_host(store)
    meeting = await make_meeting(store, host, start_time=1_900_000_000.0, duration_minutes=45, waiting_room=False)
    await store.append_chat(meeting.id, "p1", "Bob", "hello", 1234)
    await store.append_audit(actor_kind="operator", actor_id="operator", action="customer.create", source_ip="::1")
    await store.close()

    again = SqliteStore(path)
    await again.open()
    try:
        assert await again.get_host_by_email("ANN@example.com") == host
        assert await again.get_meeting_by_number("12345678901") == meeting
        assert [(m.seq, m.text) for m in await again.list_chat(meeting.id)] == [(1, "hello")]
        [entry] = await again.query_audit()
        assert (entry.action, entry.source_ip) == ("customer.create", "::1")
    finally:
        await again.close()


async def test_calls_on_a_closed_store_raise(tmp_path):
    store = SqliteStore(str(tmp_path / "x.db"))
    with pytest.raises(StoreError):
        await store.list_customers()


# ---------------------------------------------------------------------- constraints


async def test_host_email_is_unique_across_customers(store):
    await make_host(store, "ann@example.com")
    other = await store.create_customer("Other", api_key_hash="other")
    with pytest.raises(Conflict) as caught:
        await store.create_host(other.id, " Ann@Example.com ", "Ann 2", "x")
    assert caught.value.field == "email"


async def test_host_of_unknown_customer_is_not_found(store):
    with pytest.raises(NotFound):
        await store.create_host("nope", "a@b.c", "A", "x")


async def test_meeting_number_is_unique_while_the_meeting_exists(store):
    host = await make_host(store)
    first = await make_meeting(store, host)
    with pytest.raises(Conflict) as caught:
        await make_meeting(store, host)
    assert caught.value.field == "meeting_number"
    await store.append_chat(first.id, "p", "n", "secret plans", 1)
    removed = await store.remove_meeting(first.id)
    assert removed.status == "removed"
    assert await store.get_meeting_by_number(first.meeting_number) is None
    assert await store.list_chat(first.id) == []  # its content went with it
    again = await make_meeting(store, host)  # the number is free once removed
    assert again.id != first.id


async def test_meeting_number_must_have_eleven_characters(store):
    host = await make_host(store)
    with pytest.raises(StoreError):
        await make_meeting(store, host, number="123")


async def test_updates_refuse_unknown_fields_and_rows(store):
    host = await make_host(store)
    meeting = await make_meeting(store, host)
    with pytest.raises(ValueError):
        await store.update_meeting(meeting.id, status="live")  # only start/end change status
    with pytest.raises(NotFound):
        await store.update_meeting("nope", title="x")
    updated = await store.update_meeting(meeting.id, title="New", locked=True, waiting_room=False)
    assert (updated.title, updated.locked, updated.waiting_room) == ("New", True, False)


async def test_the_database_itself_refuses_a_second_open_sign_in_and_a_held_number(store):
    """The cross-node rules are the schema's, whatever writes: a second open sign-in of a
    host (host_session_open) and a number a meeting holds (meeting_number_held)."""
    host = await make_host(store)
    await store.open_host_session(host.id, "s1", policy="replace")
    await make_meeting(store, host, "12345678901")
    with direct_connection(store) as (conn, refused):
        with pytest.raises(refused, match="host_session"):
            conn.execute(f"INSERT INTO host_session (id, host_id, created_at) VALUES ('s2', '{host.id}', 1)")
        with pytest.raises(refused, match="meeting"):
            conn.execute(
                "INSERT INTO meeting (id, meeting_number, host_id, customer_id, title, passcode, created_at)"
                f" VALUES ('m2', '12345678901', '{host.id}', '{host.customer_id}', 't', 'p', 1)"
            )
        conn.execute(f"INSERT INTO host_session (id, host_id, created_at, ended_at) VALUES ('s0', '{host.id}', 0, 0)")


async def test_audit_is_append_only_in_the_database(store, tmp_path):
    await store.append_audit(actor_kind="operator", actor_id="op", action="x", detail={"a": 1})
    with direct_connection(store) as (conn, refused):
        with pytest.raises(refused, match="append-only"):
            conn.execute("UPDATE audit SET action = 'y'")
        with pytest.raises(refused, match="append-only"):
            conn.execute("DELETE FROM audit")
    assert [e.detail for e in await store.query_audit(action="x")] == [{"a": 1}]


async def test_audit_query_filters(store):
    for action, target in (("host.create", "h1"), ("host.suspend", "h1"), ("customer.create", "c1")):
        await store.append_audit(actor_kind="operator", actor_id="op", action=action, target_id=target)
    assert [e.action for e in await store.query_audit(target_id="h1")] == ["host.suspend", "host.create"]
    assert len(await store.query_audit(limit=2)) == 2
    assert await store.query_audit(actor_kind="customer") == []
    assert len(await store.query_audit(since=0)) == 3


async def test_deleting_a_customer_takes_everything_below_it(store):
    host = await make_host(store)
    meeting = await make_meeting(store, host)
    await store.append_chat(meeting.id, "p", "n", "t", 1)
    await store.delete_customer(host.customer_id)
    assert await store.get_host(host.id) is None
    assert await store.get_meeting(meeting.id) is None
    assert await store.list_chat(meeting.id) == []
    with pytest.raises(NotFound):
        await store.delete_customer(host.customer_id)


# ---------------------------------------------------------------------- live sessions


async def test_start_and_end(store):
    host = await make_host(store)
    meeting = await make_meeting(store, host)
    live = await store.start_live_session(meeting.id, host.id, 1)
    assert (await store.get_meeting(meeting.id)).status == "live"
    with pytest.raises(AlreadyLive) as caught:
        await store.start_live_session(meeting.id, host.id, 1)
    assert caught.value.live_session.id == live.id
    p = await store.add_participant(meeting.id, name="Bob", role="participant", state="waiting", live_session_id=live.id)
    ended = await store.end_live_session(meeting.id, "host_ended")
    assert ended.id == live.id and ended.end_reason == "host_ended"
    assert (await store.get_meeting(meeting.id)).status == "ended"
    left = await store.get_participant(p.id)
    assert left.state == "left" and left.left_at is not None
    assert await store.end_live_session(meeting.id, "again") is None
    # An ended meeting can start again: a new live session.
    again = await store.start_live_session(meeting.id, host.id, 1)
    assert again.id != live.id


async def test_second_live_meeting_names_the_first(store):
    host = await make_host(store)
    first = await make_meeting(store, host, "11111111111")
    second = await make_meeting(store, host, "22222222222")
    await store.start_live_session(first.id, host.id, 1)
    with pytest.raises(HostHasLiveMeeting) as caught:
        await store.start_live_session(second.id, host.id, 1)
    assert (caught.value.meeting_id, caught.value.meeting_number) == (first.id, "11111111111")
    assert (await store.get_meeting(second.id)).status == "scheduled"
    await store.start_live_session(second.id, host.id, 2)  # a per-customer override of 2


async def test_customer_concurrent_limit(store):
    ann = await make_host(store, "ann@example.com")
    bob = await store.create_host(ann.customer_id, "bob@example.com", "Bob", "x")
    m1 = await make_meeting(store, ann, "11111111111")
    m2 = await make_meeting(store, bob, "22222222222")
    await store.start_live_session(m1.id, ann.id, 1, max_live_per_customer=1)
    with pytest.raises(CustomerLimitReached):
        await store.start_live_session(m2.id, bob.id, 1, max_live_per_customer=1)


async def test_removed_meeting_cannot_start_and_live_cannot_be_removed(store):
    host = await make_host(store)
    meeting = await make_meeting(store, host)
    await store.start_live_session(meeting.id, host.id, 1)
    with pytest.raises(StoreError):
        await store.remove_meeting(meeting.id)
    await store.end_live_session(meeting.id, "x")
    await store.remove_meeting(meeting.id)
    with pytest.raises(MeetingNotStartable):
        await store.start_live_session(meeting.id, host.id, 1)


async def test_racing_starts_in_one_process_exactly_one_wins(store):
    host = await make_host(store)
    meetings = [await make_meeting(store, host, f"{i:011d}") for i in range(1, 9)]
    results = await asyncio.gather(
        *(store.start_live_session(m.id, host.id, 1) for m in meetings), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, HostHasLiveMeeting) and r.meeting_id == winners[0].meeting_id for r in losers)
    assert len(await store.list_live_sessions(host_id=host.id)) == 1


async def test_racing_starts_through_two_connections_exactly_one_wins(tmp_path):
    """Two stores on one file: two threads, two connections. BEGIN IMMEDIATE makes the check
    and the insert one step, so the host limit holds across connections (and processes)."""
    path = str(tmp_path / "shared.db")
    a, b = SqliteStore(path), SqliteStore(path)
    await a.open()
    await b.open()
    try:
        host = await make_host(a)
        meetings = [await make_meeting(a, host, f"{i:011d}") for i in range(1, 11)]
        stores = [a, b] * 5
        results = await asyncio.gather(
            *(s.start_live_session(m.id, host.id, 1) for s, m in zip(stores, meetings)), return_exceptions=True
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(r, HostHasLiveMeeting) for r in results if isinstance(r, BaseException))
        assert [m.id for m in await b.list_meetings(statuses=["live"])] == [winners[0].meeting_id]
    finally:
        await a.close()
        await b.close()


async def test_end_all_live_sessions_at_startup(store):
    ann = await make_host(store, "ann@example.com")
    bob = await make_host(store, "bob@example.com")
    m1, m2 = await make_meeting(store, ann, "11111111111"), await make_meeting(store, bob, "22222222222")
    await store.start_live_session(m1.id, ann.id, 1)
    await store.start_live_session(m2.id, bob.id, 1)
    ended = await store.end_all_live_sessions("server_restart")
    assert {s.meeting_id for s in ended} == {m1.id, m2.id}
    assert all(s.end_reason == "server_restart" for s in ended)
    assert await store.list_live_sessions() == []
    assert {m.status for m in await store.list_meetings()} == {"ended"}


# ---------------------------------------------------------------------- host sessions


async def test_login_policy_replace_ends_the_old_session(store):
    host = await make_host(store)
    first, ended = await store.open_host_session(host.id, "s1", policy="replace")
    assert ended == []
    second, ended = await store.open_host_session(host.id, "s2", policy="replace")
    assert [s.id for s in ended] == ["s1"] and ended[0].end_reason == "signed_in_elsewhere"
    assert not (await store.get_host_session("s1")).active
    assert (await store.get_host_session("s2")).active


async def test_login_policy_refuse_under_concurrent_logins(store):
    host = await make_host(store)
    results = await asyncio.gather(
        *(store.open_host_session(host.id, f"s{i}", policy="refuse") for i in range(6)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, HostSessionActive) for r in results if isinstance(r, BaseException))
    ended = await store.end_host_sessions_of(host.id, "host_suspended")
    assert len(ended) == 1
    await store.open_host_session(host.id, "after", policy="refuse")


# ---------------------------------------------------------------------- participants and chat


async def test_capacity_is_atomic(store):
    host = await make_host(store)
    meeting = await make_meeting(store, host)
    results = await asyncio.gather(
        *(
            store.add_participant(meeting.id, name=f"p{i}", role="participant", state="waiting", max_present=3)
            for i in range(8)
        ),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 3
    assert all(isinstance(r, MeetingFull) for r in results if isinstance(r, BaseException))
    assert await store.count_participants(meeting.id) == 3


async def test_participant_state_changes(store):
    host = await make_host(store)
    meeting = await make_meeting(store, host)
    p = await store.add_participant(meeting.id, name="Bob", role="participant", state="waiting")
    assert p.live_session_id is None  # joined before the host started
    admitted = await store.update_participant(p.id, state="admitted")
    assert admitted.state == "admitted" and admitted.left_at is None
    removed = await store.update_participant(p.id, state="removed")
    assert removed.removed and removed.left_at is not None
    assert [x.id for x in await store.list_participants(meeting.id, states=["removed"])] == [p.id]
    with pytest.raises(StoreError):
        await store.update_participant(p.id, state="dancing")
    with pytest.raises(NotFound):
        await store.update_participant("nope", state="left")


async def test_chat_sequence_is_per_meeting_and_survives_deletion(store):
    host = await make_host(store)
    meeting = await make_meeting(store, host)
    seqs = await asyncio.gather(*(store.append_chat(meeting.id, "p", "n", f"m{i}", i) for i in range(5)))
    assert sorted(m.seq for m in seqs) == [1, 2, 3, 4, 5]
    assert [m.seq for m in await store.list_chat(meeting.id, limit=2)] == [4, 5]
    assert [m.seq for m in await store.list_chat(meeting.id, after_seq=3)] == [4, 5]
    assert await store.delete_chat(meeting.id) == 5
    assert (await store.append_chat(meeting.id, "p", "n", "after", 9)).seq == 6  # never reused
    with pytest.raises(NotFound):
        await store.append_chat("nope", "p", "n", "t", 1)


async def test_webhook_deliveries(store):
    customer = await store.create_customer("Acme", api_key_hash="k")
    for attempt, status in ((1, "failed"), (2, "delivered")):
        await store.record_webhook_delivery(
            customer_id=customer.id, event="meeting.started", payload="{}", attempt=attempt,
            status=status, response_code=500 if attempt == 1 else 200,
        )
    assert [d.attempt for d in await store.list_webhook_deliveries(customer.id)] == [2, 1]
    with pytest.raises(NotFound):
        await store.record_webhook_delivery(
            customer_id="nope", event="x", payload="{}", attempt=1, status="failed", response_code=None
        )


async def test_a_meeting_keeps_its_last_n_and_refuses_one_below_one(store):
    host = await make_host(store)
    meeting = await make_meeting(store, host)
    assert meeting.last_n is None  # the server's default
    assert (await store.update_meeting(meeting.id, last_n=4)).last_n == 4
    assert (await store.get_meeting(meeting.id)).last_n == 4
    with pytest.raises(store.IntegrityError):  # the schema's own check, under the API's
        await store.update_meeting(meeting.id, last_n=0)
    assert (await store.update_meeting(meeting.id, last_n=None)).last_n is None


async def test_a_meeting_lets_attendees_publish_unless_made_a_webinar(store):
    host = await make_host(store)
    ordinary = await make_meeting(store, host)
    webinar = await make_meeting(store, host, "12345678902", attendees_publish=False)
    assert ordinary.attendees_publish is True and (await store.get_meeting(ordinary.id)).attendees_publish is True
    assert (await store.get_meeting(webinar.id)).attendees_publish is False
    assert (await store.update_meeting(webinar.id, attendees_publish=True)).attendees_publish is True
    assert (await store.get_meeting_by_number("12345678902")).attendees_publish is True
