"""A customer's storage settings: checking what a customer sends (control's REST API) and
opening the storage that stored settings name (the recorder to write, control to read and
delete).

    {"kind": "local", "root": "/srv/recordings/acme"}
    {"kind": "s3", "endpoint_url": "https://s3.example.com", "region": "eu-west-1",
     "bucket": "acme-recordings", "prefix": "conclave/", "access_key_id": "...",
     "secret_access_key": "...", "addressing_style": "path"}

Errors name the setting, never its value, so nothing a customer sent (a secret pasted
into the wrong field) reaches a response or a log.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common.storage.base import InvalidKey, StorageBackend, StorageSettingsError, normalized_prefix
from common.storage.local import LocalDirectoryStorage

LOCAL_REQUIRED = frozenset({"root"})
LOCAL_OPTIONAL: frozenset[str] = frozenset()
S3_REQUIRED = frozenset({"bucket", "access_key_id", "secret_access_key"})
S3_OPTIONAL = frozenset(
    {
        "endpoint_url",
        "region",
        "prefix",
        "addressing_style",
        "multipart_threshold",
        "part_size",
        "verify_by_reading_back",
    }
)
ADDRESSING_STYLES = ("path", "virtual", "auto")
MIB = 1024 * 1024
MIN_PART_BYTES, MAX_PART_BYTES = 5 * MIB, 5 * 1024 * MIB  # S3's limits
MAX_TEXT_CHARS = 2000
BUCKET_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")
REGION_PATTERN = re.compile(r"^[A-Za-z0-9-]{0,64}$")


class InvalidStorageSetting(StorageSettingsError):
    """One setting a customer sent is invalid: `field` names it, `problem` says what is
    wrong (never the value)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


# ---------------------------------------------------------------------- what a customer sends


def _text(fields: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise InvalidStorageSetting(name, "is required")
        return None
    if not isinstance(value, str):
        raise InvalidStorageSetting(name, "must be a string")
    if len(value) > MAX_TEXT_CHARS or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidStorageSetting(name, f"must be at most {MAX_TEXT_CHARS} printable characters")
    return value


def _check_names(kind: str, fields: Mapping[str, Any], required: frozenset[str], optional: frozenset[str]) -> None:
    unknown = sorted(set(fields) - required - optional)
    if unknown:
        known = ", ".join(sorted(required | optional))
        raise InvalidStorageSetting(unknown[0], f"unknown {kind} storage setting (known: kind, {known})")


def validate_storage_settings(body: Mapping[str, Any], current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The settings to store for what a customer sent, normalized; InvalidStorageSetting
    naming the first bad field.

    S3: `secret_access_key` may be left out when the current settings are S3 with the same
    `access_key_id` (change the bucket or prefix without sending the secret again).
    `path` is accepted for `root` (local)."""
    kind = body.get("kind")
    fields = {name: value for name, value in body.items() if name != "kind"}
    if kind == "local":
        if "path" in fields and "root" not in fields:
            fields["root"] = fields.pop("path")
        _check_names("local", fields, LOCAL_REQUIRED, LOCAL_OPTIONAL)
        root = _text(fields, "root", required=True)
        if not os.path.isabs(root) or "\0" in root:
            raise InvalidStorageSetting("root", "must be an absolute directory path")
        return {"kind": "local", "root": os.path.normpath(root)}
    if kind == "s3":
        return _validate_s3(fields, current)
    raise InvalidStorageSetting("kind", "must be 'local' or 's3'")


def _validate_s3(fields: dict[str, Any], current: Mapping[str, Any] | None) -> dict[str, Any]:
    _check_names("s3", fields, S3_REQUIRED, S3_OPTIONAL)
    settings: dict[str, Any] = {"kind": "s3"}
    bucket = _text(fields, "bucket", required=True)
    if not BUCKET_PATTERN.match(bucket):
        raise InvalidStorageSetting("bucket", "must be a bucket name (letters, digits, '.', '-', '_')")
    settings["bucket"] = bucket
    settings["access_key_id"] = _text(fields, "access_key_id", required=True)
    settings["secret_access_key"] = _s3_secret(fields, settings["access_key_id"], current)
    settings.update(_s3_location(fields))
    settings.update(_s3_tuning(fields))
    return settings


def _s3_secret(fields: Mapping[str, Any], access_key_id: str, current: Mapping[str, Any] | None) -> str:
    secret = _text(fields, "secret_access_key", required=False)
    if secret is not None:
        return secret
    same_key = current is not None and current.get("kind") == "s3"
    same_key = same_key and current.get("access_key_id") == access_key_id
    if not (same_key and current.get("secret_access_key")):
        raise InvalidStorageSetting("secret_access_key", "is required (unless the access key id stays the same)")
    return str(current["secret_access_key"])


def _s3_location(fields: Mapping[str, Any]) -> dict[str, Any]:
    """endpoint_url, region and prefix, those that were sent."""
    location: dict[str, Any] = {}
    endpoint = _text(fields, "endpoint_url", required=False)
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidStorageSetting("endpoint_url", "must be http(s)://host[:port]")
        if parts.username or parts.password:
            raise InvalidStorageSetting("endpoint_url", "must not contain credentials")
        location["endpoint_url"] = endpoint.rstrip("/")
    region = _text(fields, "region", required=False)
    if region is not None:
        if not REGION_PATTERN.match(region):
            raise InvalidStorageSetting("region", "must be a region name such as eu-west-1")
        location["region"] = region
    prefix = _text(fields, "prefix", required=False)
    if prefix is not None:
        try:
            location["prefix"] = normalized_prefix(prefix)
        except InvalidKey as error:
            raise InvalidStorageSetting("prefix", str(error)) from None
    return location


def _s3_tuning(fields: Mapping[str, Any]) -> dict[str, Any]:
    """addressing_style, multipart_threshold, part_size, verify_by_reading_back, those sent."""
    tuning: dict[str, Any] = {}
    style = fields.get("addressing_style")
    if style is not None:
        if style not in ADDRESSING_STYLES:
            raise InvalidStorageSetting("addressing_style", f"must be one of {', '.join(ADDRESSING_STYLES)}")
        tuning["addressing_style"] = style
    threshold = fields.get("multipart_threshold")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise InvalidStorageSetting("multipart_threshold", "must be a positive integer (bytes)")
        tuning["multipart_threshold"] = threshold
    part_size = fields.get("part_size")
    if part_size is not None:
        whole = isinstance(part_size, int) and not isinstance(part_size, bool)
        if not whole or not MIN_PART_BYTES <= part_size <= MAX_PART_BYTES:
            raise InvalidStorageSetting("part_size", "must be an integer from 5 MiB to 5 GiB (bytes)")
        tuning["part_size"] = part_size
    verify = fields.get("verify_by_reading_back")
    if verify is not None:
        if not isinstance(verify, bool):
            raise InvalidStorageSetting("verify_by_reading_back", "must be true or false")
        tuning["verify_by_reading_back"] = verify
    return tuning


# ---------------------------------------------------------------------- what control stored


def open_storage(settings: Mapping[str, Any], *, allowed_networks: Sequence[str] | None = None) -> StorageBackend:
    """A LocalDirectoryStorage or S3BucketStorage for settings (as validate_storage_settings
    made them); StorageSettingsError if invalid. Nothing is connected yet. With
    `allowed_networks` (a tuple, maybe empty) an S3 endpoint is reached only at public
    addresses and those networks (common.netguard); StorageError when it is not one."""
    kind = settings.get("kind")
    fields = {name: value for name, value in settings.items() if name != "kind"}
    if kind == "local":
        _check_fields("local", fields, LOCAL_REQUIRED, LOCAL_OPTIONAL)
        return LocalDirectoryStorage(Path(str(fields["root"])))
    if kind == "s3":
        _check_fields("s3", fields, S3_REQUIRED, S3_OPTIONAL)
        # Imported here, not at the top: aiobotocore and botocore take a good part of a
        # second and tens of MB to load, and a process that never opens an S3 storage
        # (control serving only local storage, or no downloads at all) should not pay it.
        from common.storage.s3 import S3BucketStorage

        tuning = S3_OPTIONAL - {"endpoint_url", "region", "prefix"}
        options = {name: fields[name] for name in tuning if name in fields}
        return S3BucketStorage(
            endpoint_url=fields.get("endpoint_url") or None,
            region=fields.get("region") or "us-east-1",
            bucket=str(fields["bucket"]),
            prefix=str(fields.get("prefix") or ""),
            access_key_id=str(fields["access_key_id"]),
            secret_access_key=str(fields["secret_access_key"]),
            allowed_networks=tuple(allowed_networks) if allowed_networks is not None else None,
            **options,
        )
    raise StorageSettingsError(f"storage kind must be 'local' or 's3', not {kind!r}")


def _check_fields(
    kind: str, fields: Mapping[str, Any], required: frozenset[str], optional: frozenset[str]
) -> None:
    unknown = sorted(set(fields) - required - optional)
    if unknown:
        raise StorageSettingsError(f"unknown {kind} storage setting(s): {', '.join(unknown)}")
    missing = sorted(name for name in required if fields.get(name) in (None, ""))
    if missing:
        raise StorageSettingsError(f"missing {kind} storage setting(s): {', '.join(missing)}")
