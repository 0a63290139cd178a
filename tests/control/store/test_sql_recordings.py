"""control/store, the recording part (migration 2): customer storage settings, recordings
and their files, the consent ledger — on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import asyncio

import pytest

from control.store import NotFound, RecordingActive
from control.store.sql import SqlStore
from control.store.sqlite import SqliteStore
from tests.support.stores import count_rows


async def make_meeting(store: SqlStore, number: str = "12345678901"):
    customer = await store.create_customer("Acme", api_key_hash=f"h-{number}")
    host = await store.create_host(customer.id, f"ann-{number}@example.com", "Ann", "hash")
    return await store.create_meeting(
        meeting_number=number, host_id=host.id, customer_id=customer.id, title="t", passcode="123456"
    )


# ---------------------------------------------------------------------- storage settings


async def test_customer_storage_is_replaced_and_survives_reopening(tmp_path):
    path = str(tmp_path / "conclave.db")
    store = SqliteStore(path)
    await store.open()
    customer = await store.create_customer("Acme", api_key_hash="h")
    assert await store.get_customer_storage(customer.id) is None
    await store.set_customer_storage(customer.id, {"kind": "local", "root": "/a"})
    s3 = {"kind": "s3", "bucket": "b", "access_key_id": "AK", "secret_access_key": "SK"}
    await store.set_customer_storage(customer.id, s3)
    await store.close()
    await store.open()
    assert await store.get_customer_storage(customer.id) == s3
    assert await store.delete_customer_storage(customer.id) is True
    assert await store.delete_customer_storage(customer.id) is False
    assert await store.get_customer_storage(customer.id) is None
    await store.close()


async def test_storage_of_unknown_customer_is_not_found(store):
    with pytest.raises(NotFound):
        await store.set_customer_storage("nobody", {"kind": "local", "root": "/a"})


# ---------------------------------------------------------------------- recordings


async def test_recording_lifecycle(store, clock):
    meeting = await make_meeting(store)
    live = await store.start_live_session(meeting.id, meeting.host_id, 1)
    clock.now = 1_010.0
    rec = await store.create_recording(
        meeting_id=meeting.id,
        customer_id=meeting.customer_id,
        kind="recording",
        started_by="p1",
        live_session_id=live.id,
        recording_id="rec-1",
        key_prefix="recordings/12345678901/rec-1/",
    )
    assert (rec.id, rec.state, rec.started_at, rec.stopped_at) == ("rec-1", "active", 1_010.0, None)
    assert [r.id for r in await store.active_recordings()] == ["rec-1"]
    clock.now = 1_070.0
    stopped = await store.update_recording("rec-1", state="stopped")
    assert (stopped.state, stopped.stopped_at) == ("stopped", 1_070.0)
    clock.now = 1_080.0  # stopped_at is kept by a later change (failed while uploading)
    failed = await store.update_recording("rec-1", state="failed", error="storage")
    assert (failed.state, failed.stopped_at, failed.error) == ("failed", 1_070.0, "storage")
    assert await store.active_recordings() == []
    assert await store.get_recording("rec-1") == failed
    assert await store.get_recording("nope") is None


async def test_one_active_run_per_meeting_and_kind(store):
    meeting = await make_meeting(store)
    common = {"meeting_id": meeting.id, "customer_id": meeting.customer_id, "started_by": "host"}
    first = await store.create_recording(kind="recording", **common)
    transcription = await store.create_recording(kind="transcription", **common)
    with pytest.raises(RecordingActive) as refused:
        await store.create_recording(kind="recording", **common)
    assert refused.value.recording.id == first.id
    await store.update_recording(first.id, state="stopped")
    second = await store.create_recording(kind="recording", **common)
    # The unique index backs the check: reviving the stopped one is refused too.
    with pytest.raises(RecordingActive):
        await store.update_recording(first.id, state="active")
    assert [r.id for r in await store.list_recordings(meeting.id)] == [first.id, transcription.id, second.id]
    assert [r.id for r in await store.list_recordings(meeting.id, kind="transcription")] == [transcription.id]


async def test_racing_starts_exactly_one_wins(store):
    meeting = await make_meeting(store)

    async def start():
        return await store.create_recording(
            meeting_id=meeting.id, customer_id=meeting.customer_id, kind="recording", started_by="host"
        )

    results = await asyncio.gather(*(start() for _ in range(8)), return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, RecordingActive) for r in results if r not in winners)


async def test_recording_refusals(store):
    meeting = await make_meeting(store)
    with pytest.raises(NotFound):
        await store.create_recording(meeting_id="x", customer_id=meeting.customer_id, kind="recording", started_by="")
    with pytest.raises(ValueError):
        await store.create_recording(
            meeting_id=meeting.id, customer_id=meeting.customer_id, kind="video", started_by=""
        )
    with pytest.raises(NotFound):
        await store.update_recording("nope", state="stopped")
    rec = await store.create_recording(
        meeting_id=meeting.id, customer_id=meeting.customer_id, kind="recording", started_by=""
    )
    with pytest.raises(ValueError):
        await store.update_recording(rec.id, meeting_id="other")
    with pytest.raises(ValueError):
        await store.update_recording(rec.id, state="paused")
    with pytest.raises(NotFound):
        await store.delete_recording("nope")


async def test_files_are_listed_in_order_and_a_reupload_keeps_the_row(store, clock):
    meeting = await make_meeting(store)
    rec = await store.create_recording(
        meeting_id=meeting.id, customer_id=meeting.customer_id, kind="recording", started_by="host"
    )
    a = await store.add_recording_file(
        rec.id, key="p/a-0.webm", kind="track", size=10, sha256="aa", content_type="video/webm", track_id="t1",
        start=0.0, end=10.0,
    )  # fmt: skip
    clock.now += 1
    b = await store.add_recording_file(rec.id, key="p/mix-0.ogg", kind="mix", size=5)
    clock.now += 1
    again = await store.add_recording_file(rec.id, key="p/a-0.webm", kind="track", size=11, sha256="bb", track_id="t1")
    assert again.id == a.id
    files = await store.list_recording_files(rec.id)
    assert [(f.key, f.size, f.sha256) for f in files] == [("p/mix-0.ogg", 5, ""), ("p/a-0.webm", 11, "bb")]
    assert await store.get_recording_file(b.id) == b
    assert (a.start, a.end, a.content_type) == (0.0, 10.0, "video/webm")
    with pytest.raises(NotFound):
        await store.add_recording_file("nope", key="k", kind="track")


async def test_deleting_a_recording_takes_its_files_but_not_the_ledger(store):
    meeting = await make_meeting(store)
    rec = await store.create_recording(
        meeting_id=meeting.id, customer_id=meeting.customer_id, kind="recording", started_by="host"
    )
    f = await store.add_recording_file(rec.id, key="k", kind="manifest")
    entry = await store.add_consent(meeting_id=meeting.id, participant_id="p", name="Bo", recording_id=rec.id)
    await store.delete_recording(rec.id)
    assert await store.get_recording(rec.id) is None
    assert await store.get_recording_file(f.id) is None
    assert [e.recording_id for e in await store.list_consent(meeting.id)] == [entry.recording_id]


async def test_deleting_a_customer_takes_its_recording_rows(store, tmp_path):
    meeting = await make_meeting(store)
    await store.set_customer_storage(meeting.customer_id, {"kind": "local", "root": "/a"})
    rec = await store.create_recording(
        meeting_id=meeting.id, customer_id=meeting.customer_id, kind="recording", started_by="host"
    )
    await store.add_recording_file(rec.id, key="k", kind="track")
    await store.add_consent(meeting_id=meeting.id, participant_id="p", name="Bo")
    await store.delete_customer(meeting.customer_id)
    for table in ("customer_storage", "recording", "recording_file", "consent"):
        assert count_rows(store, table) == 0, table


# ---------------------------------------------------------------------- consent ledger


async def test_consent_ledger(store, clock):
    meeting = await make_meeting(store)
    live = await store.start_live_session(meeting.id, meeting.host_id, 1)
    first = await store.add_consent(
        meeting_id=meeting.id, participant_id="p1", name="Bo", live_session_id=live.id, channels=["banner", "event"]
    )
    assert (first.decision, first.decided_at, first.notified_at) == ("pending", None, 1_000.0)
    clock.now = 1_005.0
    decided = await store.update_consent(first.id, decision="continued", channels=("banner", "audio", "event"))
    assert (decided.decision, decided.decided_at) == ("continued", 1_005.0)
    assert decided.channels == ["banner", "audio", "event"]
    clock.now = 1_009.0
    later = await store.add_consent(meeting_id=meeting.id, participant_id="p2", name="Cy", decision="left")
    assert later.decided_at == 1_009.0
    assert [e.id for e in await store.list_consent(meeting.id)] == [first.id, later.id]
    assert [e.id for e in await store.list_consent(meeting.id, live.id)] == [first.id]
    assert (await store.list_consent(meeting.id))[0] == decided
    with pytest.raises(ValueError):
        await store.update_consent(first.id, decision="maybe")
    with pytest.raises(ValueError):
        await store.update_consent(first.id, participant_id="p9")
    with pytest.raises(NotFound):
        await store.update_consent("nope", decision="left")
    with pytest.raises(NotFound):
        await store.add_consent(meeting_id="nope", participant_id="p", name="x")
