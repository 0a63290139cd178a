"""common.storage, both backends through the one package: a local directory and a real S3
server (SeaweedFS, signatures checked).

Every put must come back verified (size + SHA-256 of what the server holds); what was
written reads back, deletes by key and by prefix; a wrong secret must fail with a clear
StorageError that never contains the secret; a key that would lead out of the storage
(or out of the bucket's prefix) is refused before any I/O.
"""

from __future__ import annotations

import hashlib
import logging
import os
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.storage import (
    InvalidKey,
    LocalDirectoryStorage,
    StorageBackend,
    StorageError,
    StorageNotFound,
    StorageSettingsError,
    StoredObject,
    open_storage,
)
from common.storage import local as local_module
from common.storage.s3 import MiB, S3BucketStorage
from tests.support.seaweed import ACCESS_KEY_ID, SECRET_ACCESS_KEY, SeaweedServer, free_ports, require_weed

MULTIPART_THRESHOLD = 8 * MiB
PART_SIZE = 5 * MiB


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    require_weed()
    with SeaweedServer(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


def s3_storage(server: SeaweedServer, **overrides: object) -> S3BucketStorage:
    options: dict[str, object] = {
        "endpoint_url": server.endpoint_url,
        "region": "us-east-1",
        "bucket": server.buckets[0],
        "prefix": f"tests/{uuid.uuid4().hex}",  # each test its own corner of the bucket
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key": SECRET_ACCESS_KEY,
        "multipart_threshold": MULTIPART_THRESHOLD,
        "part_size": PART_SIZE,
        "max_attempts": 1,
    }
    options.update(overrides)
    return S3BucketStorage(**options)  # type: ignore[arg-type]


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.process)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> StorageBackend:
    if request.param == "local":
        return LocalDirectoryStorage(tmp_path / "customer-storage")
    return s3_storage(request.getfixturevalue("seaweed"))


def make_file(directory: Path, name: str, size: int) -> tuple[Path, str]:
    path = directory / name
    path.write_bytes(os.urandom(size))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


async def read_all(storage: StorageBackend, key: str) -> bytes:
    async with storage.open_object(key) as obj:
        data = b"".join([chunk async for chunk in obj.chunks])
    assert obj.size in (None, len(data))
    return data


# --- the same behaviour from every backend ------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 300_000, 12 * MiB], ids=["empty", "1B", "300kB", "12MiB"])
async def test_put_file_stores_the_exact_bytes_and_reports_them(backend, tmp_path, size):
    path, sha256 = make_file(tmp_path, "segment.webm", size)
    stored = await backend.put_file(path, "meetings/m1/tracks/a-0001.webm", "video/webm")
    assert stored == StoredObject(key="meetings/m1/tracks/a-0001.webm", size=size, sha256=sha256)
    assert path.exists(), "put_file never consumes the local file: the spool deletes it"
    data = await read_all(backend, "meetings/m1/tracks/a-0001.webm")
    assert hashlib.sha256(data).hexdigest() == sha256
    assert await backend.list("meetings/m1/") == [
        StoredObject(key="meetings/m1/tracks/a-0001.webm", size=size, sha256="")
    ]


async def test_list_delete_and_read(backend, tmp_path):
    for key in ("m1/a.ogg", "m1/b/c.webm", "m10/x.ogg", "m2/y.ogg"):
        path, _ = make_file(tmp_path, "f", 1000)
        await backend.put_file(path, key, "application/octet-stream")
    assert [stored.key for stored in await backend.list("m1/")] == ["m1/a.ogg", "m1/b/c.webm"]
    # A prefix is a string prefix, as in S3.
    assert [stored.key for stored in await backend.list("m1")] == ["m1/a.ogg", "m1/b/c.webm", "m10/x.ogg"]
    assert [stored.key for stored in await backend.list("")] == ["m1/a.ogg", "m1/b/c.webm", "m10/x.ogg", "m2/y.ogg"]
    assert await backend.list("nothing/") == []

    await backend.delete("m1/b/c.webm")
    await backend.delete("m1/b/c.webm")  # deleting what is gone is not an error
    assert [stored.key for stored in await backend.list("m1/")] == ["m1/a.ogg"]
    with pytest.raises(StorageNotFound):
        await read_all(backend, "m1/b/c.webm")
    assert len(await read_all(backend, "m2/y.ogg")) == 1000


async def test_put_overwrites_an_existing_key(backend, tmp_path):
    first, _ = make_file(tmp_path, "first", 5000)
    second, second_sha256 = make_file(tmp_path, "second", 7000)
    await backend.put_file(first, "k/file.bin", "application/octet-stream")
    stored = await backend.put_file(second, "k/file.bin", "application/octet-stream")
    assert (stored.size, stored.sha256) == (7000, second_sha256)
    assert hashlib.sha256(await read_all(backend, "k/file.bin")).hexdigest() == second_sha256


async def test_read_bytes_and_open_object_report_what_is_stored(backend, tmp_path):
    path, _ = make_file(tmp_path, "f", 1000)
    await backend.put_file(path, "t/transcript.json", "application/json")
    async with backend.open_object("t/transcript.json") as obj:
        assert obj.size == 1000
    assert await backend.read_bytes("t/transcript.json", 1000) == path.read_bytes()
    with pytest.raises(StorageError) as caught:
        await backend.read_bytes("t/transcript.json", 999)
    assert caught.value.code == "too_large"
    with pytest.raises(StorageNotFound):
        await backend.read_bytes("t/missing.json", 1000)
    with pytest.raises(StorageNotFound):
        async with backend.open_object("t"):  # a "folder" is no object
            pass


async def test_delete_prefix_takes_a_folder_and_nothing_beside_it(backend, tmp_path):
    for key in ("r/1/a.ogg", "r/1/b/c.webm", "r/10/x.ogg", "r/2/y.ogg"):
        path, _ = make_file(tmp_path, "f", 100)
        await backend.put_file(path, key, "application/octet-stream")
    assert await backend.delete_prefix("r/1") == 2  # the folder "r/1/", not "r/10/"
    assert [stored.key for stored in await backend.list("")] == ["r/10/x.ogg", "r/2/y.ogg"]
    assert await backend.delete_prefix("/r/2/") == 1
    assert await backend.delete_prefix("r/nothing/") == 0
    for whole in ("", "/"):
        with pytest.raises(InvalidKey):
            await backend.delete_prefix(whole)  # never the whole storage
    assert [stored.key for stored in await backend.list("")] == ["r/10/x.ogg"]


@pytest.mark.parametrize("key", ["", "/abs/x", "a//b", "../escape", "a/../../b", "a/./b", "a\\b", "bad\nkey"])
async def test_unsafe_keys_are_refused_before_any_io(backend, tmp_path, key):
    path, _ = make_file(tmp_path, "f", 10)
    for operation in (
        lambda: backend.put_file(path, key, "text/plain"),
        lambda: backend.read_bytes(key, 100),
        lambda: backend.delete(key),
    ):
        with pytest.raises(InvalidKey) as caught:
            await operation()
        assert caught.value.code == "invalid_key"
        assert not key or key not in str(caught.value), "a key may come from a request: never quoted"


@pytest.mark.parametrize("prefix", ["..", "a/../b", "../escape/", "a//b/", "a\\b"])
async def test_unsafe_prefixes_are_refused(backend, prefix):
    with pytest.raises(InvalidKey):
        await backend.delete_prefix(prefix)


async def test_check_passes_on_working_storage(backend):
    await backend.check()
    assert await backend.list("") == [], "the check leaves nothing behind"


async def test_missing_local_file_is_a_storage_error(backend, tmp_path):
    with pytest.raises(StorageError) as caught:
        await backend.put_file(tmp_path / "nope.webm", "k/nope.webm", "video/webm")
    assert caught.value.code == "io"


# --- local directory ------------------------------------------------------------------------


async def test_local_files_land_under_root_with_no_partial_files_left(tmp_path):
    storage = LocalDirectoryStorage(tmp_path / "root")
    path, sha256 = make_file(tmp_path, "f", 4096)
    await storage.put_file(path, "a/b/c.ogg", "audio/ogg")
    assert hashlib.sha256((tmp_path / "root/a/b/c.ogg").read_bytes()).hexdigest() == sha256
    assert sorted(p.name for p in (tmp_path / "root/a/b").iterdir()) == ["c.ogg"]
    await storage.delete("a/b/c.ogg")
    assert list((tmp_path / "root").iterdir()) == [], "empty folders are tidied away"


async def test_local_verification_failure_is_reported(tmp_path, monkeypatch):
    storage = LocalDirectoryStorage(tmp_path / "root")
    path, _ = make_file(tmp_path, "f", 4096)
    # The bytes read back differ from those written (a failing disk, say).
    monkeypatch.setattr(local_module, "sha256_of_file", lambda _path: (4096, "0" * 64))
    with pytest.raises(StorageError) as caught:
        await storage.put_file(path, "a/c.ogg", "audio/ogg")
    assert caught.value.code == "verification_failed"


async def test_local_keys_never_lead_out_of_root_through_a_symlink(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("server secret")
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "file-link").symlink_to(outside / "secret.txt")
    storage = LocalDirectoryStorage(root)
    path, _ = make_file(tmp_path, "f", 10)
    for key in ("link/secret.txt", "file-link", "link/new.ogg"):
        for operation in (
            lambda: storage.read_bytes(key, 100),
            lambda: storage.delete(key),
            lambda: storage.put_file(path, key, "text/plain"),
        ):
            with pytest.raises(InvalidKey, match="leads out of the storage directory"):
                await operation()
    with pytest.raises(InvalidKey):
        await storage.delete_prefix("link")
    with pytest.raises(InvalidKey):
        await storage.list("link/")
    assert [p.name for p in outside.iterdir()] == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "server secret"


async def test_local_check_fails_when_root_is_not_a_directory(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(StorageError, match="not writable"):
        await LocalDirectoryStorage(tmp_path / "a-file" / "root").check()


# --- S3 ------------------------------------------------------------------------------------------


def head(server: SeaweedServer, storage: S3BucketStorage, key: str) -> dict:
    return server.client().head_object(Bucket=storage.bucket, Key=storage.prefix + key, ChecksumMode="ENABLED")


async def test_s3_large_files_go_up_in_parts_and_carry_a_verified_checksum(seaweed, tmp_path):
    storage = s3_storage(seaweed)
    path, sha256 = make_file(tmp_path, "mix.ogg", 12 * MiB)
    stored = await storage.put_file(path, "m/mix.ogg", "audio/ogg")
    assert stored.sha256 == sha256
    info = head(seaweed, storage, "m/mix.ogg")
    assert info["ContentLength"] == 12 * MiB
    assert info["ContentType"] == "audio/ogg"
    # 12 MiB in 5 MiB parts: three parts; S3 reports the composite checksum "<hash>-3".
    assert info["ETag"].strip('"').endswith("-3")
    assert info["ChecksumSHA256"].endswith("-3")

    small, small_sha256 = make_file(tmp_path, "seg.webm", 100_000)
    await storage.put_file(small, "m/seg.webm", "video/webm")
    small_info = head(seaweed, storage, "m/seg.webm")
    assert "-" not in small_info["ETag"].strip('"'), "below the threshold: a single PUT"
    assert small_info["ChecksumSHA256"] == _b64_sha256(small.read_bytes())
    assert small_info["ContentType"] == "video/webm"


def _b64_sha256(data: bytes) -> str:
    import base64

    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_seaweed_itself_refuses_a_body_that_does_not_match_its_checksum(seaweed):
    # Why comparing checksums verifies anything: the server recomputes the SHA-256 of
    # what it received and refuses a mismatch instead of echoing what the client said.
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as caught:
        seaweed.client().put_object(
            Bucket=seaweed.buckets[0], Key="tests/lie.bin", Body=b"actual bytes", ChecksumSHA256=_b64_sha256(b"other")
        )
    assert caught.value.response["Error"]["Code"] == "BadDigest"


@pytest.mark.parametrize("size", [1000, 12 * MiB], ids=["single", "multipart"])
async def test_s3_verification_by_reading_back(seaweed, tmp_path, size):
    storage = s3_storage(seaweed, verify_by_reading_back=True)
    path, sha256 = make_file(tmp_path, "f", size)
    assert (await storage.put_file(path, "k/f", "application/octet-stream")).sha256 == sha256


async def test_s3_put_fails_when_the_server_holds_other_bytes(seaweed, tmp_path, monkeypatch):
    storage = s3_storage(seaweed)
    path, _ = make_file(tmp_path, "f", 2000)
    original = S3BucketStorage._put_single

    async def put_corrupted(self, client, local_path, object_key, content_type):
        # Upload a different file, then claim the original's size and hashes.
        other, _ = make_file(tmp_path, "other", 2000)
        await original(self, client, other, object_key, content_type)
        data = local_path.read_bytes()
        return len(data), hashlib.sha256(data).hexdigest(), _b64_sha256(data)

    monkeypatch.setattr(S3BucketStorage, "_put_single", put_corrupted)
    with pytest.raises(StorageError) as caught:
        await storage.put_file(path, "k/f", "application/octet-stream")
    assert caught.value.code == "verification_failed"


async def test_s3_wrong_secret_is_rejected_without_leaking_it(seaweed, tmp_path, caplog):
    wrong_secret = "wrong-" + uuid.uuid4().hex
    storage = s3_storage(seaweed, secret_access_key=wrong_secret)
    path, _ = make_file(tmp_path, "f", 1000)
    caplog.set_level(logging.DEBUG)  # botocore and aiobotocore log a lot at DEBUG

    errors = []
    for attempt in (
        storage.put_file(path, "k/f", "text/plain"),
        storage.check(),
        storage.list(""),
        storage.read_bytes("k/f", 100),
        storage.delete("k/f"),
        storage.delete_prefix("k"),
    ):
        with pytest.raises(StorageError) as caught:
            await attempt
        assert not isinstance(caught.value, StorageNotFound)
        errors.append(caught.value)
    put_error = errors[0]
    assert put_error.code == "SignatureDoesNotMatch"
    assert "rejected the credentials" in str(put_error)
    assert seaweed.endpoint_url in str(put_error)
    for error in errors:
        rendered = "".join(traceback.format_exception(error)) + repr(error) + str(error)
        assert wrong_secret not in rendered
    assert wrong_secret not in repr(storage) + str(storage)
    assert wrong_secret not in caplog.text
    assert seaweed.client().list_objects_v2(Bucket=seaweed.buckets[0], Prefix=storage.prefix).get("KeyCount") == 0


async def test_s3_keys_stay_inside_the_bucket_prefix(seaweed):
    storage = s3_storage(seaweed)  # under "tests/<random>/"
    bucket = seaweed.buckets[0]
    seaweed.client().put_object(Bucket=bucket, Key="tests/outside.bin", Body=b"not yours")
    for key in ("../outside.bin", "x/../../outside.bin"):
        with pytest.raises(InvalidKey):
            await storage.read_bytes(key, 100)
        with pytest.raises(InvalidKey):
            await storage.delete(key)
    with pytest.raises(InvalidKey):
        await storage.delete_prefix("..")
    assert await storage.list("") == []
    assert seaweed.client().get_object(Bucket=bucket, Key="tests/outside.bin")["Body"].read() == b"not yours"


async def test_s3_unknown_access_key_is_rejected(seaweed):
    storage = s3_storage(seaweed, access_key_id="nobody")
    with pytest.raises(StorageError) as caught:
        await storage.check()
    assert caught.value.code in {"InvalidAccessKeyId", "403", "AccessDenied", "SignatureDoesNotMatch"}


async def test_s3_check_names_a_missing_bucket(seaweed):
    with pytest.raises(StorageError, match="does not exist"):
        await s3_storage(seaweed, bucket="no-such-bucket-" + uuid.uuid4().hex[:8]).check()


async def test_s3_unreachable_server_is_a_clear_error(tmp_path):
    (port,) = free_ports(1)  # nothing listens there
    storage = S3BucketStorage(
        f"http://127.0.0.1:{port}", "us-east-1", "recordings", "", ACCESS_KEY_ID, SECRET_ACCESS_KEY, max_attempts=1
    )
    path, _ = make_file(tmp_path, "f", 10)
    with pytest.raises(StorageError) as caught:
        await storage.put_file(path, "k/f", "text/plain")
    assert caught.value.code == "unreachable"
    assert SECRET_ACCESS_KEY not in str(caught.value)


# --- settings -----------------------------------------------------------------------------------


def test_open_storage_builds_each_kind(tmp_path):
    local = open_storage({"kind": "local", "root": str(tmp_path)})
    assert isinstance(local, LocalDirectoryStorage) and local.root == tmp_path
    s3 = open_storage(
        {
            "kind": "s3",
            "endpoint_url": "https://s3.example.test:9000/",
            "region": "eu-west-1",
            "bucket": "acme",
            "prefix": "/conclave/recordings/",
            "access_key_id": "AKIDEXAMPLE",
            "secret_access_key": "s3cr3t-value",
        }
    )
    assert isinstance(s3, S3BucketStorage)
    assert (s3.endpoint_url, s3.region, s3.bucket, s3.prefix) == (
        "https://s3.example.test:9000",
        "eu-west-1",
        "acme",
        "conclave/recordings/",
    )
    for text in (repr(s3), str(s3), repr(vars(s3))):
        assert "s3cr3t-value" not in text and "AKIDEXAMPLE" not in text


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"kind": "ftp"}, "'local' or 's3'"),
        ({"root": "/x"}, "'local' or 's3'"),
        ({"kind": "local"}, "missing local storage setting(s): root"),
        ({"kind": "local", "root": "/x", "colour": "red"}, "unknown local storage setting(s): colour"),
        ({"kind": "s3", "bucket": "b", "access_key_id": "a"}, "secret_access_key"),
        ({"kind": "s3", "bucket": "b", "access_key_id": "a", "secret_access_key": "topsecret", "sekret": "x"}, "sekret"),
        (
            {"kind": "s3", "bucket": "b", "access_key_id": "a", "secret_access_key": "topsecret",
             "endpoint_url": "https://user:topsecret@s3.example.test"},
            "must not contain credentials",
        ),
        ({"kind": "s3", "bucket": "b", "access_key_id": "a", "secret_access_key": "topsecret", "part_size": 1024}, "part size"),
    ],
)
def test_bad_settings_are_refused_by_name_never_by_value(settings, message):
    with pytest.raises(StorageSettingsError) as caught:
        open_storage(settings)
    assert message in str(caught.value)
    assert "topsecret" not in str(caught.value)
    assert caught.value.code == "settings"
