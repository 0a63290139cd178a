"""What every storage backend offers, the errors it raises, and the rules for keys.

A backend stores files under keys such as "recordings/42/7f3a/tracks/alice-0001.ogg".
`put_file` returns only once the storage has confirmed that it holds exactly the bytes of
the local file (size and SHA-256), so the caller may then delete its local copy.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

READ_CHUNK_BYTES = 1024 * 1024
MAX_KEY_BYTES = 1024  # S3's limit for an object key


class StorageError(Exception):
    """A storage operation failed. The message says what and where, never credentials.

    `code` is a short machine-readable reason: the server's error code for S3
    ("SignatureDoesNotMatch", "NoSuchBucket", ...) or one of ours ("unreachable",
    "verification_failed", "not_found", "invalid_key", "settings", "too_large", "io").
    """

    def __init__(self, message: str, code: str = "error") -> None:
        super().__init__(message)
        self.code = code


class StorageNotFound(StorageError):
    """The key does not exist in the storage."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="not_found")


class InvalidKey(StorageError):
    """A key or prefix that is not a safe relative path, or that leads out of the storage
    (a local symlink): refused before any I/O. The message never quotes the key, which may
    come from a request."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="invalid_key")


class StorageSettingsError(StorageError):
    """Storage settings are invalid; the message names the setting, never its value."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="settings")


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object held by a backend. `sha256` is lowercase hex; "" in listings, where
    backends do not compute it (listing must stay cheap)."""

    key: str
    size: int
    sha256: str


@dataclass(slots=True)
class OpenedObject:
    """An object being read: its size when the storage says it (None otherwise), and its
    bytes in chunks (StorageError if the storage breaks off midway)."""

    size: int | None
    chunks: AsyncIterator[bytes]


@runtime_checkable
class StorageBackend(Protocol):
    """A customer's storage: a local directory or an S3-compatible bucket."""

    async def put_file(self, local_path: Path, key: str, content_type: str) -> StoredObject:
        """Store the file under key, then verify what the storage holds (size and SHA-256)
        before returning. Raises StorageError if anything does not match."""
        ...

    def open_object(self, key: str) -> AbstractAsyncContextManager[OpenedObject]:
        """`async with backend.open_object(key) as obj: async for chunk in obj.chunks`;
        StorageNotFound on entering if key does not exist."""
        ...

    async def read_bytes(self, key: str, max_bytes: int) -> bytes:
        """A whole (small) object; StorageError "too_large" past max_bytes."""
        ...

    async def list(self, prefix: str) -> list[StoredObject]:
        """Objects whose key starts with prefix (a string prefix, as in S3), by key."""
        ...

    async def delete(self, key: str) -> None:
        """Remove key; removing a key that does not exist is not an error."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object under the "folder" prefix ("a/b" means "a/b/"); how many
        went. An empty prefix (the whole storage) is refused with InvalidKey."""
        ...

    async def check(self) -> None:
        """Raise StorageError unless the storage is reachable and writable."""
        ...


def check_key(key: str, what: str = "object key") -> str:
    """Return key if it is a safe relative object key, else raise InvalidKey.

    The same rules hold for every backend so that a recording can move between them:
    "/"-separated, non-empty parts, no "." or "..", no backslash or control characters.
    `what` names the key in the message ("object key", "prefix"), which never quotes it.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"{what} is empty")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKey(f"{what} is longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/") or "\\" in key or any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise InvalidKey(f"{what} is not a relative path")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidKey(f"{what} has an empty, '.' or '..' part")
    return key


def normalized_prefix(prefix: str) -> str:
    """A key prefix as every backend uses it: "a/b" or "/a/b/" -> "a/b/", "" stays "";
    the part between the slashes must be a safe key (else InvalidKey)."""
    prefix = (prefix or "").strip("/")
    return check_key(prefix, "prefix") + "/" if prefix else ""


def folder_prefix(prefix: str) -> str:
    """The non-empty normalized prefix that delete_prefix removes; InvalidKey for ""."""
    folder = normalized_prefix(prefix)
    if not folder:
        raise InvalidKey("prefix is empty: it would name the whole storage")
    return folder


async def read_chunks(chunks: AsyncIterator[bytes], max_bytes: int) -> bytes:
    """Join an object's chunks; StorageError "too_large" as soon as they pass max_bytes."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise StorageError(f"object is larger than {max_bytes} bytes", code="too_large")
        parts.append(chunk)
    return b"".join(parts)


def sha256_of_file(path: Path) -> tuple[int, str]:
    """(size, hex SHA-256) of a file, read in chunks. Blocking: call it in a thread."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as file:
        while chunk := file.read(READ_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def fsync_path(path: Path) -> None:
    """Make a written file, or a rename in a directory, durable (fsync the file or the
    directory entry itself)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
