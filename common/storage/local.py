"""A customer's storage in a local directory (a mounted disk, an NFS share, ...).

The key is the path relative to the root. A key never leads out of the root, symlinks
included: every path is resolved and checked before it is used.

Files are copied to a hidden temporary name beside their destination, flushed to disk,
renamed into place, then read back and hashed: a put is reported only when the stored
bytes match. Every blocking file operation runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from common.storage.base import (
    READ_CHUNK_BYTES,
    InvalidKey,
    OpenedObject,
    StorageError,
    StorageNotFound,
    StoredObject,
    check_key,
    folder_prefix,
    fsync_path,
    read_chunks,
    sha256_of_file,
)

TEMPORARY_MARK = ".conclave-partial-"  # files being written; never listed
# What opening a key that names no regular file raises: gone, a folder, or a path through
# a file ("a/b" where "a" is a file).
NOT_AN_OBJECT = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


class LocalDirectoryStorage:
    """Objects as files under root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalDirectoryStorage(root={str(self.root)!r})"

    def path_of(self, key: str) -> Path:
        """Where key lives on disk, resolved; InvalidKey if the key is unsafe or leads out
        of root (through a symlink)."""
        path = os.path.realpath(self.root.joinpath(*check_key(key).split("/")))
        real_root = str(self._real_root())
        if os.path.commonpath([path, real_root]) != real_root:
            raise InvalidKey("object key leads out of the storage directory")
        return Path(path)

    def _real_root(self) -> Path:
        return Path(os.path.realpath(self.root))

    # --- writing ---------------------------------------------------------------------------

    async def put_file(self, local_path: Path, key: str, content_type: str) -> StoredObject:
        destination = self.path_of(key)
        try:
            return await asyncio.to_thread(_copy_and_verify, Path(local_path), destination, key)
        except OSError as error:
            raise StorageError(f"cannot store {key!r} in {self.root}: {error}", code="io") from error

    async def check(self) -> None:
        try:
            await asyncio.to_thread(_write_probe, self.root)
        except OSError as error:
            raise StorageError(f"directory {self.root} is not writable: {error}", code="io") from error

    # --- reading ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def open_object(self, key: str) -> AsyncIterator[OpenedObject]:
        path = self.path_of(key)
        try:
            file = await asyncio.to_thread(_open_regular_file, path)
        except NOT_AN_OBJECT:
            raise StorageNotFound(f"no object {key!r} in {self.root}") from None
        except OSError as error:
            raise self._read_error(key, error) from None
        try:
            yield OpenedObject(os.fstat(file.fileno()).st_size, self._chunks(file, key))
        finally:
            file.close()

    async def _chunks(self, file: BinaryIO, key: str) -> AsyncIterator[bytes]:
        try:
            while chunk := await asyncio.to_thread(file.read, READ_CHUNK_BYTES):
                yield chunk
        except OSError as error:
            raise self._read_error(key, error) from None

    def _read_error(self, key: str, error: OSError) -> StorageError:
        return StorageError(f"cannot read {key!r} from {self.root}: {error.strerror or error}", code="io")

    async def read_bytes(self, key: str, max_bytes: int) -> bytes:
        async with self.open_object(key) as obj:
            return await read_chunks(obj.chunks, max_bytes)

    async def list(self, prefix: str) -> list[StoredObject]:
        # The prefix is a string prefix as in S3 ("meetings/ab" matches "meetings/abc/x"), so
        # start walking at the deepest whole directory it names.
        directory = prefix.rpartition("/")[0]
        start = self.path_of(directory) if directory else self._real_root()
        try:
            return await asyncio.to_thread(_list_files, self._real_root(), start, prefix)
        except OSError as error:
            raise StorageError(f"cannot list {prefix!r} in {self.root}: {error}", code="io") from error

    # --- deleting --------------------------------------------------------------------------

    async def delete(self, key: str) -> None:
        path = self.path_of(key)
        try:
            await asyncio.to_thread(_remove_file_and_empty_parents, path, self._real_root())
        except OSError as error:
            raise StorageError(f"cannot delete {key!r} from {self.root}: {error}", code="io") from error

    async def delete_prefix(self, prefix: str) -> int:
        directory = self.path_of(folder_prefix(prefix).rstrip("/"))
        try:
            return await asyncio.to_thread(_remove_tree, directory, self._real_root())
        except OSError as error:
            raise StorageError(f"cannot delete under {prefix!r} in {self.root}: {error}", code="io") from error


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


def _open_regular_file(path: Path) -> BinaryIO:
    file = open(path, "rb")  # noqa: SIM115 - closed by the caller
    if not os.path.isfile(path):  # a FIFO or a device is no object of ours
        file.close()
        raise FileNotFoundError(path)
    return file


def _remove_file_and_empty_parents(path: Path, root: Path) -> None:
    path.unlink(missing_ok=True)
    _remove_empty_parents(path.parent, root)


def _remove_empty_parents(parent: Path, root: Path) -> None:
    while parent != root and root in parent.parents:
        try:
            parent.rmdir()
        except OSError:  # not empty (or already gone): stop climbing
            return
        parent = parent.parent


def _remove_tree(directory: Path, root: Path) -> int:
    """Every file under directory (symlinks removed, never followed), then the emptied
    folders; how many files went."""
    if not directory.is_dir() or directory == root:
        return 0
    removed = 0
    for current, subdirectories, files in os.walk(directory, topdown=False):
        for name in files:
            os.unlink(os.path.join(current, name))
            removed += 1
        for name in subdirectories:
            with contextlib.suppress(OSError):  # a symlink to a folder: not ours to empty
                os.rmdir(os.path.join(current, name))
    with contextlib.suppress(OSError):
        directory.rmdir()
    _remove_empty_parents(directory.parent, root)
    return removed


def _list_files(root: Path, start: Path, prefix: str) -> list[StoredObject]:
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
