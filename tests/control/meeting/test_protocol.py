"""control.meeting.protocol, the pure parts of signaling: message parsing never fails with
anything but SignalingError; the rate limiter (renegotiation: test_negotiation.py)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control.errors import SignalingError
from control.meeting.protocol import CLIENT_TYPES, Limits, TokenBucket, parse_client_message

LIMITS = Limits(chat_max_chars=100)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(CLIENT_TYPES)) | st.text(max_size=10)},
    optional={
        "id": json_values,
        "name": json_values,
        "text": json_values,
        "sdp": json_values,
        "tracks": json_values,
        "source": json_values,
        "muted": json_values,
        "track_id": json_values,
        "enabled": json_values,
        "participant_id": json_values,
        "raised": json_values,
    },
)


def parse_or_error(text: str) -> None:
    try:
        parse_client_message(text, LIMITS)
    except SignalingError as exc:
        assert exc.code and exc.message


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_only_raises_signaling_error(text):
    parse_or_error(text)


@settings(max_examples=500, deadline=None)
@given(messages)
def test_random_messages_only_raise_signaling_error(message):
    parse_or_error(json.dumps(message))


def test_valid_messages_parse():
    parsed = parse_client_message(
        json.dumps({"type": "publish", "id": 4, "sdp": "v=0", "tracks": [{"mid": "0", "source": "camera"}]}), LIMITS
    )
    assert (parsed.type, parsed.id, parsed.fields) == ("publish", 4, {"sdp": "v=0", "sources": {"0": "camera"}})
    joined = parse_client_message('{"type": "join", "name": " Ann "}', LIMITS)
    assert joined.fields == {"name": "Ann", "token": None}
    joined = parse_client_message('{"type": "join", "token": "a.b.c"}', LIMITS)
    assert joined.fields == {"name": None, "token": "a.b.c"}
    tile = parse_client_message('{"type": "tile_size", "track_id": "t1", "width": 320.5, "height": 180, "visible": true}', LIMITS)
    assert tile.fields == {"track_id": "t1", "width": 320, "height": 180, "visible": True}
    stats = parse_client_message('{"type": "media_stats", "freeze_count": 3, "freeze_seconds": 1.25}', LIMITS)
    assert stats.fields == {"freeze_count": 3, "freeze_seconds": 1.25}
    hand = parse_client_message('{"type": "hand", "raised": true}', LIMITS)
    assert hand.fields == {"raised": True, "participant_id": None}
    lowered = parse_client_message('{"type": "hand", "raised": false, "participant_id": "Ab_9-x"}', LIMITS)
    assert lowered.fields == {"raised": False, "participant_id": "Ab_9-x"}
    for kind in ("promote", "demote"):
        assert parse_client_message(json.dumps({"type": kind, "participant_id": "p1"}), LIMITS).fields == {
            "participant_id": "p1"}


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{", "bad_json"),
        ("null", "bad_message"),
        ('{"type": "x"}', "unknown_type"),
        ('{"type": "chat", "text": "' + "a" * 101 + '"}', "invalid_field"),
        ('{"type": "ping", "id": true}', "bad_message"),
        ('{"type": "tile_size", "track_id": "t", "width": -1, "height": 1, "visible": true}', "invalid_field"),
        ('{"type": "tile_size", "track_id": "t", "width": 1, "height": true, "visible": true}', "invalid_field"),
        ('{"type": "tile_size", "track_id": "t", "width": 1, "height": 1}', "invalid_field"),
        ('{"type": "ping", "id": "' + "i" * 65 + '"}', "bad_message"),
        ('{"type": "media_stats", "freeze_count": 1, "freeze_seconds": -0.5}', "invalid_field"),
        ('{"type": "media_stats", "freeze_count": 1, "freeze_seconds": 1e300}', "invalid_field"),
        ('{"type": "media_stats", "freeze_count": 1.5e9, "freeze_seconds": 1}', "invalid_field"),
        ('{"type": "media_stats", "freeze_count": 1, "freeze_seconds": "1"}', "invalid_field"),
        ('{"type": "media_stats", "freeze_count": 1}', "invalid_field"),
        ('{"type": "hand"}', "invalid_field"),
        ('{"type": "hand", "raised": "yes"}', "invalid_field"),
        ('{"type": "hand", "raised": false, "participant_id": "a b"}', "invalid_field"),
        ('{"type": "promote"}', "invalid_field"),
        ('{"type": "demote", "participant_id": "' + "p" * 65 + '"}', "invalid_field"),
        ('{"type": "promote", "participant_id": 7}', "invalid_field"),
    ],
)
def test_error_codes(text, code):
    with pytest.raises(SignalingError) as caught:
        parse_client_message(text, LIMITS)
    assert caught.value.code == code


def test_token_bucket_refills_with_the_clock():
    now = [100.0]
    bucket = TokenBucket(rate=2, burst=2, clock=lambda: now[0])
    assert [bucket.allow() for _ in range(3)] == [True, True, False]
    now[0] += 0.5
    assert [bucket.allow(), bucket.allow()] == [True, False]
    now[0] += 10
    assert [bucket.allow() for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize(
    "message",
    [
        {"type": "chat", "text": "a\ud800b"},
        {"type": "join", "name": "Ann\udfff"},
        {"type": "answer", "sdp": "v=0\ud83d"},
        {"type": "transcription", "action": "start", "hints": ["ok", "\udc00"]},
        {"type": "publish", "sdp": "v=0", "tracks": [{"mid": "\ud800", "source": "camera"}]},
    ],
)
def test_lone_surrogates_are_refused(message):
    # Found writing the fuzz target "signaling" (tests/fuzz): JSON may escape half a UTF-16
    # pair ("\ud800"); such a string passed, then failed in the store as UnicodeEncodeError
    # ("internal" error and a traceback for a chat message).
    with pytest.raises(SignalingError) as caught:
        parse_client_message(json.dumps(message), LIMITS)
    assert caught.value.code == "invalid_field" and "surrogate" in caught.value.message
    assert parse_client_message(json.dumps({"type": "chat", "text": "a\U0001f600b"}), LIMITS).fields == {
        "text": "a\U0001f600b"
    }  # a whole pair (as json.dumps writes an emoji) is a character like any other
