"""control/store, deletion and retention (migration 3): a recording keeps the storage it was
written to; a deleted one leaves what is to go from that storage (outliving its customer);
a meeting's people data goes on request; the purges keep what is still live; the chat has
a per-meeting bound (on SQLite and PostgreSQL); and a SQLite file of the hand-rolled
migrations upgrades in place."""

from __future__ import annotations

import json
import sqlite3

import pytest

from control.store import NotFound
from control.store.schema import SCHEMA_VERSION
from control.store.sql import SqlStore
from control.store.sqlite import SqliteStore
from control.store.sqlite_legacy import LEGACY_MIGRATIONS

S3 = {"kind": "s3", "bucket": "old", "access_key_id": "AK", "secret_access_key": "SK-old"}


async def make_meeting(store: SqlStore, number: str = "12345678901", customer_id: str | None = None):
    if customer_id is None:
        customer_id = (await store.create_customer("Acme", api_key_hash=f"h-{number}")).id
    host = await store.create_host(customer_id, f"ann-{number}@example.com", "Ann", "hash")
    return await store.create_meeting(
        meeting_number=number, host_id=host.id, customer_id=customer_id, title="t", passcode="123456"
    )


async def recording_with_files(store: SqlStore, meeting, storage=None, keys=("a.ogg", "b.ogg")):
    recording = await store.create_recording(
        meeting_id=meeting.id, customer_id=meeting.customer_id, kind="recording", started_by="Ann",
        key_prefix="recordings/x/", storage=storage,
    )  # fmt: skip
    await store.update_recording(recording.id, state="stopped")
    for key in keys:
        await store.add_recording_file(recording.id, key="recordings/x/" + key, kind="track")
    return recording


# ---------------------------------------------------------------------- deleted recordings


async def test_a_recording_keeps_its_storage_whatever_the_customer_sets_later(store):
    meeting = await make_meeting(store)
    await store.set_customer_storage(meeting.customer_id, S3)
    recording = await recording_with_files(store, meeting, storage=S3)
    await store.set_customer_storage(meeting.customer_id, {"kind": "local", "root": "/new"})
    assert await store.get_recording_storage(recording.id) == S3
    assert "SK-old" not in repr(await store.get_recording(recording.id))  # not in the record

    deletion = await store.retire_recording(recording.id)
    assert await store.get_recording(recording.id) is None
    assert await store.list_recording_files(recording.id) == []
    assert (deletion.state, deletion.storage, deletion.key_prefix) == ("pending", S3, "recordings/x/")
    assert deletion.keys == ["recordings/x/a.ogg", "recordings/x/b.ogg"]
    assert "SK-old" not in repr(deletion)
    assert await store.storage_deletion_of(recording.id) == deletion
    with pytest.raises(NotFound):
        await store.retire_recording(recording.id)


async def test_a_recording_without_its_own_storage_falls_back_to_the_customers(store):
    meeting = await make_meeting(store)
    recording = await recording_with_files(store, meeting, storage=None)
    await store.set_customer_storage(meeting.customer_id, S3)
    assert await store.get_recording_storage(recording.id) is None
    assert (await store.retire_recording(recording.id)).storage == S3
    bare = await recording_with_files(store, await make_meeting(store, "22222222222"))
    assert (await store.retire_recording(bare.id)).storage is None  # nobody knows where: kept pending


async def test_deletions_outlive_the_customer_and_are_listed_and_updated(store, clock):
    meeting = await make_meeting(store)
    first = await store.retire_recording((await recording_with_files(store, meeting, storage=S3)).id)
    clock.now += 10
    second = await store.retire_recording((await recording_with_files(store, meeting, storage=S3)).id)
    await store.delete_customer(meeting.customer_id)
    assert [d.id for d in await store.list_storage_deletions()] == [first.id, second.id]
    assert [d.id for d in await store.list_storage_deletions(customer_id=meeting.customer_id)] == [first.id, second.id]
    clock.now += 5
    done = await store.update_storage_deletion(first.id, state="done", attempts=1, keys=[*first.keys, "late"])
    assert (done.state, done.attempts, done.keys[-1], done.updated_at) == ("done", 1, "late", clock.now)
    assert [d.id for d in await store.list_storage_deletions(state="pending")] == [second.id]
    with pytest.raises(ValueError):
        await store.update_storage_deletion(first.id, state="forgotten")
    with pytest.raises(ValueError):
        await store.update_storage_deletion(first.id, storage={})
    with pytest.raises(NotFound):
        await store.update_storage_deletion("nope", state="done")

    # Only `done` ones are purged, by when they last changed.
    assert await store.purge_storage_deletions(before=clock.now) == 0
    assert await store.purge_storage_deletions(before=clock.now + 1) == 1
    assert [d.id for d in await store.list_storage_deletions()] == [second.id]


# ---------------------------------------------------------------------- a meeting's people


async def test_remove_meeting_data_takes_chat_people_ledger_and_webhook_payloads(store):
    meeting = await make_meeting(store)
    other = await make_meeting(store, "22222222222", customer_id=meeting.customer_id)
    ended = await store.start_live_session(meeting.id, meeting.host_id, 5, None)
    await store.add_participant(meeting.id, name="Old Ann", role="participant", state="left", live_session_id=ended.id)
    await store.end_live_session(meeting.id, "ended")
    live = await store.start_live_session(meeting.id, meeting.host_id, 5, None)
    await store.add_participant(meeting.id, name="Now Bo", role="participant", state="admitted", live_session_id=live.id)
    for target in (meeting, other):
        await store.append_chat(target.id, "p", "Ann", "hi", 1)
        await store.add_consent(meeting_id=target.id, participant_id="p", name="Ann", live_session_id=ended.id)
        payload = json.dumps({"event": "participant.joined", "data": {"meeting_id": target.id, "name": "Ann"}})
        await store.record_webhook_delivery(customer_id=target.customer_id, event="participant.joined",
                                            payload=payload, attempt=1, status="delivered", response_code=200)  # fmt: skip
    await store.record_webhook_delivery(customer_id=meeting.customer_id, event="x", payload="not json", attempt=1,
                                        status="gave_up", response_code=None)  # fmt: skip

    removed = await store.remove_meeting_data(meeting.id, keep_live_session_id=live.id)
    assert removed == {"chat_messages": 1, "participants": 1, "consent_entries": 1, "webhook_deliveries": 1}
    assert [p.name for p in await store.list_participants(meeting.id)] == ["Now Bo"]  # the live session's stay
    assert await store.list_chat(meeting.id) == [] and await store.list_consent(meeting.id) == []
    left = await store.list_webhook_deliveries(meeting.customer_id)
    assert sorted(d.meeting_id or "" for d in left) == sorted(["", other.id])
    assert len(await store.list_chat(other.id)) == 1 and len(await store.list_consent(other.id)) == 1

    assert (await store.remove_meeting_data(meeting.id))["participants"] == 1  # everything


# ---------------------------------------------------------------------- retention


async def test_purges_take_old_rows_but_never_a_live_sessions_people(store, clock):
    meeting = await make_meeting(store)
    waiting_meeting = await make_meeting(store, "22222222222", customer_id=meeting.customer_id)
    clock.now = 1_000.0
    old_session = await store.start_live_session(meeting.id, meeting.host_id, 5, None)
    await store.add_participant(meeting.id, name="Old", role="participant", state="left",
                                live_session_id=old_session.id)  # fmt: skip
    await store.add_participant(waiting_meeting.id, name="Never started", role="participant", state="waiting")
    await store.end_live_session(meeting.id, "ended")
    long_one = await store.start_live_session(meeting.id, meeting.host_id, 5, None)
    await store.add_participant(meeting.id, name="Still here", role="participant", state="admitted",
                                live_session_id=long_one.id)  # fmt: skip
    await store.record_webhook_delivery(customer_id=meeting.customer_id, event="e", payload="{}", attempt=1,
                                        status="delivered", response_code=200)  # fmt: skip
    clock.now = 2_000.0
    await store.add_participant(meeting.id, name="New", role="participant", state="admitted",
                                live_session_id=long_one.id)  # fmt: skip
    await store.record_webhook_delivery(customer_id=meeting.customer_id, event="e", payload="{}", attempt=1,
                                        status="delivered", response_code=200)  # fmt: skip

    assert await store.purge_webhook_deliveries(before=1_500.0) == 1
    assert [d.ts for d in await store.list_webhook_deliveries(meeting.customer_id)] == [2_000.0]
    assert await store.purge_participants(before=1_500.0) == 2  # "Old" and the never started one
    assert sorted(p.name for p in await store.list_participants(meeting.id)) == ["New", "Still here"]
    await store.end_live_session(meeting.id, "ended")
    assert await store.purge_participants(before=1_500.0) == 1  # "Still here" now
    assert [p.name for p in await store.list_participants(meeting.id)] == ["New"]


async def test_chat_keeps_the_latest_messages_of_each_meeting(store):
    meeting = await make_meeting(store)
    other = await make_meeting(store, "22222222222", customer_id=meeting.customer_id)
    await store.append_chat(other.id, "p", "Ann", "other", 1)
    for n in range(1, 8):
        await store.append_chat(meeting.id, "p", "Ann", f"m{n}", n, keep=3)
    assert [m.text for m in await store.list_chat(meeting.id)] == ["m5", "m6", "m7"]
    assert [m.seq for m in await store.list_chat(meeting.id)] == [5, 6, 7]  # numbering goes on
    assert [m.text for m in await store.list_chat(other.id)] == ["other"]


# ---------------------------------------------------------------------- upgrading


async def test_a_database_of_the_previous_schema_upgrades_in_place(tmp_path):
    path = tmp_path / "conclave.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for version, statements in enumerate(LEGACY_MIGRATIONS[:2], start=1):
        for statement in statements:
            db.execute(statement)
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    db.execute("INSERT INTO customer (id, name, created_at) VALUES ('c1', 'Acme', 1)")
    db.execute("INSERT INTO customer (id, name, created_at) VALUES ('c2', 'Bare', 1)")
    db.execute("INSERT INTO customer_storage VALUES ('c1', ?, 1)", (json.dumps(S3),))
    db.execute("INSERT INTO host (id, customer_id, email, name, password_hash, created_at)"
               " VALUES ('h1', 'c1', 'a@x', 'Ann', 'x', 1)")  # fmt: skip
    db.execute("INSERT INTO meeting (id, meeting_number, host_id, customer_id, title, passcode, created_at)"
               " VALUES ('m1', '12345678901', 'h1', 'c1', 't', 'p', 1)")  # fmt: skip
    db.execute("INSERT INTO recording (id, meeting_id, customer_id, kind, state, started_at, key_prefix)"
               " VALUES ('r1', 'm1', 'c1', 'recording', 'stopped', 1, 'recordings/x/')")  # fmt: skip
    db.execute("INSERT INTO webhook_delivery (id, customer_id, event, payload, attempt, status, ts)"
               " VALUES ('w1', 'c1', 'e', ?, 1, 'delivered', 1)",
               (json.dumps({"event": "e", "data": {"meeting_id": "m1", "name": "Ann"}}),))  # fmt: skip
    db.execute("INSERT INTO webhook_delivery (id, customer_id, event, payload, attempt, status, ts)"
               " VALUES ('w2', 'c1', 'e', 'garbage', 1, 'delivered', 1)")  # fmt: skip
    db.execute("INSERT INTO webhook_delivery (id, customer_id, event, payload, attempt, status, ts)"
               " VALUES ('w3', 'c1', 'e', '{\"data\": {\"meeting_id\": 5}}', 1, 'delivered', 1)")  # fmt: skip
    db.close()

    store = SqliteStore(str(path))
    await store.open()
    try:
        assert await store.schema_version() == SCHEMA_VERSION == 9
        assert await store.get_recording_storage("r1") == S3  # frozen to the customer's settings of then
        by_id = {d.id: d.meeting_id for d in await store.list_webhook_deliveries("c1")}
        assert by_id == {"w1": "m1", "w2": None, "w3": None}
        assert (await store.remove_meeting_data("m1"))["webhook_deliveries"] == 1
        deletion = await store.retire_recording("r1")
        assert (deletion.storage, deletion.key_prefix) == (S3, "recordings/x/")
        # Migration 4: host sign-ins of before have no stored use (idle from their start).
        session, _ = await store.open_host_session("h1", "s1", policy="replace")
        assert session.last_used_at is None
        await store.touch_host_session("s1", 42.0)
        assert (await store.get_host_session("s1")).last_used_at == 42.0
        # Migration 5: meetings of before have no last-N of their own (the default).
        assert (await store.get_meeting("m1")).last_n is None
        assert (await store.update_meeting("m1", last_n=4)).last_n == 4
        # Revision 9: meetings of before let everyone publish (not webinars).
        assert (await store.get_meeting("m1")).attendees_publish is True
        assert (await store.update_meeting("m1", attendees_publish=False)).attendees_publish is False
        # Migration 6: WHEP viewer tokens of the meeting, revocable once and for all.
        token = await store.create_viewer_token("m1", "lobby", 100.0)
        revoked = await store.revoke_viewer_token(token.id)
        assert revoked.revoked_at is not None and (await store.revoke_viewer_token(token.id)) == revoked
        assert [t.id for t in await store.list_viewer_tokens("m1")] == [token.id]
    finally:
        await store.close()
