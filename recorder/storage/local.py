"""Customer storage in a local directory (a mounted disk, NFS share, ...).

Files are copied to a hidden temporary name beside their destination, flushed to disk,
renamed into place, then read back and hashed: a put is reported only when the stored
bytes match. Every blocking file operation runs in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from recorder.storage.base import (
    READ_CHUNK_BYTES,
    StorageError,
    StorageNotFound,
    StoredObject,
    check_key,
    fsync_path,
    sha256_of_file,
)

TEMPORARY_MARK = ".conclave-partial-"  # files being written; never listed


class LocalDirectoryStorage:
    """Stores objects as files under root; the key is the relative path."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalDirectoryStorage(root={str(self.root)!r})"

    def path_of(self, key: str) -> Path:
        """Where key lives on disk (the key is checked, so it cannot leave root)."""
        return self.root.joinpath(*check_key(key).split("/"))

    async def put_file(self, local_path: Path, key: str, content_type: str) -> StoredObject:
        destination = self.path_of(key)
        try:
            return await asyncio.to_thread(_copy_and_verify, Path(local_path), destination, key)
        except OSError as error:
            raise StorageError(f"cannot store {key!r} in {self.root}: {error}", code="io") from error

    async def delete(self, key: str) -> None:
        path = self.path_of(key)
        try:
            await asyncio.to_thread(_remove_file_and_empty_parents, path, self.root)
        except OSError as error:
            raise StorageError(f"cannot delete {key!r} from {self.root}: {error}", code="io") from error

    async def list(self, prefix: str) -> list[StoredObject]:
        try:
            return await asyncio.to_thread(_list_files, self.root, prefix)
        except OSError as error:
            raise StorageError(f"cannot list {prefix!r} in {self.root}: {error}", code="io") from error

    async def open_read(self, key: str) -> AsyncIterator[bytes]:
        path = self.path_of(key)
        try:
            file = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise StorageNotFound(f"no object {key!r} in {self.root}") from None
        except OSError as error:
            raise StorageError(f"cannot read {key!r} from {self.root}: {error}", code="io") from error
        try:
            while chunk := await asyncio.to_thread(file.read, READ_CHUNK_BYTES):
                yield chunk
        finally:
            file.close()

    async def check(self) -> None:
        try:
            await asyncio.to_thread(_write_probe, self.root)
        except OSError as error:
            raise StorageError(f"directory {self.root} is not writable: {error}", code="io") from error


def _copy_and_verify(source: Path, destination: Path, key: str) -> StoredObject:
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f"{TEMPORARY_MARK}{uuid.uuid4().hex}")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(source, "rb") as reader, open(partial, "wb") as writer:
            while chunk := reader.read(READ_CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
                writer.write(chunk)
            writer.flush()
            os.fsync(writer.fileno())
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    fsync_path(destination.parent)
    stored_size, stored_sha256 = sha256_of_file(destination)
    if (stored_size, stored_sha256) != (size, digest.hexdigest()):
        raise StorageError(
            f"verification of {key!r} failed: wrote {size} bytes, read back {stored_size} "
            "bytes with a different SHA-256",
            code="verification_failed",
        )
    return StoredObject(key=key, size=size, sha256=stored_sha256)


def _remove_file_and_empty_parents(path: Path, root: Path) -> None:
    path.unlink(missing_ok=True)
    parent = path.parent
    while parent != root and root in parent.parents:
        try:
            parent.rmdir()
        except OSError:  # not empty (or already gone): stop climbing
            return
        parent = parent.parent


def _list_files(root: Path, prefix: str) -> list[StoredObject]:
    # The prefix is a string prefix as in S3 ("meetings/ab" matches "meetings/abc/x"), so
    # start walking at the deepest whole directory it names.
    directory = prefix.rpartition("/")[0]
    start = root.joinpath(*check_key(directory).split("/")) if directory else root
    found = []
    for folder, _subfolders, files in os.walk(start):
        for name in files:
            if name.startswith(TEMPORARY_MARK):
                continue
            path = Path(folder) / name
            key = path.relative_to(root).as_posix()
            if not key.startswith(prefix):
                continue
            try:
                size = path.stat().st_size
            except FileNotFoundError:  # deleted while we walked
                continue
            found.append(StoredObject(key=key, size=size, sha256=""))
    return sorted(found, key=lambda stored: stored.key)


def _write_probe(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    probe = root / f"{TEMPORARY_MARK}check-{uuid.uuid4().hex}"
    try:
        with open(probe, "wb") as file:
            file.write(b"conclave storage check\n")
            file.flush()
            os.fsync(file.fileno())
    finally:
        probe.unlink(missing_ok=True)
