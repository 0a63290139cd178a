"""A participant's SDP cannot make the SFU carry more than the limits (media.max_*), nor
disconnect anyone else.

The known attack: a 9.5 KB publish offer with 60 compact m-lines (its `tracks` list of
2) made 60 producers; every other participant was offered 60 more m-lines, answered
with more than the server's 64 KB signaling limit and was disconnected. Here the real
server (control + a worker process) refuses that offer and a 200-m-line one: the
attacker gets `error` (media_error, reason invalid) and the others keep their media and
their sockets. 1,000 subscribe toggles leave the subscriber's offer as long as it was.
"""

from __future__ import annotations

import asyncio

import pytest

from common.channel import RequestFailed
from sfu import api
from sfu.wire import sdp
from tests.support.hostile_sdp import answer_subscribe, compact_publish_offer
from tests.support.worker_fixtures import loopback_ice, worker  # noqa: F401  (fixtures)


@pytest.mark.parametrize("m_lines", [60, 200])
async def test_the_worker_refuses_a_publish_offer_past_its_limits(worker, m_lines):
    await worker.handle(api.TransportCreate(router_id="r", transport_id="pub", direction="publish"))
    with pytest.raises(RequestFailed) as refused:
        await worker.handle(api.PublishOffer(transport_id="pub", sdp=compact_publish_offer(m_lines)))
    assert refused.value.code == "invalid" and "at most" in refused.value.message
    assert not worker.registry.producers


@pytest.mark.parametrize("m_lines", [60, 200])
async def test_a_publish_with_too_many_m_lines_is_refused_and_nobody_else_is_disconnected(
    conclave_server, signaling_socket, m_lines
):
    meeting = await conclave_server.create_meeting()
    alice = conclave_server.bot(meeting, "alice")
    bob = conclave_server.bot(meeting, "bob")
    try:
        await alice.start()
        await bob.start(publish_audio=False, publish_video=False)
        await bob.wait_for_frames(alice.participant_id, "camera", count=5, timeout=30)

        attacker = await signaling_socket(conclave_server.ws_url(meeting["meeting_id"]))
        await attacker.join("mallory")
        offer = compact_publish_offer(m_lines)
        assert len(offer) > 7000
        tracks = [{"mid": "0", "source": "microphone"}, {"mid": "1", "source": "camera"}]
        await attacker.send({"type": "publish", "id": 7, "sdp": offer, "tracks": tracks})
        error = await attacker.recv_type("error", timeout=20)
        assert error["code"] == "media_error" and error.get("reason") == "invalid", error
        assert error.get("id") == 7 and "at most" in error["message"]

        # Nothing of the attacker's reached anyone; everyone is still here, receiving.
        before = bob.received[alice.participant_id]["camera"].frames
        await bob.wait_for_frames(alice.participant_id, "camera", count=before + 10, timeout=30)
        assert all(t["participant_id"] == alice.participant_id for t in bob.remote_tracks.values())
        for bot in (alice, bob):
            assert bot.signaling is not None and bot.signaling.connected and bot.reconnects == 0
            await bot.signaling.ping()
        await attacker.send({"type": "ping", "id": 8})
        assert (await attacker.recv_type("pong"))["id"] == 8  # the attacker is still served too
        live = conclave_server.services.registry.get(meeting["meeting_id"])
        assert live is not None and len(live.participants) == 3
        assert sum(len(p.tracks) for p in live.participants.values()) == 2  # alice's
    finally:
        await asyncio.gather(alice.stop(), bob.stop())


async def test_a_thousand_subscribe_toggles_leave_the_subscribe_offer_bounded(conclave_server_factory, signaling_socket):
    # Not the flood limits under test here: 2,000 subscribe messages and their answers.
    server = await conclave_server_factory(signaling={"messages_per_second": 100_000, "bytes_per_second": 100_000_000})
    meeting = await server.create_meeting()
    url = server.ws_url(meeting["meeting_id"])
    publisher = await signaling_socket(url)
    await publisher.join("pat")
    await publisher.send({"type": "publish", "id": 1, "sdp": compact_publish_offer(2, kind="video"),
                          "tracks": [{"mid": "0", "source": "camera"}, {"mid": "1", "source": "screen"}]})  # fmt: skip
    published = await publisher.recv_type("publish_answer")
    screen = next(t["track_id"] for t in published["tracks"] if t["source"] == "screen")

    viewer = await signaling_socket(url)
    await viewer.join("vic")
    offers: list[str] = []

    async def until_ok(message_id: int) -> None:
        """Read until the `ok` for message_id, answering every offer on the way."""
        while True:
            message = await viewer.recv(timeout=20)
            if message.get("type") == "offer":
                offers.append(message["sdp"])
                await viewer.send({"type": "answer", "sdp": answer_subscribe(message["sdp"])})
            elif message.get("type") == "error":
                raise AssertionError(message)
            elif message.get("type") == "ok" and message.get("id") == message_id:
                return

    await viewer.send({"type": "ping", "id": 0})
    while not offers:  # the first offer: the announcer and pat's two tracks
        message = await viewer.recv(timeout=20)
        if message.get("type") == "offer":
            offers.append(message["sdp"])
            await viewer.send({"type": "answer", "sdp": answer_subscribe(message["sdp"])})
    first = len(sdp.parse(offers[-1]).media)
    assert first == 3

    for n in range(1000):
        for enabled in (False, True):
            message_id = 2 * n + 10 + enabled
            await viewer.send({"type": "subscribe", "id": message_id, "track_id": screen, "enabled": enabled})
            await until_ok(message_id)
    # Let the last renegotiation settle: a ping round trip after the last answer.
    for _ in range(20):
        await viewer.send({"type": "ping", "id": 99_999})
        while (message := await viewer.recv(timeout=20)).get("type") != "pong":
            if message.get("type") == "offer":
                offers.append(message["sdp"])
                await viewer.send({"type": "answer", "sdp": answer_subscribe(message["sdp"])})
        participant = next(p for p in server.services.registry.get(meeting["meeting_id"]).participants.values()
                           if p.name == "vic")  # fmt: skip
        if participant.negotiation is not None and participant.negotiation.state == "idle":
            break
        await asyncio.sleep(0.05)

    sizes = [len(sdp.parse(text).media) for text in offers]
    assert len(offers) > 10  # it really renegotiated
    assert max(sizes) <= first + 2, sizes[-20:]  # a closed m-line waits for one answer before it is recycled
    last = sdp.parse(offers[-1])
    assert len(last.media) <= first + 1
    # Control's bookkeeping stays as short as the offer.
    assert len(participant.consumers) <= len(last.media)
    # And the screen track is forwarded at the end (subscribed last).
    assert [m for m in last.media if m.direction == "sendonly" and m.msid and m.msid[1] == screen]


async def test_a_recycled_m_line_carries_the_track_again_to_an_aiortc_subscriber(conclave_server):
    meeting = await conclave_server.create_meeting()
    alice = conclave_server.bot(meeting, "alice")
    bob = conclave_server.bot(meeting, "bob")
    try:
        await alice.start()
        await bob.start(publish_audio=False, publish_video=False)
        await bob.wait_for_frames(alice.participant_id, "camera", count=5, timeout=30)
        camera = bob.received[alice.participant_id]["camera"]
        mids = set()
        for _ in range(3):
            for enabled in (False, True):
                await bob.signaling.set_subscribed(camera.track_id, enabled)
                negotiations = bob.subscriber.negotiations
                await bob.wait_until(lambda n=negotiations: bob.subscriber.negotiations > n, 20, "an offer answered")
            mids |= {mid for mid, t in bob.subscriber.tracks.items() if t.get("source") == "camera"}
            before = camera.frames
            await bob.wait_for_frames(alice.participant_id, "camera", count=before + 5, timeout=30)
        # Each round the camera came back under a new mid, on a recycled m-line: the
        # offer is as long as at the start (the announcer and alice's two tracks).
        assert len(mids) == 4
        live = conclave_server.services.registry.get(meeting["meeting_id"])
        viewer = next(p for p in live.participants.values() if p.name == "bob")
        assert len(viewer.consumers) == 3
    finally:
        await asyncio.gather(alice.stop(), bob.stop())
