"""Customer storage for recordings: backends (local directory, S3), and the spool that
keeps finished files until their backend has confirmed them. See docs/recorder.md."""

from recorder.storage.base import (
    StorageBackend,
    StorageError,
    StorageNotFound,
    StorageSettingsError,
    StoredObject,
    check_key,
)
from recorder.storage.local import LocalDirectoryStorage
from recorder.storage.s3 import S3Storage
from recorder.storage.settings import backend_from_settings
from recorder.storage.spool import Spool, SpoolItem, backoff_delay

__all__ = [
    "LocalDirectoryStorage",
    "S3Storage",
    "Spool",
    "SpoolItem",
    "StorageBackend",
    "StorageError",
    "StorageNotFound",
    "StorageSettingsError",
    "StoredObject",
    "backend_from_settings",
    "backoff_delay",
    "check_key",
]
