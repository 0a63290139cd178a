"""control.meeting.offer_slots and its use by control.meeting.negotiation: at most `limit`
subscribers of a meeting renegotiate at once, the others in order, each with one offer
for everything that changed while it waited."""

from __future__ import annotations

import asyncio

import pytest

from control.clock import LoopClock
from control.meeting.model import Participant, PublishedTrack, Subscription
from control.meeting.negotiation import Negotiation
from control.meeting.offer_slots import OfferSlots
from tests.control.meeting.test_negotiation import RecordingPeer, StubConference, settle

pytestmark = pytest.mark.unit


def test_slots_are_taken_up_to_the_limit_then_given_in_order():
    slots = OfferSlots(limit=2)
    assert [slots.acquire(k) for k in "abcd"] == [True, True, False, False]
    assert slots.acquire("a") is True  # a holder asking again still holds
    assert slots.acquire("c") is False and list(slots.waiting) == ["c", "d"]  # once in the queue
    assert slots.release("a") == ["c"]
    assert slots.release("d") == []  # gone while waiting: nobody's turn
    assert slots.release("b") == [] and slots.holders == {"c"}
    assert slots.acquire("e") is True


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="limit"):
        OfferSlots(limit=0)


def _subscriber(name: str) -> tuple[Participant, RecordingPeer]:
    peer = RecordingPeer()
    participant = Participant(name, name, peer)
    participant.subscribe_transport_id = f"t-{name}"
    participant.consumers["c1"] = Subscription("c1", PublishedTrack("p1", "pub", "camera", "video", "0"))
    return participant, peer


def _offers(peer: RecordingPeer) -> int:
    return len([m for m in peer.sent if m["type"] == "offer"])


async def test_subscribers_beyond_the_slots_wait_and_get_one_offer_each():
    slots = OfferSlots(limit=2)
    conference = StubConference()
    subscribers = [_subscriber(f"s{i}") for i in range(5)]
    negotiations = [
        Negotiation(p, conference.request, LoopClock(), conference.answer_timeout_s, slots) for p, _ in subscribers
    ]
    for negotiation in negotiations:
        negotiation.request()
    await settle()
    assert [_offers(peer) for _, peer in subscribers] == [1, 1, 0, 0, 0]
    assert [n.state for n in negotiations[2:]] == [Negotiation.QUEUED] * 3
    negotiations[3].request()  # a change while queued: still one offer when its turn comes
    await negotiations[0].on_answer("a0")
    await settle()
    assert [_offers(peer) for _, peer in subscribers] == [1, 1, 1, 0, 0]
    for index in (1, 2, 3, 4):
        await negotiations[index].on_answer(f"a{index}")
        await settle()
    assert [_offers(peer) for _, peer in subscribers] == [1, 1, 1, 1, 1]
    assert slots.holders == set() and not slots.waiting


async def test_a_subscriber_gone_while_holding_or_waiting_gives_its_turn_away():
    slots = OfferSlots(limit=1)
    conference = StubConference()
    (first, first_peer), (second, second_peer), (third, third_peer) = [_subscriber(n) for n in ("a", "b", "c")]
    negotiations = [Negotiation(p, conference.request, LoopClock(), 30.0, slots) for p in (first, second, third)]
    for negotiation in negotiations:
        negotiation.request()
    await settle()
    second.closed = True
    negotiations[1].cancel()  # left while waiting
    first.closed = True
    negotiations[0].cancel()  # left while its offer waited for the answer
    await settle()
    assert (_offers(second_peer), _offers(third_peer)) == (0, 1)
    assert slots.holders == {negotiations[2]}
    await asyncio.wait_for(negotiations[2].on_answer("a"), 5)
    assert slots.holders == set()
