"""Client → server signaling messages: parsing and validation (docs/signaling.md).

Pure functions: text in, a `ClientMessage` out, or `SignalingError` naming what is wrong.
Nothing a client sends can raise anything else from here.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from control.errors import SignalingError

SOURCES = ("microphone", "camera", "screen", "screen-audio")
MAX_NAME_CHARS = 64
MAX_MESSAGE_ID_CHARS = 64
MAX_TRACK_ID_CHARS = 128
MAX_PARTICIPANT_ID_CHARS = 64
_ID = re.compile(r"^[A-Za-z0-9_-]+$")  # what control.meeting.model.new_id makes
MAX_MID_CHARS = 32
MAX_PUBLISHED_TRACKS = 16
MAX_TOKEN_CHARS = 4096
MAX_HINTS = 50  # transcription vocabulary hints (names, terms)
MAX_HINT_CHARS = 100
MAX_TILE_PIXELS = 16384
MAX_FREEZE_COUNT = 1_000_000
MAX_FREEZE_SECONDS = 7 * 24 * 3600.0  # a running total over a week-long call


class ClientMessage:
    __slots__ = ("type", "id", "fields")

    def __init__(self, type_: str, message_id: str | int | None, fields: dict[str, Any]) -> None:
        self.type = type_
        self.id = message_id
        self.fields = fields


class Limits:
    __slots__ = ("chat_max_chars",)

    def __init__(self, chat_max_chars: int) -> None:
        self.chat_max_chars = chat_max_chars


def parse_client_message(text: str, limits: Limits) -> ClientMessage:
    """Parse one text frame. Raises SignalingError (with extra `id` when one was readable)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise SignalingError("bad_json", "message is not valid JSON") from None
    if not isinstance(data, dict):
        raise SignalingError("bad_message", "message must be a JSON object")
    message_id = data.get("id")
    if message_id is not None and not _is_message_id(message_id):
        raise SignalingError(
            "bad_message", f"id: must be an integer or a string of at most {MAX_MESSAGE_ID_CHARS} characters"
        )
    message_type = data.get("type")
    if not isinstance(message_type, str):
        raise SignalingError("bad_message", "type: missing or not a string", id=message_id)
    validate = _VALIDATORS.get(message_type)
    if validate is None:
        raise SignalingError("unknown_type", f"unknown message type {message_type[:64]!r}", id=message_id)
    try:
        fields = validate(data, limits)
    except _Invalid as exc:
        raise SignalingError("invalid_field", f"{message_type}.{exc}", id=message_id) from None
    return ClientMessage(message_type, message_id, fields)


def _is_message_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**53) <= value <= 2**53
    return isinstance(value, str) and len(value) <= MAX_MESSAGE_ID_CHARS


class _Invalid(Exception):
    """Field-level problem; the text starts with the field name."""


def _string(data: dict[str, Any], name: str, *, max_chars: int | None = None, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise _Invalid(f"{name}: missing")
        return None
    if not isinstance(value, str):
        raise _Invalid(f"{name}: expected a string")
    if not value:
        raise _Invalid(f"{name}: must not be empty")
    if max_chars is not None and len(value) > max_chars:
        raise _Invalid(f"{name}: longer than {max_chars} characters")
    if not _is_unicode(value):
        raise _Invalid(f"{name}: {_NOT_UNICODE}")
    return value


def _boolean(data: dict[str, Any], name: str) -> bool:
    value = data.get(name)
    if not isinstance(value, bool):
        raise _Invalid(f"{name}: {'missing' if value is None else 'expected true or false'}")
    return value


def _integer(data: dict[str, Any], name: str, low: int, high: int) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise _Invalid(f"{name}: {'missing' if value is None else 'expected a number'}")
    if not low <= value <= high:
        raise _Invalid(f"{name}: expected {low}..{high}")
    return int(value)


def _source(data: dict[str, Any], name: str = "source") -> str:
    value = _string(data, name)
    if value not in SOURCES:
        raise _Invalid(f"{name}: must be one of {', '.join(SOURCES)}")
    return value


def _has_control_chars(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)


_NOT_UNICODE = "contains a lone surrogate (a \\ud800-\\udfff escape), not Unicode text"


def _is_unicode(text: str) -> bool:
    """False for a JSON string with a lone surrogate escape: it can't be stored or encoded."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_name(value: object) -> str:
    """A display name as given (REST join, signaling join): stripped, 1..64 characters, no
    control characters. Raises ValueError saying what is wrong."""
    if not isinstance(value, str):
        raise ValueError("expected a string")
    name = value.strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise ValueError(f"must be 1 to {MAX_NAME_CHARS} characters")
    if _has_control_chars(name):
        raise ValueError("must not contain control characters")
    if not _is_unicode(name):
        raise ValueError(_NOT_UNICODE)
    return name


def _join(data: dict[str, Any], limits: Limits) -> dict[str, Any]:
    # The join token decides who joins (its name included); a `name` here is only checked.
    name = data.get("name")
    if name is not None:
        try:
            name = clean_name(name)
        except ValueError as exc:
            raise _Invalid(f"name: {exc}") from None
    token = _string(data, "token", max_chars=MAX_TOKEN_CHARS, required=False)
    return {"name": name, "token": token}


def _publish(data: dict[str, Any], limits: Limits) -> dict[str, Any]:
    sdp = _string(data, "sdp")
    tracks = data.get("tracks")
    if not isinstance(tracks, list):
        raise _Invalid(f"tracks: {'missing' if tracks is None else 'expected a list'}")
    if len(tracks) > MAX_PUBLISHED_TRACKS:
        raise _Invalid(f"tracks: at most {MAX_PUBLISHED_TRACKS}")
    sources: dict[str, str] = {}
    for index, track in enumerate(tracks):
        if not isinstance(track, dict):
            raise _Invalid(f"tracks[{index}]: expected an object")
        try:
            mid = _string(track, "mid", max_chars=MAX_MID_CHARS)
            source = _source(track)
        except _Invalid as exc:
            raise _Invalid(f"tracks[{index}].{exc}") from None
        assert mid is not None
        if mid in sources:
            raise _Invalid(f"tracks[{index}].mid: {mid!r} listed twice")
        sources[mid] = source
    return {"sdp": sdp, "sources": sources}


def _answer(data: dict[str, Any], limits: Limits) -> dict[str, Any]:
    return {"sdp": _string(data, "sdp")}


def _mute(data: dict[str, Any], limits: Limits) -> dict[str, Any]:
    return {"source": _source(data), "muted": _boolean(data, "muted")}


def _chat(data: dict[str, Any], limits: Limits) -> dict[str, Any]:
    text = _string(data, "text", max_chars=limits.chat_max_chars)
    assert text is not None
    if not text.strip():
        raise _Invalid("text: must not be blank")
    return {"text": text}


def _subscribe(data: dict[str, Any], limits: Limits) -> dict[str, Any]:
    return {"track_id": _string(data, "track_id", max_chars=MAX_TRACK_ID_CHARS), "enabled": _boolean(data, "enabled")}


def _tile_size(data: dict[str, Any], limits: Limits) -> dict[str, Any]:
    # CSS pixels of the tile a track is shown in; hidden (off-screen, minimized): visible false.
    return {
        "track_id": _string(data, "track_id", max_chars=MAX_TRACK_ID_CHARS),
        "width": _integer(data, "width", 0, MAX_TILE_PIXELS),
        "height": _integer(data, "height", 0, MAX_TILE_PIXELS),
        "visible": _boolean(data, "visible"),
    }


def _number(data: dict[str, Any], name: str, low: float, high: float) -> float:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise _Invalid(f"{name}: {'missing' if value is None else 'expected a number'}")
    if not low <= value <= high:
        raise _Invalid(f"{name}: expected {low:g}..{high:g}")
    return float(value)


def _media_stats(data: dict[str, Any], limits: Limits) -> dict[str, Any]:
    # Running totals over the video it receives (inbound-rtp freezeCount, totalFreezesDuration).
    return {
        "freeze_count": _integer(data, "freeze_count", 0, MAX_FREEZE_COUNT),
        "freeze_seconds": _number(data, "freeze_seconds", 0.0, MAX_FREEZE_SECONDS),
    }


def _nothing(data: dict[str, Any], limits: Limits) -> dict[str, Any]:
    return {}


def _one_of(data: dict[str, Any], name: str, values: tuple[str, ...]) -> str:
    value = _string(data, name)
    if value not in values:
        raise _Invalid(f"{name}: must be one of {', '.join(values)}")
    return value


def _recording(data: dict[str, Any], limits: Limits) -> dict[str, Any]:
    return {"action": _one_of(data, "action", ("start", "stop"))}


def transcription_hints(hints: Any) -> list[str]:
    """Vocabulary hints (names, terms) as given over signaling or REST; ValueError naming
    what is wrong (the text starts with the field name)."""
    if hints is None:
        return []
    if not isinstance(hints, list):
        raise ValueError("hints: expected a list of strings")
    if len(hints) > MAX_HINTS:
        raise ValueError(f"hints: at most {MAX_HINTS}")
    for index, hint in enumerate(hints):
        if not isinstance(hint, str) or not hint.strip() or len(hint) > MAX_HINT_CHARS:
            raise ValueError(f"hints[{index}]: expected a non-empty string of at most {MAX_HINT_CHARS} characters")
        if _has_control_chars(hint):
            raise ValueError(f"hints[{index}]: must not contain control characters")
        if not _is_unicode(hint):
            raise ValueError(f"hints[{index}]: {_NOT_UNICODE}")
    return list(hints)


def _transcription(data: dict[str, Any], limits: Limits) -> dict[str, Any]:
    try:
        hints = transcription_hints(data.get("hints"))
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    return {"action": _one_of(data, "action", ("start", "stop")), "hints": hints}


def _participant_id(data: dict[str, Any], name: str = "participant_id", required: bool = True) -> str | None:
    value = _string(data, name, max_chars=MAX_PARTICIPANT_ID_CHARS, required=required)
    if value is not None and not _ID.match(value):
        raise _Invalid(f"{name}: not a participant id")
    return value


def _hand(data: dict[str, Any], limits: Limits) -> dict[str, Any]:
    # Our own hand; a moderator may lower someone else's (`participant_id`).
    return {"raised": _boolean(data, "raised"), "participant_id": _participant_id(data, required=False)}


def _stage_change(data: dict[str, Any], limits: Limits) -> dict[str, Any]:
    return {"participant_id": _participant_id(data)}


def _consent(data: dict[str, Any], limits: Limits) -> dict[str, Any]:
    return {"decision": _one_of(data, "decision", ("continue", "leave"))}


_VALIDATORS: dict[str, Callable[[dict[str, Any], Limits], dict[str, Any]]] = {
    "join": _join,
    "publish": _publish,
    "answer": _answer,
    "ice": _nothing,  # ICE-lite: client candidates are accepted and ignored
    "mute": _mute,
    "chat": _chat,
    "subscribe": _subscribe,
    "tile_size": _tile_size,
    "media_stats": _media_stats,
    "leave": _nothing,
    "ping": _nothing,
    "recording": _recording,
    "transcription": _transcription,
    "consent": _consent,
    "hand": _hand,
    "promote": _stage_change,
    "demote": _stage_change,
}
CLIENT_TYPES = frozenset(_VALIDATORS)


class TokenBucket:
    """Allows `rate` units per second on average (messages, bytes), bursts up to `burst`."""

    __slots__ = ("rate", "burst", "tokens", "updated", "_clock")

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._clock = clock
        self.updated = clock()

    def allow(self, cost: float = 1.0) -> bool:
        """Take `cost` tokens if there are that many; False (nothing taken) otherwise."""
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False
