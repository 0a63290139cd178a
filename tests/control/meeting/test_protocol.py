"""Pure parts of signaling: message parsing never fails with anything but
SignalingError; the rate limiter; subscriber renegotiation never has two offers out."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.messages import Empty, Message
from control.clock import LoopClock
from control.meeting.negotiation import Negotiation
from control.errors import SignalingError
from control.meeting.model import Subscription, Participant, PublishedTrack
from control.meeting.protocol import CLIENT_TYPES, Limits, TokenBucket, parse_client_message
from sfu import api

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


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{", "bad_json"),
        ("null", "bad_message"),
        ('{"type": "x"}', "unknown_type"),
        ('{"type": "chat", "text": "' + "a" * 101 + '"}', "invalid_field"),
        ('{"type": "ping", "id": true}', "bad_message"),
        ('{"type": "ping", "id": "' + "i" * 65 + '"}', "bad_message"),
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


# --- subscriber renegotiation: never two offers outstanding -----------------------------

class RecordingPeer:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, message: dict) -> None:
        self.sent.append(message)

    def close(self, code: int, reason: str) -> None:
        pass


class StubConference:
    """Answers the two requests a Negotiation makes, the way a worker would."""

    answer_timeout_s = 30.0

    def __init__(self) -> None:
        self.requests: list[Message] = []

    async def request(self, message):
        self.requests.append(message)
        if isinstance(message, api.SubscribeOfferCreate):
            info = api.ConsumerInfo("c1", "p1", "0", "video", True)
            return api.SubscribeOffer(sdp=f"offer {len(self.requests)}", consumers=[info])
        return Empty()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_changes_during_an_offer_give_exactly_one_more_offer():
    peer = RecordingPeer()
    participant = Participant("sub", "subscriber", peer)
    participant.subscribe_transport_id = "t1"
    participant.consumers["c1"] = Subscription("c1", PublishedTrack("p1", "pub", "camera", "video", "0"))
    conference = StubConference()
    negotiation = Negotiation(participant, conference.request, LoopClock(), conference.answer_timeout_s)

    with pytest.raises(SignalingError) as caught:
        await negotiation.on_answer("early")
    assert caught.value.code == "unexpected_answer"

    negotiation.request()
    await settle()
    offers = [m for m in peer.sent if m["type"] == "offer"]
    assert len(offers) == 1
    assert offers[0]["tracks"] == [
        {"mid": "0", "track_id": "p1", "participant_id": "pub", "source": "camera", "kind": "video", "active": True}
    ]
    negotiation.request()  # two changes while the answer is outstanding...
    negotiation.request()
    await settle()
    assert len([m for m in peer.sent if m["type"] == "offer"]) == 1

    await negotiation.on_answer("answer 1")  # ...give one more offer after it
    await settle()
    assert len([m for m in peer.sent if m["type"] == "offer"]) == 2
    await negotiation.on_answer("answer 2")
    await settle()
    assert len([m for m in peer.sent if m["type"] == "offer"]) == 2
    assert negotiation.state == Negotiation.IDLE
    names = [m.NAME for m in conference.requests]
    assert names == ["SUBSCRIBE_OFFER_CREATE", "SUBSCRIBE_ANSWER_SET"] * 2
