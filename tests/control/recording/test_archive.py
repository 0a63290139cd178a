"""Deleted means deleted (control.recording.archive, control.recording.deletion and the
recorder's RECORDING_DISCARD), end to end: control + a real SFU worker + the real recorder
process, a bot publishing its voice, a real S3 server (SeaweedFS) that goes away.

What is tried, as a user or an attacker would:
- a recording deleted while its files still wait in the recorder's spool (the storage is
  down): the answer says the storage still holds files (202), nothing of it is left on the
  server, and once the storage is back and the deletion retried the bucket holds nothing
  of it, nor ever again (the recorder uploads nothing more);
- a recording deleted while the recorder is down: the recorder is told when it is back,
  and drops the work its killed predecessor left;
- the same, but control forgot to tell it (it restarted): the recorder finishes the
  orphaned work and uploads it; control refuses every file and deletes it from the bucket;
- a recording is deleted from the storage it was written to, not the customer's new one;
- deleting a host or a customer takes their meetings' files and people data; a storage
  that cannot be reached is reported (202) and listed for the operator.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from client.bot import Bot
from tests.support.seaweed import SeaweedServer, require_weed

PREFIX = "acme/"


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    require_weed()
    with SeaweedServer(tmp_path_factory.mktemp("seaweed-archive")) as server:
        yield server


@pytest.fixture
def bucket(seaweed: SeaweedServer) -> Iterator[SeaweedServer]:
    if seaweed.process is None:
        seaweed.start()
    yield seaweed
    if seaweed.process is None:  # a failed test must not leave storage down for the next
        seaweed.start()


async def wait_for(predicate, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


def objects(seaweed: SeaweedServer, prefix: str) -> list[str]:
    listed = seaweed.client().list_objects_v2(Bucket=seaweed.buckets[0], Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", [])]


def spooled_recordings(data_dir: Path) -> set[str]:
    """The recordings the recorder's spool holds files of (from the sidecars)."""
    found = set()
    for sidecar in (data_dir / "spool").glob("*.json"):
        target = json.loads(json.loads(sidecar.read_text())["target"])
        found.add(target["recording_id"])
    return found


async def s3_host(server: Any, seaweed: SeaweedServer) -> dict[str, Any]:
    host = await server.new_host(limits={"max_live_meetings_per_host": 10, "max_concurrent_meetings": 10})
    await server.call("PUT", f"/customers/{host['customer_id']}/storage", token=server.operator_key,
                      json_body=seaweed.settings(prefix=PREFIX))  # fmt: skip
    return host


async def recording_voice(server: Any, seaweed: SeaweedServer) -> tuple[dict[str, Any], Bot, str, str]:
    """A meeting of an S3 customer, its host's bot speaking, recording on: (meeting, bot,
    recording id, the bucket prefix of its files)."""
    owner = await s3_host(server, seaweed)
    meeting = await server.create_meeting(host=owner)
    host = Bot(server.base_url, meeting["meeting_number"], "Host", token=meeting["host_token"])
    await host.start(publish_video=False)
    await host.signaling.request({"type": "recording", "action": "start"}, timeout=30)
    [recording] = await server.services.store.list_recordings(meeting["meeting_id"])
    return meeting, host, recording.id, PREFIX + recording.key_prefix


async def test_a_recording_deleted_while_its_files_wait_in_the_spool_never_reaches_the_bucket(
    conclave_server_factory, bucket
):
    server = await conclave_server_factory(recorder={"segment_seconds": 1.0})
    data_dir = Path(server.services.cfg.data_dir)
    store = server.services.store
    meeting, host, recording_id, prefix = await recording_voice(server, bucket)
    try:
        async def some_uploaded() -> bool:
            return bool(await store.list_recording_files(recording_id))

        await wait_for(some_uploaded, 15, "a first file in the bucket")
        await asyncio.to_thread(bucket.stop)  # the storage goes away; segments wait in the spool
        await asyncio.sleep(2.5)
        await host.signaling.request({"type": "recording", "action": "stop"}, timeout=40)

        async def spooled() -> bool:
            return recording_id in spooled_recordings(data_dir)

        await wait_for(spooled, 10, "files of the recording in the spool")

        status, body, _ = await server.api("DELETE", f"/recordings/{recording_id}", token=meeting["host_session"])
        assert status == 202, body
        [pending] = body["storage_pending"]
        assert (pending["recording_id"], pending["state"]) == (recording_id, "pending")
        # Nothing of it is left on the server: rows, spool, work directory.
        assert await store.get_recording(recording_id) is None
        assert await store.list_recording_files(recording_id) == []
        assert recording_id not in spooled_recordings(data_dir)
        assert not (data_dir / "recordings" / recording_id).exists()
        assert len(await store.list_consent(meeting["meeting_id"])) == 1  # the ledger is evidence: kept
        status, _, _ = await server.api("GET", f"/recordings/{recording_id}", token=meeting["host_session"])
        assert status == 403  # gone: looks like anyone else's

        await asyncio.to_thread(bucket.start)  # back: the operator retries (the purge would too)
        retried = await server.call("POST", f"/storage-deletions/{pending['id']}/retry", token=server.operator_key)
        assert retried["state"] == "done"
        assert objects(bucket, prefix) == []
        await asyncio.sleep(3)  # what the spool held would have been retried by now
        assert objects(bucket, prefix) == [] and await store.list_recording_files(recording_id) == []
        listed = await server.call("GET", "/storage-deletions?state=done", token=server.operator_key)
        assert pending["id"] in [d["id"] for d in listed["deletions"]]
    finally:
        await host.stop()


async def test_a_recording_deleted_while_the_recorder_is_down_is_dropped_when_it_is_back(
    conclave_server_factory, bucket
):
    # The recorder comes back 3 s after it died: time to stop and delete the recording.
    server = await conclave_server_factory(sfu={"restart_backoff_s": 3.0},
                                           recorder={"segment_seconds": 1.0, "orphan_grace_s": 1.0})  # fmt: skip
    data_dir = Path(server.services.cfg.data_dir)
    recorder = server.services.recorder
    meeting, host, recording_id, prefix = await recording_voice(server, bucket)
    try:
        await asyncio.sleep(2.5)
        killed = recorder.pid
        os.kill(killed, signal.SIGKILL)  # its work directory stays behind, unfinished
        await wait_for(lambda: _true(not recorder.up), 5, "the recorder to be seen down")
        await host.signaling.request({"type": "recording", "action": "stop"}, timeout=40)
        await server.call("DELETE", f"/recordings/{recording_id}", token=meeting["host_session"], expect=204)
        assert objects(bucket, prefix) == []

        await wait_for(lambda: _true(recorder.up and recorder.pid != killed), 20, "the recorder back")
        await wait_for(lambda: _true(not (data_dir / "recordings" / recording_id).exists()), 10,
                       "the orphaned work directory dropped")  # fmt: skip
        await asyncio.sleep(2.5)  # past the orphan grace: nothing was finished and uploaded
        assert objects(bucket, prefix) == [] and recording_id not in spooled_recordings(data_dir)
    finally:
        await host.stop()


async def test_an_upload_of_a_deleted_recording_is_refused_and_deleted_from_the_bucket(
    conclave_server_factory, bucket
):
    server = await conclave_server_factory(sfu={"restart_backoff_s": 3.0},
                                           recorder={"segment_seconds": 1.0, "orphan_grace_s": 1.0})  # fmt: skip
    data_dir = Path(server.services.cfg.data_dir)
    store = server.services.store
    recorder = server.services.recorder
    meeting, host, recording_id, prefix = await recording_voice(server, bucket)
    try:
        await asyncio.sleep(3.5)
        killed = recorder.pid
        os.kill(killed, signal.SIGKILL)
        await wait_for(lambda: _true(not recorder.up), 5, "the recorder to be seen down")
        await host.signaling.request({"type": "recording", "action": "stop"}, timeout=40)
        await server.call("DELETE", f"/recordings/{recording_id}", token=meeting["host_session"], expect=204)
        assert objects(bucket, prefix) == []
        known = set((await store.storage_deletion_of(recording_id)).keys)
        # Control restarted meanwhile, say: what it owed the recorder was in its memory only.
        # The store's record of the deletion is all that is left.
        server.services.recordings._owed_discards.clear()

        # The new recorder finishes the orphaned work after its grace and uploads it; every
        # file is refused (no row, deleted from the bucket) and the recorder told to stop.
        await wait_for(lambda: _true(recorder.up and recorder.pid != killed), 20, "the recorder back")

        async def refused() -> bool:
            deletion = await store.storage_deletion_of(recording_id)
            return bool(set(deletion.keys) - known) and deletion.state == "done" and not objects(bucket, prefix)

        await wait_for(refused, 30, "late uploads refused and deleted")
        await wait_for(lambda: _true(not (data_dir / "recordings" / recording_id).exists()), 20,
                       "the recorder to drop the rest")  # fmt: skip
        await asyncio.sleep(2)
        assert objects(bucket, prefix) == [] and recording_id not in spooled_recordings(data_dir)
        assert await store.get_recording(recording_id) is None
        assert await store.list_recording_files(recording_id) == []
    finally:
        await host.stop()


async def _true(value: bool) -> bool:
    return value


# ---------------------------------------------------------------------- no media needed


async def stored_recording(
    server: Any, meeting: dict[str, Any], root: Path, files: dict[str, bytes], storage: dict[str, Any]
) -> Any:
    """A stopped recording of the meeting written to `storage` (a local root), with files."""
    store = server.services.store
    recording = await store.create_recording(
        meeting_id=meeting["meeting_id"], customer_id=meeting["customer_id"], kind="recording", started_by="Host",
        live_session_id=meeting.get("live_session_id"), storage=storage,
    )  # fmt: skip
    prefix = f"recordings/{meeting['number']}/{recording.id}/"
    await store.update_recording(recording.id, key_prefix=prefix, state="stopped")
    for name, data in files.items():
        path = root / prefix / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        await store.add_recording_file(recording.id, key=prefix + name, kind="track", size=len(data))
    return await store.get_recording(recording.id)


async def test_a_recording_is_deleted_from_the_storage_it_was_written_to(conclave_server, tmp_path):
    server = conclave_server
    meeting = await server.create_meeting()
    old, new = tmp_path / "old", tmp_path / "new"
    old_settings = {"kind": "local", "root": str(old)}
    await server.call("PUT", f"/customers/{meeting['customer_id']}/storage", token=server.operator_key,
                      json_body=old_settings)  # fmt: skip
    recording = await stored_recording(server, meeting, old, {"a.ogg": b"old bytes"}, old_settings)
    # The customer moves to another storage; a file of the same name happens to be there.
    await server.call("PUT", f"/customers/{meeting['customer_id']}/storage", token=server.operator_key,
                      json_body={"kind": "local", "root": str(new)})  # fmt: skip
    decoy = new / recording.key_prefix / "a.ogg"
    decoy.parent.mkdir(parents=True)
    decoy.write_bytes(b"someone else's")
    [item] = await server.services.store.list_recording_files(recording.id)
    link = await server.call("GET", f"/recordings/{recording.id}/files/{item.id}/link", token=meeting["host_session"])
    async with aiohttp.ClientSession() as session, session.get(server.base_url + link["url"]) as response:
        assert (response.status, await response.read()) == (200, b"old bytes")
    await server.call("DELETE", f"/recordings/{recording.id}", token=meeting["host_session"], expect=204)
    assert not (old / recording.key_prefix).exists()
    assert decoy.read_bytes() == b"someone else's"


async def test_deleting_a_host_or_a_customer_takes_their_meetings_content(conclave_server, tmp_path):
    server = conclave_server
    store = server.services.store
    root = tmp_path / "storage"
    local = {"kind": "local", "root": str(root)}
    owner = await server.new_host(limits={"max_live_meetings_per_host": 10, "max_concurrent_meetings": 10})
    await server.call("PUT", f"/customers/{owner['customer_id']}/storage", token=server.operator_key, json_body=local)
    kept_host = await server.new_host(owner["customer_id"])
    meetings = [await server.create_meeting(host=owner), await server.create_meeting(host=owner, start=False)]
    kept_meeting = await server.create_meeting(host=kept_host)
    recordings = []
    for meeting in (*meetings, kept_meeting):
        recordings.append(await stored_recording(server, meeting, root, {"a.ogg": b"1", "b.ogg": b"2"}, local))
        await store.append_chat(meeting["meeting_id"], "p", "Ann", "said something", 1)
        await store.add_participant(meeting["meeting_id"], name="Ann Example", role="participant", state="left")
        await store.add_consent(meeting_id=meeting["meeting_id"], participant_id="p", name="Ann Example")
    status, body, _ = await server.api("DELETE", f"/hosts/{owner['host_id']}", token=server.operator_key)
    assert status == 204, body
    for recording in recordings[:2]:
        assert not (root / recording.key_prefix).exists()
        assert (await store.storage_deletion_of(recording.id)).state == "done"
    assert (root / recordings[2].key_prefix / "a.ogg").read_bytes() == b"1"  # another host's: kept
    assert [m.text for m in await store.list_chat(kept_meeting["meeting_id"])] == ["said something"]

    # A customer whose storage cannot be reached: deleted anyway, the files reported.
    doomed = await server.new_host(limits={"max_live_meetings_per_host": 10, "max_concurrent_meetings": 10})
    unreachable = {"kind": "s3", "endpoint_url": "http://127.0.0.1:9", "bucket": "bkt", "access_key_id": "AK",
                   "secret_access_key": "a-secret-of-theirs"}  # fmt: skip
    await server.call("PUT", f"/customers/{doomed['customer_id']}/storage", token=server.operator_key,
                      json_body=unreachable)  # fmt: skip
    meeting = await server.create_meeting(host=doomed)
    recording = await stored_recording(server, meeting, tmp_path / "unused", {"a.ogg": b"1"}, unreachable)
    await store.append_chat(meeting["meeting_id"], "p", "Bo", "hello", 1)
    status, body, _ = await server.api("DELETE", f"/customers/{doomed['customer_id']}", token=server.operator_key)
    assert status == 202 and [p["recording_id"] for p in body["storage_pending"]] == [recording.id]
    assert await store.get_customer(doomed["customer_id"]) is None
    assert await store.list_chat(meeting["meeting_id"]) == []
    listed = await server.call("GET", f"/storage-deletions?customer_id={doomed['customer_id']}",
                               token=server.operator_key)  # fmt: skip
    assert [d["recording_id"] for d in listed["deletions"]] == [recording.id]
    assert "a-secret-of-theirs" not in json.dumps([body, listed])
