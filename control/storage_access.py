"""Control's own access to a customer's storage: read a recording's files (downloads, the
transcript page) and delete them. The recorder writes there (recorder/storage); control
only reads and deletes, with the same settings (`control.storage_settings`) and the same
key rules, so both sides see the same objects.

    storage = open_storage(settings)
    async with storage.open_object(key) as obj:      # ObjectMissing, StorageUnavailable
        async for chunk in obj.chunks: ...
    await storage.delete(key); await storage.delete_prefix("recordings/123/abc/")

Local: files under `root` (a key never leaves it, symlinks included). S3: aiobotocore,
one client per operation (downloads are rare; nothing to pool). Errors never carry the
credentials: they are built from the bucket, the key and the server's error code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from aiobotocore.session import get_session
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from control.storage_settings import BadKey, check_key, normalized_prefix

CHUNK_BYTES = 256 * 1024
NOT_FOUND_CODES = {"NoSuchKey", "NotFound", "404"}
DELETE_BATCH = 1000  # S3's DeleteObjects limit


class StorageUnavailable(Exception):
    """The storage could not be read or changed (unreachable, refused, I/O error)."""


class ObjectMissing(Exception):
    """No object with that key."""


@dataclass(slots=True)
class OpenedObject:
    size: int | None
    chunks: AsyncIterator[bytes]


def open_storage(settings: Mapping[str, Any]) -> LocalStorage | S3Storage:
    """The storage the (validated) settings name; ValueError for an unknown kind."""
    if settings.get("kind") == "local":
        return LocalStorage(Path(str(settings["root"])))
    if settings.get("kind") == "s3":
        return S3Storage(settings)
    raise ValueError("unknown storage kind")


async def read_bytes(storage: LocalStorage | S3Storage, key: str, max_bytes: int) -> bytes:
    """A whole (small) object; StorageUnavailable when it is larger than max_bytes."""
    parts: list[bytes] = []
    size = 0
    async with storage.open_object(key) as obj:
        async for chunk in obj.chunks:
            size += len(chunk)
            if size > max_bytes:
                raise StorageUnavailable(f"object {key!r} is larger than {max_bytes} bytes")
            parts.append(chunk)
    return b"".join(parts)


def _key(key: str) -> str:
    try:
        return check_key(key)
    except BadKey as error:
        raise ObjectMissing(str(error)) from None


# ---------------------------------------------------------------------- local directory


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStorage(root={str(self.root)!r})"

    def path_of(self, key: str) -> Path:
        """Where key lives; ObjectMissing if it would resolve outside root (a symlink)."""
        path = self.root.joinpath(*_key(key).split("/"))
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(path)
        if os.path.commonpath([real, real_root]) != real_root:
            raise ObjectMissing(f"object {key!r} is outside the storage directory")
        return Path(real)

    @contextlib.asynccontextmanager
    async def open_object(self, key: str) -> AsyncIterator[OpenedObject]:
        path = self.path_of(key)
        try:
            file = await asyncio.to_thread(_open_regular_file, path)
        except FileNotFoundError:
            raise ObjectMissing(f"no object {key!r}") from None
        except OSError as error:
            raise StorageUnavailable(f"cannot read {key!r}: {error.strerror or error}") from None
        try:
            yield OpenedObject(os.fstat(file.fileno()).st_size, _file_chunks(file))
        finally:
            file.close()

    async def delete(self, key: str) -> None:
        try:
            path = self.path_of(key)
        except ObjectMissing:
            return  # nothing of ours there
        try:
            await asyncio.to_thread(_remove_file_and_empty_parents, path, Path(os.path.realpath(self.root)))
        except OSError as error:
            raise StorageUnavailable(f"cannot delete {key!r}: {error.strerror or error}") from None

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every file under the prefix (a directory); how many went."""
        try:
            directory = self.path_of(normalized_prefix(prefix).rstrip("/"))
        except (ObjectMissing, BadKey):
            return 0
        try:
            return await asyncio.to_thread(_remove_tree, directory, Path(os.path.realpath(self.root)))
        except OSError as error:
            raise StorageUnavailable(f"cannot delete under {prefix!r}: {error.strerror or error}") from None


def _open_regular_file(path: Path) -> BinaryIO:
    file = open(path, "rb")  # noqa: SIM115 - closed by the caller
    if not os.path.isfile(path):
        file.close()
        raise FileNotFoundError(path)
    return file


async def _file_chunks(file: BinaryIO) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
        yield chunk


def _remove_file_and_empty_parents(path: Path, root: Path) -> None:
    path.unlink(missing_ok=True)
    _remove_empty_parents(path.parent, root)


def _remove_empty_parents(parent: Path, root: Path) -> None:
    while parent != root and root in parent.parents:
        try:
            parent.rmdir()
        except OSError:  # not empty (or gone): stop climbing
            return
        parent = parent.parent


def _remove_tree(directory: Path, root: Path) -> int:
    if not directory.is_dir() or directory == root:
        return 0
    removed = 0
    for current, subdirectories, files in os.walk(directory, topdown=False):
        for name in files:
            os.unlink(os.path.join(current, name))
            removed += 1
        for name in subdirectories:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(current, name))
    with contextlib.suppress(OSError):
        directory.rmdir()
    _remove_empty_parents(directory.parent, root)
    return removed


# ---------------------------------------------------------------------- S3


class S3Storage:
    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.bucket = str(settings["bucket"])
        self.prefix = normalized_prefix(str(settings.get("prefix") or ""))
        self.endpoint_url = settings.get("endpoint_url") or None
        self.region = settings.get("region") or "us-east-1"
        self._credentials = (str(settings["access_key_id"]), str(settings["secret_access_key"]))
        self._config = BotoConfig(
            signature_version="s3v4",
            s3={"addressing_style": settings.get("addressing_style") or "path"},
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            user_agent_extra="conclave-control",
        )

    def __repr__(self) -> str:  # never the credentials
        return f"S3Storage(endpoint_url={self.endpoint_url!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _client(self) -> Any:
        access_key_id, secret_access_key = self._credentials
        return get_session().create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=self._config,
        )

    def _error(self, action: str, key: str, error: BaseException) -> Exception:
        where = f"s3://{self.bucket}/{key}"
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code") or "error")
            if code in NOT_FOUND_CODES:
                return ObjectMissing(f"no object {where}")
            return StorageUnavailable(f"S3 {action} of {where} failed: {code}")
        if isinstance(error, (BotoCoreError, OSError, asyncio.TimeoutError)):
            return StorageUnavailable(f"S3 {action} of {where} failed: {type(error).__name__}")
        return StorageUnavailable(f"S3 {action} of {where} failed")

    @contextlib.asynccontextmanager
    async def open_object(self, key: str) -> AsyncIterator[OpenedObject]:
        object_key = self.prefix + _key(key)
        stack = contextlib.AsyncExitStack()
        try:
            client = await stack.enter_async_context(self._client())
            response = await client.get_object(Bucket=self.bucket, Key=object_key)
        except (ClientError, BotoCoreError, OSError, ValueError, asyncio.TimeoutError) as error:
            await stack.aclose()
            raise self._error("read", object_key, error) from None
        async with stack:  # the client stays open while the body streams
            body = response["Body"]
            try:
                yield OpenedObject(response.get("ContentLength"), self._chunks(body, object_key))
            finally:
                body.close()

    async def _chunks(self, body: Any, object_key: str) -> AsyncIterator[bytes]:
        try:
            async for chunk in body.iter_chunks(CHUNK_BYTES):
                yield chunk
        except (BotoCoreError, OSError, asyncio.TimeoutError) as error:
            raise self._error("read", object_key, error) from None

    async def delete(self, key: str) -> None:
        object_key = self.prefix + _key(key)
        try:
            async with self._client() as client:
                await client.delete_object(Bucket=self.bucket, Key=object_key)
        except (ClientError, BotoCoreError, OSError, asyncio.TimeoutError) as error:
            failure = self._error("delete", object_key, error)
            if not isinstance(failure, ObjectMissing):
                raise failure from None

    async def delete_prefix(self, prefix: str) -> int:
        try:
            full = self.prefix + normalized_prefix(prefix)
        except BadKey:
            return 0
        if full == self.prefix:
            return 0  # never the whole storage
        removed = 0
        try:
            async with self._client() as client:
                paginator = client.get_paginator("list_objects_v2")
                keys: list[str] = []
                async for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                    keys.extend(entry["Key"] for entry in page.get("Contents", ()))
                for start in range(0, len(keys), DELETE_BATCH):
                    batch = [{"Key": k} for k in keys[start : start + DELETE_BATCH]]
                    await client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                    removed += len(batch)
        except (ClientError, BotoCoreError, OSError, asyncio.TimeoutError) as error:
            raise self._error("delete", full, error) from None
        return removed
