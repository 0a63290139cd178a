"""The spool: files wait on local disk until storage confirms them, across outages and restarts.

Unit tests use an in-memory backend that can be switched off; the outage and restart tests
use a real S3 server (SeaweedFS) that is stopped and started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from common.storage import StorageError, StoredObject, open_storage
from common.storage.s3 import MiB, S3BucketStorage
from recorder.storage import Spool, SpoolItem, backoff_delay
from tests.support.seaweed import SECRET_ACCESS_KEY, SeaweedServer, require_weed

WAIT_S = 60.0  # upper bound for anything a test waits for; normally well under a second


class MemoryBackend:
    """Stores objects in a dict; `down = True` makes every put fail like an outage."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.down = False
        self.puts = 0

    async def put_file(self, local_path: Path, key: str, content_type: str) -> StoredObject:
        self.puts += 1
        if self.down:
            raise StorageError("storage unreachable (test outage)", code="unreachable")
        data = local_path.read_bytes()
        self.objects[key] = (data, content_type)
        return StoredObject(key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest())

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    async def list(self, prefix: str) -> list[StoredObject]:
        return []

    async def read_bytes(self, key: str, max_bytes: int) -> bytes:
        return self.objects[key][0][:max_bytes]

    async def check(self) -> None:
        pass


async def until(condition: Callable[[], bool], timeout: float = WAIT_S) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(spool: Spool) -> AsyncIterator[Spool]:
    task = asyncio.create_task(spool.run(grace=2.0))
    try:
        yield spool
    finally:
        async with asyncio.timeout(WAIT_S):
            await spool.stop()
            await task


def segment(directory: Path, name: str, size: int = 10_000) -> tuple[Path, bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    path = directory / name
    path.write_bytes(data)
    return path, data


def spool_files(spool: Spool) -> list[str]:
    return sorted(path.name for path in spool.directory.iterdir())


def fast_spool(directory: Path, backend: object, **options: object) -> Spool:
    defaults: dict[str, object] = {"retry_initial": 0.05, "retry_max": 0.2}
    defaults.update(options)
    return Spool(directory, lambda item: backend, **defaults)  # type: ignore[arg-type]


# --- backoff (a pure function) -----------------------------------------------------------


def test_backoff_grows_exponentially_up_to_the_cap_with_jitter():
    steps = [backoff_delay(attempts, 1.0, 60.0, 1.0) for attempts in range(1, 10)]
    assert steps == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff_delay(3, 1.0, 60.0, 0.0) == 2.0, "jitter keeps at least half of the step"
    assert 2.0 <= backoff_delay(3, 1.0, 60.0, 0.5) <= 4.0
    assert backoff_delay(10_000, 1.0, 30.0, 1.0) == 30.0, "no overflow after very many attempts"


# --- the spool with an in-memory backend --------------------------------------------------------


async def test_enqueue_moves_the_file_in_and_upload_deletes_it(tmp_path):
    backend = MemoryBackend()
    uploaded: list[tuple[SpoolItem, StoredObject]] = []
    spool = fast_spool(tmp_path / "spool", backend, on_uploaded=lambda item, stored: uploaded.append((item, stored)))
    path, data = segment(tmp_path / "segments", "a-0001.webm")

    item = await spool.enqueue(path, "m1/a-0001.webm", "video/webm", target="customer-7")
    assert not path.exists(), "moved, not copied"
    assert spool.size_bytes() == len(data) and spool.pending() == [item]
    assert item.data_path.read_bytes() == data
    sidecar = json.loads(item.sidecar_path.read_text())
    assert (sidecar["key"], sidecar["content_type"], sidecar["target"], sidecar["attempts"]) == (
        "m1/a-0001.webm",
        "video/webm",
        "customer-7",
        0,
    )

    async with running(spool):
        async with asyncio.timeout(WAIT_S):
            await spool.wait_until_empty()
    assert backend.objects == {"m1/a-0001.webm": (data, "video/webm")}
    assert spool_files(spool) == [] and spool.size_bytes() == 0
    assert [(i.key, s.size) for i, s in uploaded] == [("m1/a-0001.webm", len(data))]
    assert spool.stats() == {
        "pending_files": 0,
        "pending_bytes": 0,
        "upload_attempts": 1,
        "upload_failures": 0,
        "uploads_completed": 1,
        "bytes_uploaded": len(data),
        "files_lost": 0,
        "files_discarded": 0,
    }


async def test_failed_uploads_are_retried_until_storage_is_back(tmp_path):
    backend = MemoryBackend()
    backend.down = True
    failures: list[str] = []
    spool = fast_spool(tmp_path / "spool", backend, on_failure=lambda item, error: failures.append(item.key))
    files = {f"m/s-{n}.ogg": segment(tmp_path / "seg", f"s-{n}.ogg")[::-1] for n in range(3)}
    async with running(spool):
        for key, (data, path) in files.items():
            await spool.enqueue(path, key, "audio/ogg")
        await until(lambda: all(item.attempts >= 2 for item in spool.pending()))
        assert backend.objects == {} and spool.size_bytes() == 30_000
        attempts = json.loads(spool.pending()[0].sidecar_path.read_text())["attempts"]
        assert attempts >= 2, "attempts are written down, so backoff survives a restart"
        assert "unreachable" in spool.pending()[0].last_error
        backend.down = False
        async with asyncio.timeout(WAIT_S):
            await spool.wait_until_empty()
    assert {key: stored[0] for key, stored in backend.objects.items()} == {k: v[0] for k, v in files.items()}
    assert spool_files(spool) == []
    assert spool.upload_failures >= 6 and spool.upload_failures == len(failures)
    assert spool.upload_attempts == spool.upload_failures + 3
    assert spool.uploads_completed == 3 and spool.bytes_uploaded == 30_000


async def test_reaching_the_limit_calls_on_full_once_and_keeps_every_file(tmp_path):
    backend = MemoryBackend()
    backend.down = True
    full_calls: list[tuple[int, int]] = []
    spool = fast_spool(tmp_path / "spool", backend, limit_bytes=25_000, on_full=lambda *args: full_calls.append(args))
    for n in range(2):
        await spool.enqueue(segment(tmp_path / "seg", f"{n}")[0], f"k/{n}", "audio/ogg")
    assert full_calls == [] and not spool.full
    await spool.enqueue(segment(tmp_path / "seg", "2")[0], "k/2", "audio/ogg")
    assert full_calls == [(30_000, 25_000)] and spool.full
    await spool.enqueue(segment(tmp_path / "seg", "3")[0], "k/3", "audio/ogg")
    assert full_calls == [(30_000, 25_000)], "called once per crossing, not per file"
    assert len(spool.pending()) == 4, "nothing is dropped when full"

    backend.down = False
    async with running(spool):
        async with asyncio.timeout(WAIT_S):
            await spool.wait_until_empty()
    assert not spool.full and sorted(backend.objects) == ["k/0", "k/1", "k/2", "k/3"]


async def test_a_new_spool_over_the_same_directory_uploads_what_the_old_one_left(tmp_path):
    backend = MemoryBackend()
    backend.down = True
    old = fast_spool(tmp_path / "spool", backend)
    async with running(old):
        for n in range(3):
            await old.enqueue(segment(tmp_path / "seg", f"{n}.webm")[0], f"m/{n}.webm", "video/webm", target=f"t{n}")
        await until(lambda: all(item.attempts >= 1 for item in old.pending()))
    del old  # the recorder process is gone

    backend.down = False
    targets: list[str] = []
    new = Spool(tmp_path / "spool", lambda item: targets.append(item.target) or backend, retry_initial=0.05)
    assert [item.key for item in new.pending()] == ["m/0.webm", "m/1.webm", "m/2.webm"], "oldest first"
    assert all(item.attempts >= 1 for item in new.pending())
    assert new.size_bytes() == 30_000
    async with running(new):
        async with asyncio.timeout(WAIT_S):
            await new.wait_until_empty()
    assert sorted(backend.objects) == ["m/0.webm", "m/1.webm", "m/2.webm"]
    assert sorted(targets) == ["t0", "t1", "t2"]
    assert spool_files(new) == []


async def test_rescan_repairs_what_a_crash_can_leave(tmp_path, caplog):
    directory = tmp_path / "spool"
    backend = MemoryBackend()
    spool = fast_spool(directory, backend)
    kept, kept_data = segment(tmp_path / "seg", "kept.ogg")
    item = await spool.enqueue(kept, "m/kept.ogg", "audio/ogg")

    # 1. Crash between writing the sidecar and moving the file: the file is still at its source.
    half, half_data = segment(tmp_path / "seg", "half.ogg")
    sidecar = {"version": 1, "key": "m/half.ogg", "content_type": "audio/ogg", "target": "", "size": len(half_data),
               "source": str(half), "attempts": 0}
    (directory / "00000000000000000001-half.json").write_text(json.dumps(sidecar))
    # 2. Crash after a confirmed upload removed the sidecar but not the data.
    (directory / "00000000000000000002-done.data").write_bytes(b"uploaded already")
    # 3. Crash in the middle of writing a sidecar.
    (directory / "00000000000000000003-x.json.tmp").write_text("{")
    # 4. A sidecar nobody can read: set aside, and its data kept for a person to look at.
    (directory / "00000000000000000004-bad.json").write_text("not json")
    (directory / "00000000000000000004-bad.data").write_bytes(b"keep me")
    # 5. A sidecar whose file is gone everywhere.
    gone = dict(sidecar, key="m/gone.ogg", source=str(tmp_path / "nowhere.ogg"))
    (directory / "00000000000000000005-gone.json").write_text(json.dumps(gone))

    with caplog.at_level(logging.ERROR):
        rescanned = Spool(directory, lambda item: backend)
    assert [i.key for i in rescanned.pending()] == ["m/half.ogg", "m/kept.ogg"]
    assert not half.exists()
    assert spool_files(rescanned) == sorted(
        [
            "00000000000000000001-half.json",
            "00000000000000000001-half.data",
            "00000000000000000004-bad.json.corrupt",
            "00000000000000000004-bad.data",
            item.sidecar_path.name,
            item.data_path.name,
        ]
    )
    assert "unreadable spool sidecar" in caplog.text and "has no data file" in caplog.text
    async with running(rescanned):
        async with asyncio.timeout(WAIT_S):
            await rescanned.wait_until_empty()
    assert backend.objects["m/half.ogg"][0] == half_data and backend.objects["m/kept.ogg"][0] == kept_data


async def test_enqueue_of_a_missing_file_or_bad_key_raises(tmp_path):
    spool = fast_spool(tmp_path / "spool", MemoryBackend())
    with pytest.raises(StorageError):
        await spool.enqueue(tmp_path / "missing.webm", "k/missing.webm", "video/webm")
    path, _ = segment(tmp_path, "x")
    with pytest.raises(StorageError):
        await spool.enqueue(path, "../escape", "video/webm")
    assert path.exists() and spool.pending() == [] and spool_files(spool) == []


async def test_a_broken_backend_lookup_or_callback_does_not_stop_uploads(tmp_path):
    backend = MemoryBackend()
    lookups = 0

    def backend_for(item: SpoolItem) -> MemoryBackend:
        nonlocal lookups
        lookups += 1
        if lookups == 1:
            raise KeyError("customer storage not configured yet")
        return backend

    def broken_callback(*args: object) -> None:
        raise RuntimeError("bug in a callback")

    spool = Spool(tmp_path / "spool", backend_for, retry_initial=0.05, on_uploaded=broken_callback, on_failure=broken_callback)
    await spool.enqueue(segment(tmp_path / "seg", "a")[0], "k/a", "audio/ogg")
    async with running(spool):
        async with asyncio.timeout(WAIT_S):
            await spool.wait_until_empty()
    assert list(backend.objects) == ["k/a"] and spool.upload_failures == 1


async def test_a_file_deleted_from_the_spool_is_counted_as_lost_not_retried_forever(tmp_path):
    backend = MemoryBackend()
    backend.down = True
    spool = fast_spool(tmp_path / "spool", backend)
    item = await spool.enqueue(segment(tmp_path / "seg", "a")[0], "k/a", "audio/ogg")
    item.data_path.unlink()
    async with running(spool):
        await until(lambda: spool.files_lost == 1)
    assert spool.pending() == [] and spool_files(spool) == []


class GatedBackend(MemoryBackend):
    """A put waits at a gate: a storage that hangs until the test opens it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting: list[str] = []
        self.deleted: list[str] = []

    async def put_file(self, local_path: Path, key: str, content_type: str) -> StoredObject:
        data = local_path.read_bytes()
        self.waiting.append(key)
        await self.gate.wait()
        self.objects[key] = (data, content_type)
        return StoredObject(key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest())

    async def delete(self, key: str) -> None:
        self.deleted.append(key)
        await super().delete(key)


def by_recording(item: SpoolItem) -> str:
    return item.target.split("/")[0]


def by_customer(item: SpoolItem) -> str:
    return item.target.split("/")[1] if "/" in item.target else ""


async def test_discard_drops_a_recordings_files_and_refuses_its_late_ones(tmp_path):
    backend = MemoryBackend()
    backend.down = True
    uploaded: list[str] = []
    spool = fast_spool(tmp_path / "spool", backend, group_of=by_recording,
                       on_uploaded=lambda item, stored: uploaded.append(item.key))  # fmt: skip
    for n in range(3):
        await spool.enqueue(segment(tmp_path / "seg", f"r1-{n}")[0], f"r1/{n}", "audio/ogg", target="r1/c")
    await spool.enqueue(segment(tmp_path / "seg", "r2-0")[0], "r2/0", "audio/ogg", target="r2/c")
    async with running(spool):
        await until(lambda: all(item.attempts >= 1 for item in spool.pending()))
        assert await spool.discard("r1") == (3, 30_000)
        assert [item.key for item in spool.pending()] == ["r2/0"] and spool.discarded("r1")
        assert len(spool_files(spool)) == 2  # r2's pair only
        late, _ = segment(tmp_path / "seg", "r1-late")
        await spool.enqueue(late, "r1/late", "audio/ogg", target="r1/c")  # e.g. a transcript finishing
        assert not late.exists() and [item.key for item in spool.pending()] == ["r2/0"]
        backend.down = False
        async with asyncio.timeout(WAIT_S):
            await spool.wait_until_empty()
    assert list(backend.objects) == ["r2/0"] and uploaded == ["r2/0"]
    assert spool.stats()["files_discarded"] == 4 and spool_files(spool) == []
    assert await spool.discard("never-had-it") == (0, 0)


async def test_discard_cuts_off_an_upload_that_hangs(tmp_path):
    backend = GatedBackend()
    uploaded: list[str] = []
    spool = fast_spool(tmp_path / "spool", backend, group_of=by_recording, discard_wait=0.2,
                       on_uploaded=lambda item, stored: uploaded.append(item.key))  # fmt: skip
    await spool.enqueue(segment(tmp_path / "seg", "a")[0], "r1/a", "audio/ogg", target="r1/c")
    async with running(spool):
        await until(lambda: backend.waiting == ["r1/a"])
        assert await spool.discard("r1") == (1, 10_000)
        backend.gate.set()
        await asyncio.sleep(0.1)
    assert backend.objects == {} and uploaded == [] and spool_files(spool) == []


async def test_an_upload_that_lands_during_the_discard_is_deleted_again(tmp_path):
    backend = GatedBackend()
    uploaded: list[str] = []
    spool = fast_spool(tmp_path / "spool", backend, group_of=by_recording,
                       on_uploaded=lambda item, stored: uploaded.append(item.key))  # fmt: skip
    item = await spool.enqueue(segment(tmp_path / "seg", "a")[0], "r1/a", "audio/ogg", target="r1/c")
    async with running(spool):
        await until(lambda: backend.waiting == ["r1/a"])
        discard = asyncio.ensure_future(spool.discard("r1"))
        await asyncio.sleep(0.05)
        backend.gate.set()  # the bytes land while the discard waits
        assert await discard == (0, 0)  # nothing left in the spool: it had gone up
    assert backend.deleted == ["r1/a"] and backend.objects == {}
    assert uploaded == [] and not item.data_path.exists() and spool.stats()["files_discarded"] == 1


async def test_one_customers_dead_storage_holds_neither_the_others_uploads_nor_their_room(tmp_path):
    dead, alive = GatedBackend(), MemoryBackend()
    spool = Spool(tmp_path / "spool", lambda item: dead if by_customer(item) == "dead" else alive,
                  group_of=by_recording, account_of=by_customer, account_limit_bytes=25_000,
                  retry_initial=0.05, retry_max=0.2)  # fmt: skip
    for n in range(3):
        await spool.enqueue(segment(tmp_path / "seg", f"d{n}")[0], f"rd/{n}", "audio/ogg", target="rd/dead")
    assert spool.account_full("dead") and not spool.account_full("ok") and not spool.full
    assert spool.account_size("dead") == 30_000
    async with running(spool):
        await until(lambda: len(dead.waiting) == 2)  # both uploaders hang on the dead storage
        for n in range(3):
            await spool.enqueue(segment(tmp_path / "seg", f"o{n}")[0], f"ro/{n}", "audio/ogg", target="ro/ok")
        await until(lambda: len(alive.objects) == 3)  # yet another customer's files go up
        assert dead.waiting == ["rd/0", "rd/1"], "never more than `uploaders` to the hanging storage"
        assert spool.account_size("ok") == 0 and spool.account_size("dead") == 30_000
        dead.gate.set()
        async with asyncio.timeout(WAIT_S):
            await spool.wait_until_empty()
    assert not spool.account_full("dead") and sorted(dead.objects) == ["rd/0", "rd/1", "rd/2"]


async def test_an_enqueue_cancelled_mid_move_is_still_counted(tmp_path, monkeypatch):
    from recorder.storage import spool as spool_module

    real_move_in = spool_module._move_in

    def slow_move_in(*args: object) -> SpoolItem:
        import time

        time.sleep(0.3)
        return real_move_in(*args)

    monkeypatch.setattr(spool_module, "_move_in", slow_move_in)
    spool = fast_spool(tmp_path / "spool", MemoryBackend())
    enqueue = asyncio.ensure_future(spool.enqueue(segment(tmp_path / "seg", "a")[0], "k/a", "audio/ogg"))
    await asyncio.sleep(0.05)
    enqueue.cancel()
    with pytest.raises(asyncio.CancelledError):
        await enqueue
    await until(lambda: len(spool.pending()) == 1)
    assert spool.size_bytes() == 10_000


# --- with a real S3 server that goes away and comes back -------------------------------------------


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    require_weed()
    with SeaweedServer(tmp_path_factory.mktemp("seaweed-spool")) as server:
        yield server


@pytest.fixture
def s3(seaweed: SeaweedServer) -> Iterator[S3BucketStorage]:
    settings = seaweed.settings(prefix=f"spool-{os.urandom(4).hex()}", multipart_threshold=6 * MiB, part_size=5 * MiB)
    assert isinstance(open_storage(settings), S3BucketStorage)
    # One try per attempt: the spool does the retrying, with its own backoff.
    storage = S3BucketStorage(**{name: value for name, value in settings.items() if name != "kind"}, max_attempts=1)
    yield storage
    if seaweed.process is None:  # a failed test must not leave storage down for the next
        seaweed.start()


def object_sha256(seaweed: SeaweedServer, storage: S3BucketStorage, key: str) -> str:
    body = seaweed.client().get_object(Bucket=storage.bucket, Key=storage.prefix + key)["Body"].read()
    return hashlib.sha256(body).hexdigest()


@pytest.mark.timeout(240)
async def test_storage_outage_loses_nothing_and_leaves_no_local_copy(seaweed, s3, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    full_calls: list[tuple[int, int]] = []
    expected: dict[str, str] = {}
    spool = Spool(
        tmp_path / "spool",
        lambda item: s3,
        limit_bytes=8_000_000,
        on_full=lambda *args: full_calls.append(args),
        retry_initial=0.2,
        retry_max=1.0,
    )
    async with running(spool):
        # Some segments land while storage is up.
        for n in range(2):
            path, data = segment(tmp_path / "seg", f"early-{n}.webm", 50_000)
            expected[f"rec/early-{n}.webm"] = hashlib.sha256(data).hexdigest()
            await spool.enqueue(path, f"rec/early-{n}.webm", "video/webm")
        async with asyncio.timeout(WAIT_S):
            await spool.wait_until_empty()

        await asyncio.to_thread(seaweed.stop)
        # Recording goes on: segments (and a large mixed file) pile up in the spool.
        for n in range(5):
            path, data = segment(tmp_path / "seg", f"late-{n}.webm", 200_000 + n)
            expected[f"rec/late-{n}.webm"] = hashlib.sha256(data).hexdigest()
            await spool.enqueue(path, f"rec/late-{n}.webm", "video/webm")
        path, data = segment(tmp_path / "seg", "mix.ogg", 7 * MiB)
        expected["rec/mix.ogg"] = hashlib.sha256(data).hexdigest()
        await spool.enqueue(path, "rec/mix.ogg", "audio/ogg")
        assert full_calls == [(spool.size_bytes(), 8_000_000)], "the recording is told to stop"
        await until(lambda: all(item.attempts >= 2 for item in spool.pending()))
        assert len(spool.pending()) == 6
        assert all("unreachable" in item.last_error for item in spool.pending())

        await asyncio.to_thread(seaweed.start)
        async with asyncio.timeout(WAIT_S):
            await spool.wait_until_empty()

    assert spool_files(spool) == [] and spool.size_bytes() == 0 and not spool.full
    assert sorted(path.name for path in (tmp_path / "seg").iterdir()) == [], "no local copy left"
    assert {stored.key: stored.size for stored in await s3.list("rec/")} == {
        **{f"rec/early-{n}.webm": 50_000 for n in range(2)},
        **{f"rec/late-{n}.webm": 200_000 + n for n in range(5)},
        "rec/mix.ogg": 7 * MiB,
    }
    for key, sha256 in expected.items():
        assert object_sha256(seaweed, s3, key) == sha256, key
    assert spool.uploads_completed == 8 and spool.upload_failures >= 12
    assert spool.bytes_uploaded == 2 * 50_000 + sum(200_000 + n for n in range(5)) + 7 * MiB
    assert SECRET_ACCESS_KEY not in caplog.text


@pytest.mark.timeout(240)
async def test_spool_restart_during_outage_uploads_everything_to_s3(seaweed, s3, tmp_path):
    await asyncio.to_thread(seaweed.stop)
    old = Spool(tmp_path / "spool", lambda item: s3, retry_initial=0.2, retry_max=1.0)
    expected = {}
    async with running(old):
        for n in range(3):
            path, data = segment(tmp_path / "seg", f"{n}.ogg", 30_000)
            expected[f"rec/{n}.ogg"] = hashlib.sha256(data).hexdigest()
            await old.enqueue(path, f"rec/{n}.ogg", "audio/ogg")
        await until(lambda: all(item.attempts >= 1 for item in old.pending()))
    del old

    await asyncio.to_thread(seaweed.start)
    new = Spool(tmp_path / "spool", lambda item: s3, retry_initial=0.2, retry_max=1.0)
    assert len(new.pending()) == 3
    async with running(new):
        async with asyncio.timeout(WAIT_S):
            await new.wait_until_empty()
    assert spool_files(new) == []
    for key, sha256 in expected.items():
        assert object_sha256(seaweed, s3, key) == sha256
