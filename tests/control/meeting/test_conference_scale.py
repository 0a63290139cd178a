"""control.meeting.conference in a large meeting, against fake workers: a new publisher's
tracks reach every subscriber, but their offers go out in waves (OfferSlots), one offer
per subscriber for both tracks; participant changes go out in batches (roster)."""

from __future__ import annotations

import pytest

from control.meeting.offer_slots import OFFER_SLOTS
from tests.control.meeting.test_conference import Setup, settle

pytestmark = pytest.mark.unit

SUBSCRIBERS = OFFER_SLOTS + 18


async def test_a_new_publisher_is_offered_to_everyone_in_waves_one_offer_each():
    s = Setup(capacity=SUBSCRIBERS + 10)
    people = [await s.join(f"p{i}") for i in range(SUBSCRIBERS)]
    speaker, _ = await s.join("speaker")
    await s.publish(speaker, "microphone", "camera")
    await settle()
    offered = [(participant, peer) for participant, peer in people if peer.of_type("offer")]
    assert len(offered) == OFFER_SLOTS  # the rest wait for a slot
    assert all(len(peer.of_type("offer")) == 1 for _, peer in offered)
    while offered:
        for participant, _ in offered:
            await s.conference.answer(s.meeting, participant, "answer")
        await settle()
        offered = [(p, peer) for p, peer in people if peer.of_type("offer") and p.negotiation.state == "awaiting_answer"]
    assert [len(peer.of_type("offer")) for _, peer in people] == [1] * SUBSCRIBERS
    # Every offer carries both of the speaker's tracks (and the server's notice track).
    sources = {tuple(sorted(t["source"] for t in peer.of_type("offer")[0]["tracks"])) for _, peer in people}
    assert sources == {("announcement", "camera", "microphone")}


async def test_joins_reach_the_others_in_batches_not_one_message_each():
    s = Setup(capacity=SUBSCRIBERS + 10)
    first, first_peer = await s.join("first")
    for index in range(SUBSCRIBERS):
        await s.join(f"p{index}")
        if index % 10 == 9:
            s.clock.advance(0.1)  # ten joins per window
    s.clock.advance(1.0)
    batches = first_peer.of_type("participants_changed")
    assert sum(len(b["joined"]) for b in batches) == SUBSCRIBERS
    assert len(batches) == SUBSCRIBERS // 10
    assert first_peer.of_type("participant_joined") == []
