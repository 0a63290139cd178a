"""A customer's storage settings, checked on control's side (control may import only
`recorder.api` of the recorder, so the rules of `recorder/storage/settings.py` and
`recorder/storage/base.check_key` are mirrored here; change both together).

    {"kind": "local", "root": "/srv/recordings/acme"}
    {"kind": "s3", "endpoint_url": "https://s3.example.com", "region": "eu-west-1",
     "bucket": "acme-recordings", "prefix": "conclave/", "access_key_id": "...",
     "secret_access_key": "...", "addressing_style": "path"}

The secret (`secret_access_key`) is write-only: `public_view` leaves it out and says
`secret_set`. Error messages name the field, never its value, so nothing a customer sent
(a secret pasted into the wrong field) reaches a response or a log.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from control.errors import ApiError

SECRET_FIELDS = frozenset({"secret_access_key"})
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
MAX_KEY_BYTES = 1024  # S3's limit for an object key (recorder.storage.base)
MAX_TEXT_CHARS = 2000
BUCKET_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")
REGION_PATTERN = re.compile(r"^[A-Za-z0-9-]{0,64}$")


class BadKey(ValueError):
    """An object key that is not a safe relative path (recorder.storage.base.check_key)."""


def check_key(key: object) -> str:
    """`key` if it is a safe relative object key, else BadKey: "/"-separated non-empty
    parts, no "." or "..", no backslash or control characters (the recorder's rules)."""
    if not isinstance(key, str) or not key:
        raise BadKey("object key is empty")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise BadKey(f"object key is longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/") or "\\" in key or any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise BadKey("object key is not a relative path")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise BadKey("object key has an empty, '.' or '..' part")
    return key


def normalized_prefix(prefix: str) -> str:
    """"a/b" or "/a/b/" -> "a/b/"; "" stays "" (the recorder's S3 prefix rule)."""
    prefix = (prefix or "").strip("/")
    return check_key(prefix) + "/" if prefix else ""


# ---------------------------------------------------------------------- validation


def _bad(name: str, problem: str) -> ApiError:
    return ApiError(400, "invalid_field", f"storage.{name}: {problem}")


def _text(fields: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise _bad(name, "is required")
        return None
    if not isinstance(value, str):
        raise _bad(name, "must be a string")
    if len(value) > MAX_TEXT_CHARS or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise _bad(name, f"must be at most {MAX_TEXT_CHARS} printable characters")
    return value


def _check_names(kind: str, fields: Mapping[str, Any], required: frozenset[str], optional: frozenset[str]) -> None:
    unknown = sorted(set(fields) - required - optional)
    if unknown:
        known = ", ".join(sorted(required | optional))
        raise _bad(unknown[0], f"unknown {kind} storage setting (known: kind, {known})")


def validate_storage_settings(body: Mapping[str, Any], current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The settings to store for a PUT body, normalized; ApiError 400 naming the field.

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
            raise _bad("root", "must be an absolute directory path")
        return {"kind": "local", "root": os.path.normpath(root)}
    if kind == "s3":
        return _validate_s3(fields, current)
    raise _bad("kind", "must be 'local' or 's3'")


def _validate_s3(fields: dict[str, Any], current: Mapping[str, Any] | None) -> dict[str, Any]:
    _check_names("s3", fields, S3_REQUIRED, S3_OPTIONAL)
    settings: dict[str, Any] = {"kind": "s3"}
    bucket = _text(fields, "bucket", required=True)
    if not BUCKET_PATTERN.match(bucket):
        raise _bad("bucket", "must be a bucket name (letters, digits, '.', '-', '_')")
    settings["bucket"] = bucket
    settings["access_key_id"] = _text(fields, "access_key_id", required=True)
    secret = _text(fields, "secret_access_key", required=False)
    if secret is None:
        same_key = current is not None and current.get("kind") == "s3"
        same_key = same_key and current.get("access_key_id") == settings["access_key_id"]
        if not (same_key and current.get("secret_access_key")):
            raise _bad("secret_access_key", "is required (unless the access key id stays the same)")
        secret = str(current["secret_access_key"])
    settings["secret_access_key"] = secret
    endpoint = _text(fields, "endpoint_url", required=False)
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _bad("endpoint_url", "must be http(s)://host[:port]")
        if parts.username or parts.password:
            raise _bad("endpoint_url", "must not contain credentials")
        settings["endpoint_url"] = endpoint.rstrip("/")
    region = _text(fields, "region", required=False)
    if region is not None:
        if not REGION_PATTERN.match(region):
            raise _bad("region", "must be a region name such as eu-west-1")
        settings["region"] = region
    prefix = _text(fields, "prefix", required=False)
    if prefix is not None:
        try:
            settings["prefix"] = normalized_prefix(prefix)
        except BadKey as error:
            raise _bad("prefix", str(error).replace("object key", "prefix")) from None
    style = fields.get("addressing_style")
    if style is not None:
        if style not in ADDRESSING_STYLES:
            raise _bad("addressing_style", f"must be one of {', '.join(ADDRESSING_STYLES)}")
        settings["addressing_style"] = style
    threshold = fields.get("multipart_threshold")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise _bad("multipart_threshold", "must be a positive integer (bytes)")
        settings["multipart_threshold"] = threshold
    part_size = fields.get("part_size")
    if part_size is not None:
        whole = isinstance(part_size, int) and not isinstance(part_size, bool)
        if not whole or not MIN_PART_BYTES <= part_size <= MAX_PART_BYTES:
            raise _bad("part_size", "must be an integer from 5 MiB to 5 GiB (bytes)")
        settings["part_size"] = part_size
    verify = fields.get("verify_by_reading_back")
    if verify is not None:
        if not isinstance(verify, bool):
            raise _bad("verify_by_reading_back", "must be true or false")
        settings["verify_by_reading_back"] = verify
    return settings


# ---------------------------------------------------------------------- views


def public_view(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings without their secrets, plus `secret_set`."""
    view = {name: value for name, value in settings.items() if name not in SECRET_FIELDS}
    view["secret_set"] = any(bool(settings.get(name)) for name in SECRET_FIELDS)
    return view


async def storage_for(state: Any, customer_id: str) -> dict[str, Any] | None:
    """The customer's storage settings, None when it has none (then nothing is recorded:
    control.recording refuses to start, and there is nothing to read or delete)."""
    return await state.store.get_customer_storage(customer_id)
