"""Connection quality end to end on loopback: two aiortc bots (client.bot) publish and
receive each other through the real SFU worker; its RTCP (their receiver reports about
our SRs, our reception of their streams) becomes TRANSPORT_QUALITY, control scores it and
tells everyone `connection_quality`; /metrics exports the levels and the distributions."""

from __future__ import annotations

import asyncio
import re

import pytest

from client.bot import Bot


@pytest.mark.unit
def test_the_bot_keeps_the_levels_it_is_told_and_ignores_the_rest():
    bot = Bot("http://127.0.0.1:9", "12345678901", "ann")
    bot._on_connection_quality({"type": "connection_quality", "participants": [
        {"participant_id": "a", "quality": "good", "score": 3.8},
        {"participant_id": "b", "quality": "superb", "score": 9},  # not a level
        {"participant_id": 5, "quality": "poor"},  # not a participant id
        "x", None,
        {"participant_id": "c", "quality": "poor", "score": True},  # no usable score: the level alone
    ]})  # fmt: skip
    bot._on_connection_quality({"type": "connection_quality", "participants": "all"})
    assert bot.connection_quality == {"a": "good", "c": "poor"}
    assert bot.quality_scores == {"a": 3.8}
    bot._on_participant_left({"type": "participant_left", "participant_id": "a"})
    assert bot.connection_quality == {"c": "poor"} and bot.quality_scores == {}


def sample(scrape: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", scrape, re.MULTILINE)
    assert match is not None, f"{name} not in /metrics"
    return float(match.group(1))


@pytest.mark.process
@pytest.mark.timeout(90)
async def test_two_bots_on_loopback_are_excellent_to_each_other(conclave_server):
    meeting = await conclave_server.create_meeting()
    ann = conclave_server.bot(meeting, "ann")
    bob = conclave_server.bot(meeting, "bob")
    try:
        await ann.start()
        await bob.start()
        for observer in (ann, bob):
            for someone in (ann, bob):
                level = await observer.wait_connection_quality(someone.participant_id, ("excellent",), timeout=30)
                assert level == "excellent"
                assert observer.quality_scores[someone.participant_id] > 4.0
        # The round trip needs an SR of ours the bot reported on (aiortc reports LSR/DLSR).
        for _ in range(20):
            scrape = conclave_server.services.metrics.render().decode()
            if sample(scrape, "conclave_rtt_seconds_count") > 0:
                break
            await asyncio.sleep(0.5)
        assert sample(scrape, 'conclave_participant_quality{quality="excellent"}') == 2
        assert sample(scrape, 'conclave_participant_quality{quality="poor"}') == 0
        assert sample(scrape, "conclave_rtt_seconds_count") > 0
        assert sample(scrape, 'conclave_rtt_seconds_bucket{le="0.1"}') == sample(scrape, "conclave_rtt_seconds_count")
        for direction in ("publish", "subscribe"):
            assert sample(scrape, f'conclave_loss_ratio_count{{direction="{direction}"}}') > 0
        # The host's participant list carries each one's measures.
        listed = await conclave_server.call("GET", f"/meetings/{meeting['number']}/participants",
                                            token=conclave_server._host["token"])  # fmt: skip
        measured = {p["participant_id"]: p.get("connection_quality") for p in listed["admitted"]}
        for bot in (ann, bob):
            details = measured[bot.participant_id]
            assert details["quality"] == "excellent" and details["score"] > 4.0 and details["freeze_ratio"] == 0
            assert details["publish"]["loss_ratio"] == 0 and details["subscribe"]["loss_ratio"] == 0
            assert 0 <= details["subscribe"]["jitter_ms"] < 100
        assert any(measured[bot.participant_id]["subscribe"]["rtt_ms"] is not None for bot in (ann, bob))
    finally:
        await ann.stop()
        await bob.stop()
