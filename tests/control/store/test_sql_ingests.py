"""control/store, the ingest part (migration 6) on a real SQLite file and a real
PostgreSQL database."""

from __future__ import annotations

import pytest

from control.store import NotFound
from control.store.sql import SqlStore
from tests.support.stores import count_rows

pytestmark = pytest.mark.timeout(30)


async def make_meeting(store: SqlStore):
    customer = await store.create_customer("Acme", api_key_hash="h")
    host = await store.create_host(customer.id, "ann@example.com", "Ann", "hash")
    meeting = await store.create_meeting(
        meeting_number="12345678901", host_id=host.id, customer_id=customer.id, title="t", passcode="123456"
    )
    return host, meeting


async def test_an_ingest_is_kept_listed_and_ended_once(store, clock):
    host, meeting = await make_meeting(store)
    whip = await store.create_ingest(
        meeting_id=meeting.id, live_session_id=None, kind="whip", name="OBS", created_by=host.id,
        expires_at=5000.0, token_hash="ab" * 32,
    )  # fmt: skip
    clock.now += 1
    rtp = await store.create_ingest(
        meeting_id=meeting.id, live_session_id=None, kind="rtp", name="ffmpeg", created_by=host.id,
        expires_at=5000.0, details={"port": 40000, "video_ssrc": 1},
    )  # fmt: skip
    assert (await store.get_ingest(whip.id)).token_hash == "ab" * 32
    assert (await store.get_ingest(rtp.id)).details == {"port": 40000, "video_ssrc": 1}
    assert [i.id for i in await store.list_ingests(meeting.id)] == [whip.id, rtp.id]

    clock.now += 1
    revoked = await store.update_ingest(whip.id, state="revoked", end_reason="host")
    assert (revoked.state, revoked.ended_at, revoked.active) == ("revoked", clock.now, False)
    clock.now += 1
    again = await store.update_ingest(whip.id, state="ended", end_reason="meeting_ended")
    assert again.ended_at == revoked.ended_at  # the first end is when it stopped working
    assert [i.id for i in await store.list_ingests(meeting.id, states=["active"])] == [rtp.id]


async def test_bad_ingest_changes_are_refused(store):
    host, meeting = await make_meeting(store)
    with pytest.raises(NotFound):
        await store.create_ingest(meeting_id="nope", live_session_id=None, kind="rtp", name="x", created_by=host.id,
                                  expires_at=1.0)  # fmt: skip
    with pytest.raises(ValueError):
        await store.create_ingest(meeting_id=meeting.id, live_session_id=None, kind="rtmp", name="x",
                                  created_by=host.id, expires_at=1.0)  # fmt: skip
    ingest = await store.create_ingest(meeting_id=meeting.id, live_session_id=None, kind="rtp", name="x",
                                       created_by=host.id, expires_at=1.0)  # fmt: skip
    with pytest.raises(ValueError):
        await store.update_ingest(ingest.id, state="paused")
    with pytest.raises(ValueError):
        await store.update_ingest(ingest.id, kind="whip")
    with pytest.raises(NotFound):
        await store.update_ingest("missing", state="ended")


async def test_ingests_go_with_their_meeting(store, tmp_path):
    host, meeting = await make_meeting(store)
    await store.create_ingest(meeting_id=meeting.id, live_session_id=None, kind="rtp", name="x", created_by=host.id,
                              expires_at=1.0)  # fmt: skip
    await store.delete_host(host.id)  # cascades to the meeting
    assert count_rows(store, "ingest") == 0
