"""A customer's storage settings, on control's side: checked with the shared rules
(common.storage), answered in control's HTTP error shape, and shown without their secret.

    {"kind": "local", "root": "/srv/recordings/acme"}
    {"kind": "s3", "endpoint_url": "https://s3.example.com", "region": "eu-west-1",
     "bucket": "acme-recordings", "prefix": "conclave/", "access_key_id": "...",
     "secret_access_key": "...", "addressing_style": "path"}

The secret (`secret_access_key`) is write-only: `public_view` leaves it out and says
`secret_set`. Error messages name the field, never its value, so nothing a customer sent
(a secret pasted into the wrong field) reaches a response or a log.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common import storage
from control.errors import ApiError

SECRET_FIELDS = frozenset({"secret_access_key"})


def validate_storage_settings(body: Mapping[str, Any], current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The settings to store for a PUT body, normalized; ApiError 400 naming the field.

    S3: `secret_access_key` may be left out when the current settings are S3 with the same
    `access_key_id` (change the bucket or prefix without sending the secret again).
    `path` is accepted for `root` (local)."""
    try:
        return storage.validate_storage_settings(body, current)
    except storage.InvalidStorageSetting as error:
        raise ApiError(400, "invalid_field", f"storage.{error.field}: {error.problem}") from None


# ---------------------------------------------------------------------- views


def public_view(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings without their secrets, plus `secret_set`."""
    view = {name: value for name, value in settings.items() if name not in SECRET_FIELDS}
    view["secret_set"] = any(bool(settings.get(name)) for name in SECRET_FIELDS)
    return view


# ---------------------------------------------------------------------- which storage


# What makes two settings the same storage (the secret and tuning aside).
IDENTITY_FIELDS = ("kind", "root", "endpoint_url", "region", "bucket", "prefix", "access_key_id")


def identity(settings: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(settings.get(name) for name in IDENTITY_FIELDS)


def resolve_storage(
    recorded: Mapping[str, Any] | None, current: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The settings to reach a recording's files: those it was written with (`recorded`), or
    the customer's `current` ones when they name the same storage (they may carry a rotated
    secret), or `current` for a recording that kept none (made before recordings kept
    theirs). None when neither is known."""
    if recorded:
        if current and identity(current) == identity(recorded):
            return dict(current)
        return dict(recorded)
    return dict(current) if current else None
