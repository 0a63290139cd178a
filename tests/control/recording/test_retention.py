"""control.recording.retention: the periodic purge on an injected clock (no sleeping), over
a real SQLite store: old webhook deliveries and participant rows go, a live session's
people stay, pending storage deletions are retried (a local storage that comes back), done
ones are forgotten after their days; the timer stops at shutdown and the purge running
then is the background tasks' to drain."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from config import RetentionConfig
from control.recording.deletion import StorageDeletions
from control.recording.retention import FIRST_PURGE_AFTER_S, Retention
from control.store.sqlite import SqliteStore
from control.tasks import BackgroundTasks
from tests.support.clock import FakeClock

SETTINGS = RetentionConfig(webhook_deliveries_days=2, participants_days=10, deleted_recordings_days=5,
                           purge_interval_s=3600)  # fmt: skip


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "conclave.db"), clock=clock.time)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def run_due(clock: FakeClock, tasks: BackgroundTasks, seconds: float) -> None:
    """Advance the clock and let what that started finish."""
    clock.advance(seconds)
    await tasks.wait(10)


async def run_hours(clock: FakeClock, tasks: BackgroundTasks, hours: int) -> None:
    for _ in range(hours):
        await run_due(clock, tasks, SETTINGS.purge_interval_s)


async def test_purges_run_on_the_clock_and_keep_what_is_live(store, clock, tmp_path):
    customer = await store.create_customer("Acme", api_key_hash="h")
    host = await store.create_host(customer.id, "ann@example.com", "Ann", "hash")
    meeting = await store.create_meeting(meeting_number="12345678901", host_id=host.id, customer_id=customer.id,
                                         title="t", passcode="123456")  # fmt: skip
    ended = await store.start_live_session(meeting.id, host.id, 5, None)
    await store.add_participant(meeting.id, name="Old", role="participant", state="left", live_session_id=ended.id)
    await store.end_live_session(meeting.id, "ended")
    payload = json.dumps({"event": "participant.joined", "data": {"meeting_id": meeting.id, "name": "Old"}})
    await store.record_webhook_delivery(customer_id=customer.id, event="participant.joined", payload=payload,
                                        attempt=1, status="delivered", response_code=200)  # fmt: skip
    live = await store.start_live_session(meeting.id, host.id, 5, None)
    await store.add_participant(meeting.id, name="Marathon", role="participant", state="admitted",
                                live_session_id=live.id)  # fmt: skip
    # A deleted recording whose files went from its storage at once: done, kept 5 days.
    recording = await store.create_recording(meeting_id=meeting.id, customer_id=customer.id, kind="recording",
                                             started_by="Ann", key_prefix="recordings/x/",
                                             storage={"kind": "local", "root": str(tmp_path / "storage")})  # fmt: skip
    deletions = StorageDeletions(store)
    done = await deletions.attempt(await store.retire_recording(recording.id))
    assert done.state == "done"

    tasks = BackgroundTasks()
    retention = Retention(store=store, deletions=deletions, settings=SETTINGS, clock=clock, tasks=tasks)
    retention.start()
    await run_due(clock, tasks, FIRST_PURGE_AFTER_S - 1)
    assert retention.purges == 0
    await run_due(clock, tasks, 1)
    assert retention.purges == 1
    assert len(await store.list_webhook_deliveries(customer.id)) == 1  # nothing old enough yet

    await run_hours(clock, tasks, 3 * 24)  # a purge every hour
    assert retention.purges == 1 + 3 * 24
    assert await store.list_webhook_deliveries(customer.id) == []  # older than 2 days
    assert [p.name for p in await store.list_participants(meeting.id)] == ["Old", "Marathon"]
    assert await store.get_storage_deletion(done.id) is not None
    await run_hours(clock, tasks, 8 * 24)
    assert [p.name for p in await store.list_participants(meeting.id)] == ["Marathon"]  # live: kept
    assert await store.get_storage_deletion(done.id) is None  # done 11 days ago, kept 5

    retention.stop()
    purges = retention.purges
    await run_hours(clock, tasks, 24)
    assert retention.purges == purges and clock.pending() == []
    await tasks.drain(1)


async def test_a_pending_storage_deletion_is_retried_until_its_storage_takes_it(store, clock, tmp_path):
    customer = await store.create_customer("Acme", api_key_hash="h")
    host = await store.create_host(customer.id, "ann@example.com", "Ann", "hash")
    meeting = await store.create_meeting(meeting_number="12345678901", host_id=host.id, customer_id=customer.id,
                                         title="t", passcode="123456")  # fmt: skip
    root = tmp_path / "storage"
    root.mkdir()
    (root / "recordings").write_text("in the way")  # the storage refuses for now
    recording = await store.create_recording(meeting_id=meeting.id, customer_id=customer.id, kind="recording",
                                             started_by="Ann", key_prefix="recordings/x/",
                                             storage={"kind": "local", "root": str(root)})  # fmt: skip
    await store.add_recording_file(recording.id, key="recordings/x/a.ogg", kind="track")
    deletions = StorageDeletions(store)
    deletion = await deletions.attempt(await store.retire_recording(recording.id))
    assert (deletion.state, deletion.attempts) == ("pending", 1) and "recordings/x/a.ogg" in deletion.last_error

    tasks = BackgroundTasks()
    retention = Retention(store=store, deletions=deletions, settings=SETTINGS, clock=clock, tasks=tasks)
    retention.start()
    await run_due(clock, tasks, FIRST_PURGE_AFTER_S)
    assert (await store.get_storage_deletion(deletion.id)).attempts == 2  # tried again, still refused
    (root / "recordings").unlink()  # the storage is back
    await run_due(clock, tasks, SETTINGS.purge_interval_s)
    after = await store.get_storage_deletion(deletion.id)
    assert (after.state, after.attempts, after.last_error) == ("done", 3, "")
    retention.stop()
    await tasks.drain(1)
