"""ICE on a live worker (in process, real sockets on 127.0.0.1, aiortc peers): a check from
a third address, with the subscriber's right credentials, does not redirect its media.

An aiortc publisher and subscriber run a meeting. From a third socket the test sends
checks as the subscriber would (USERNAME and MESSAGE-INTEGRITY right): not nominated,
they are answered and move nothing; nominated, the worker asks that address to prove
itself (its own check, keyed with the subscriber's password) and sends it nothing else
until it does. Meanwhile the subscriber keeps decoding. Only an answer with the
subscriber's password from that address moves the media there (a client changing
networks does exactly that).
"""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError

from sfu import api
from sfu.wire import sdp, stun
from tests.support.worker_fixtures import loopback_ice, worker  # noqa: F401  (fixtures)

pytestmark = pytest.mark.process


class ThirdAddress:
    """A UDP socket that is neither peer; sorts what the worker sends it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.stun: list[stun.StunMessage] = []
        self.media = 0

    def collect(self) -> None:
        while True:
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                return
            if data and data[0] < 4:
                self.stun.append(stun.parse(data))
            elif data and 127 < data[0] < 192:
                self.media += 1


async def test_a_check_from_a_third_address_does_not_redirect_media(worker):
    frames = 0
    tasks = []
    publisher, subscriber = RTCPeerConnection(), RTCPeerConnection()
    third = ThirdAddress()
    try:
        await worker.handle(api.TransportCreate(router_id="r", transport_id="pub", direction="publish"))
        publisher.addTransceiver(VideoStreamTrack(), direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        published = await worker.handle(api.PublishOffer(transport_id="pub", sdp=publisher.localDescription.sdp))
        await publisher.setRemoteDescription(RTCSessionDescription(published.sdp, "answer"))

        await worker.handle(api.TransportCreate(router_id="r", transport_id="sub", direction="subscribe"))
        for info in published.producers:
            await worker.handle(api.ConsumerCreate(transport_id="sub", consumer_id="c", producer_id=info.producer_id))
        offer = await worker.handle(api.SubscribeOfferCreate(transport_id="sub"))

        @subscriber.on("track")
        def on_track(track):
            async def count():
                nonlocal frames
                try:
                    while True:
                        await track.recv()
                        frames += 1
                except MediaStreamError:
                    pass

            tasks.append(asyncio.ensure_future(count()))

        await subscriber.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        await subscriber.setLocalDescription(await subscriber.createAnswer())
        await worker.handle(api.SubscribeAnswerSet(transport_id="sub", sdp=subscriber.localDescription.sdp))

        async def frames_reach(count: int) -> None:
            for _ in range(300):
                if frames >= count:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"the subscriber decoded {frames} frames, wanted {count}")

        await frames_reach(10)
        ours = sdp.parse(offer.sdp).media[0]
        theirs = sdp.parse(subscriber.localDescription.sdp).media[0]
        username = f"{ours.ice_ufrag}:{theirs.ice_ufrag}"
        key = (ours.ice_pwd or "").encode()
        target = ("127.0.0.1", worker.port)
        transport = worker.transports["sub"]
        selected = transport.addr

        def check(nominate: bool) -> None:
            request = stun.build_binding_request(
                os.urandom(12), username, key, priority=1, controlling_tiebreaker=5, use_candidate=nominate
            )
            third.sock.sendto(request, target)

        # Not nominated: answered, nothing moves.
        check(nominate=False)
        await asyncio.sleep(0.5)
        third.collect()
        assert [m.message_class for m in third.stun] == [stun.CLASS_SUCCESS]
        assert transport.addr == selected

        # Nominated: answered, and the worker asks the address to prove itself.
        check(nominate=True)
        await asyncio.sleep(0.5)
        third.collect()
        probes = [m for m in third.stun if m.message_class == stun.CLASS_REQUEST]
        assert len(probes) == 1 and probes[0].username == f"{theirs.ice_ufrag}:{ours.ice_ufrag}"
        # A guess at the answer (without the subscriber's password) moves nothing either.
        guess = stun.build_binding_success(probes[0].transaction_id, third.sock.getsockname(), b"guessed-password-123456")
        third.sock.sendto(guess, target)
        before = frames
        await frames_reach(before + 15)  # the subscriber goes on decoding, seconds later
        third.collect()
        assert third.media == 0 and transport.addr == selected
        stats = await worker.handle(api.WorkerGetStats())
        assert stats.counters["ice_probes_sent"] == 1 and stats.counters["ice_path_switches"] == 0
        assert stats.dropped["stun_auth"] >= 1

        # With the subscriber's password (the client itself, on a new network): it moves.
        check(nominate=True)
        await asyncio.sleep(0.6)
        third.collect()
        probe = [m for m in third.stun if m.message_class == stun.CLASS_REQUEST][-1]
        client_key = (theirs.ice_pwd or "").encode()
        third.sock.sendto(stun.build_binding_success(probe.transaction_id, third.sock.getsockname(), client_key), target)
        for _ in range(100):
            await asyncio.sleep(0.05)
            third.collect()
            if third.media:
                break
        assert third.media > 0 and transport.addr == third.sock.getsockname()
    finally:
        for task in tasks:
            task.cancel()
        await publisher.close()
        await subscriber.close()
        third.sock.close()
