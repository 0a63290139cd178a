"""What every storage backend offers, the errors it raises, and small shared helpers.

A backend stores finished recording files under keys such as
"meetings/7f3a/tracks/alice-audio-0001.ogg". `put_file` returns only once the server has
confirmed that it holds exactly the bytes of the local file (size and SHA-256), so the
caller may then delete its local copy.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

READ_CHUNK_BYTES = 1024 * 1024
MAX_KEY_BYTES = 1024  # S3's limit for an object key


class StorageError(Exception):
    """A storage operation failed. The message says what and where, never credentials.

    `code` is a short machine-readable reason: the server's error code for S3
    ("SignatureDoesNotMatch", "NoSuchBucket", ...) or one of ours ("unreachable",
    "verification_failed", "not_found", "invalid_key", "settings", "io").
    """

    def __init__(self, message: str, code: str = "error") -> None:
        super().__init__(message)
        self.code = code


class StorageNotFound(StorageError):
    """The key does not exist in the backend."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="not_found")


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


@runtime_checkable
class StorageBackend(Protocol):
    """Customer storage: a local directory or an S3-compatible bucket."""

    async def put_file(self, local_path: Path, key: str, content_type: str) -> StoredObject:
        """Store the file under key, then verify what the server holds (size and SHA-256)
        before returning. Raises StorageError if anything does not match."""
        ...

    async def delete(self, key: str) -> None:
        """Remove key; removing a key that does not exist is not an error."""
        ...

    async def list(self, prefix: str) -> list[StoredObject]:
        """Objects whose key starts with prefix, sorted by key."""
        ...

    def open_read(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in chunks (`async for chunk in backend.open_read(key)`);
        raises StorageNotFound on the first iteration if key does not exist."""
        ...

    async def check(self) -> None:
        """Raise StorageError unless the storage is reachable and writable."""
        ...


def check_key(key: str) -> str:
    """Return key if it is a safe relative object key, else raise StorageError.

    The same rules hold for every backend so that a recording can move between them:
    "/"-separated, non-empty parts, no "." or "..", no backslash or control characters.
    """
    if not isinstance(key, str) or not key:
        raise StorageError("object key is empty", code="invalid_key")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise StorageError(f"object key is longer than {MAX_KEY_BYTES} bytes", code="invalid_key")
    if key.startswith("/") or "\\" in key or any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise StorageError(f"object key {key!r} is not a relative path", code="invalid_key")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise StorageError(f"object key {key!r} has an empty, '.' or '..' part", code="invalid_key")
    return key



def normalized_prefix(prefix: str, check: Callable[[str], str] = check_key) -> str:
    """A key prefix as every backend uses it: "a/b" or "/a/b/" -> "a/b/", "" stays "";
    the part between the slashes must pass `check` (check_key: else StorageError)."""
    prefix = (prefix or "").strip("/")
    return check(prefix) + "/" if prefix else ""


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
