"""control.meeting.negotiation: subscriber renegotiation never has two offers out; changes
made while an offer waits for its answer give exactly one more offer."""

from __future__ import annotations

import asyncio

import pytest

from common.messages import Empty, Message
from control.clock import LoopClock
from control.meeting.negotiation import Negotiation
from control.errors import SignalingError
from control.meeting.model import Subscription, Participant, PublishedTrack
from sfu import api


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
