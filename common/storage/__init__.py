"""A customer's storage, for every process that reads or writes it: the recorder uploads
there, control downloads, deletes and reads transcripts there.

    storage = open_storage(settings)            # LocalDirectoryStorage | S3BucketStorage
    stored = await storage.put_file(path, key, content_type)   # verified: size, SHA-256
    async with storage.open_object(key) as obj: # StorageNotFound, InvalidKey, StorageError
        async for chunk in obj.chunks: ...
    await storage.read_bytes(key, max_bytes); await storage.list(prefix)
    await storage.delete(key); await storage.delete_prefix("recordings/42/r1/")

Settings: `validate_storage_settings` checks what a customer sends (errors name the
field, never the value); `open_storage` builds the backend from stored settings. Keys
follow one set of rules everywhere (`check_key`). The S3 backend (common.storage.s3) and
its client library are imported only when an S3 storage is opened.
"""

from common.storage.base import (
    InvalidKey,
    OpenedObject,
    StorageBackend,
    StorageError,
    StorageNotFound,
    StorageSettingsError,
    StoredObject,
    check_key,
    normalized_prefix,
)
from common.storage.local import LocalDirectoryStorage
from common.storage.settings import InvalidStorageSetting, open_storage, validate_storage_settings

__all__ = [
    "InvalidKey",
    "InvalidStorageSetting",
    "LocalDirectoryStorage",
    "OpenedObject",
    "StorageBackend",
    "StorageError",
    "StorageNotFound",
    "StorageSettingsError",
    "StoredObject",
    "check_key",
    "normalized_prefix",
    "open_storage",
    "validate_storage_settings",
]
