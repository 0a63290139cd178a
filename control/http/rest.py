"""Small helpers every REST handler shares: the JSON body, field checks, times. A bad field is `400 invalid_field` with a message that starts with its name."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

from aiohttp import web

from common import netguard
from control.errors import ApiError

# ---------------------------------------------------------------------- bodies and fields


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; an empty body is {}."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "bad_json", "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "request body must be a JSON object")
    return body


def invalid(name: str, problem: str) -> ApiError:
    return ApiError(400, "invalid_field", f"{name}: {problem}")


def text_field(
    body: dict[str, Any], name: str, *, required: bool = False, max_chars: int = 200, min_chars: int = 0
) -> str | None:
    """A string field, stripped; None when absent (400 when `required`)."""
    value = body.get(name)
    if value is None:
        if required:
            raise invalid(name, "is required")
        return None
    if not isinstance(value, str):
        raise invalid(name, "must be a string")
    value = value.strip()
    if not min_chars <= len(value) <= max_chars:
        raise invalid(name, f"must have {min_chars} to {max_chars} characters")
    if any(ord(c) < 32 for c in value):
        raise invalid(name, "must not contain control characters")
    return value


def bool_field(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise invalid(name, "must be true or false")
    return value


def int_field(body: dict[str, Any], name: str, minimum: int, maximum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise invalid(name, f"must be an integer from {minimum} to {maximum}")
    return value


def email_field(body: dict[str, Any], name: str = "email", *, required: bool = False) -> str | None:
    value = text_field(body, name, required=required, max_chars=254, min_chars=3)
    if value is None:
        return None
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or " " in value:
        raise invalid(name, "must be an email address")
    return value.lower()


def url_field(body: dict[str, Any], name: str) -> str | None:
    """An http(s) URL, or "" (meaning: none)."""
    value = text_field(body, name, max_chars=2000)
    if value and not re.match(r"^https?://[^\s/?#]+[^\s]*$", value):
        raise invalid(name, "must be an http:// or https:// URL")
    return value


async def check_outbound_url(url: str, name: str, allowed_networks: tuple[str, ...]) -> None:
    """400 naming the field when a URL the server would call (a webhook, an S3 endpoint)
    leads to an address it may not reach (common.netguard); checked again at every use."""
    try:
        await netguard.check_url_resolves(url, netguard.networks(allowed_networks), unresolvable_ok=True)
    except netguard.AddressRefused as exc:
        raise invalid(name, f"{exc}: only public addresses are allowed (the operator may allow networks: "
                            "outbound.allowed_networks)") from None


# ---------------------------------------------------------------------- times


def time_field(body: dict[str, Any], name: str) -> float | None:
    """An ISO 8601 date-time with a time zone (or seconds since the epoch) → epoch seconds."""
    value = body.get(name)
    if value is None:
        return None
    return parse_time(value, name)


def parse_time(value: object, name: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or not 0 <= value < 253402300800:  # year 10000
            raise invalid(name, "out of range")
        return float(value)
    if not isinstance(value, str):
        raise invalid(name, "must be an ISO 8601 date-time such as 2030-01-31T09:00:00Z")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(name, "must be an ISO 8601 date-time such as 2030-01-31T09:00:00Z") from None
    if moment.tzinfo is None:
        raise invalid(name, "must carry a time zone (Z or +hh:mm)")
    return moment.timestamp()
