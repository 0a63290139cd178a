"""Building a backend from a customer's storage settings (as stored by control).

    {"kind": "local", "root": "/srv/recordings/acme"}
    {"kind": "s3", "endpoint_url": "https://s3.example.com", "region": "eu-west-1",
     "bucket": "acme-recordings", "prefix": "conclave/", "access_key_id": "...",
     "secret_access_key": "...", "addressing_style": "path"}

Unknown and missing keys are errors that name the key, never its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recorder.storage.base import StorageBackend, StorageSettingsError
from recorder.storage.local import LocalDirectoryStorage
from recorder.storage.s3 import S3Storage

LOCAL_REQUIRED = {"root"}
LOCAL_OPTIONAL: set[str] = set()
S3_REQUIRED = {"bucket", "access_key_id", "secret_access_key"}
S3_OPTIONAL = {
    "endpoint_url",
    "region",
    "prefix",
    "addressing_style",
    "multipart_threshold",
    "part_size",
    "verify_by_reading_back",
}


def backend_from_settings(settings: Mapping[str, Any]) -> StorageBackend:
    """A LocalDirectoryStorage or S3Storage for settings; StorageSettingsError if invalid."""
    kind = settings.get("kind")
    fields = {name: value for name, value in settings.items() if name != "kind"}
    if kind == "local":
        _check_fields("local", fields, LOCAL_REQUIRED, LOCAL_OPTIONAL)
        return LocalDirectoryStorage(Path(str(fields["root"])))
    if kind == "s3":
        _check_fields("s3", fields, S3_REQUIRED, S3_OPTIONAL)
        tuning = S3_OPTIONAL - {"endpoint_url", "region", "prefix"}
        options = {name: fields[name] for name in tuning if name in fields}
        return S3Storage(
            endpoint_url=fields.get("endpoint_url") or None,
            region=fields.get("region") or "us-east-1",
            bucket=str(fields["bucket"]),
            prefix=str(fields.get("prefix") or ""),
            access_key_id=str(fields["access_key_id"]),
            secret_access_key=str(fields["secret_access_key"]),
            **options,
        )
    raise StorageSettingsError(f"storage kind must be 'local' or 's3', not {kind!r}")


def _check_fields(kind: str, fields: Mapping[str, Any], required: set[str], optional: set[str]) -> None:
    unknown = sorted(set(fields) - required - optional)
    if unknown:
        raise StorageSettingsError(f"unknown {kind} storage setting(s): {', '.join(unknown)}")
    missing = sorted(name for name in required if fields.get(name) in (None, ""))
    if missing:
        raise StorageSettingsError(f"missing {kind} storage setting(s): {', '.join(missing)}")
