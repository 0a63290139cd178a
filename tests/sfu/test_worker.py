"""The worker's requests on its object tree (sfu/worker.py over sfu/engine/router.py), in
process, 127.0.0.1 only: every close request cascades through the tree and leaves the
registry as if the closed entity never existed; ids taken again are not lost; the DTLS
certificate is renewed for new transports before it expires.
"""

from __future__ import annotations

import asyncio
import datetime

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.rtcdtlstransport import RTCCertificate

from common.channel import RequestFailed
from sfu import api
from sfu.transport.dtls import DtlsCertificates, certificate_fingerprint
from sfu.wire import rtcp
from sfu.worker import Worker
from tests.support.certificates import certificate_ending
from tests.support.worker_fixtures import loopback_ice, worker  # noqa: F401  (fixtures)


async def plain_producer(worker: Worker, transport_id: str, kind: str = "video", ssrc: int = 1111) -> str:
    await worker.handle(api.PlainTransportCreate(router_id="r", transport_id=transport_id))
    video = kind == "video"
    made = await worker.handle(
        api.PlainProducerCreate(
            transport_id=transport_id,
            kind=kind,
            codec_name="VP8" if video else "opus",
            clock_rate=90000 if video else 48000,
            payload_type=96 if video else 111,
            ssrc=ssrc,
        )
    )
    return made.producer.producer_id


async def announcer(worker: Worker) -> str:
    await worker.handle(api.DirectTransportCreate(router_id="r", transport_id="direct"))
    made = await worker.handle(api.DirectProducerCreate(transport_id="direct", kind="audio"))
    assert made.producer.kind == "audio" and made.producer.codec == "opus" and made.producer.mid == "0"
    return made.producer.producer_id


async def test_router_close_empties_the_registry_whatever_hangs_in_it(worker):
    cam = await plain_producer(worker, "pub")
    notices = await announcer(worker)
    await worker.handle(api.TransportCreate(router_id="r", transport_id="sub", direction="subscribe"))
    await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="out"))
    for transport_id in ("sub", "out"):
        for producer_id in (cam, notices):
            create = api.ConsumerCreate(transport_id, consumer_id=f"{transport_id}-{producer_id}", producer_id=producer_id)
            await worker.handle(create)
    registry = worker.registry
    assert len(registry.transports) == 4 and len(registry.producers) == 2 and len(registry.consumers) == 4
    gauges = (await worker.handle(api.WorkerGetStats())).gauges
    # The direct transport is no network path, and its announcer is no incoming stream.
    assert (gauges["transports"], gauges["producers"], gauges["consumers"]) == (3, 1, 4)
    await worker.handle(api.RouterClose(router_id="r"))
    assert not (registry.routers or registry.transports or registry.producers or registry.consumers)
    await worker.handle(api.RouterClose(router_id="r"))  # gone: still fine


async def test_a_consumer_id_taken_again_survives_the_close_of_the_old_ones_transport(worker):
    """Regression: closing a WebRTC transport unregistered, by id, every consumer it had
    ever had, including closed ones whose id a new consumer elsewhere had since taken;
    that consumer then forwarded on, and CONSUMER_CLOSE could no longer find it."""
    cam = await plain_producer(worker, "pub")
    await worker.handle(api.TransportCreate(router_id="r", transport_id="sub", direction="subscribe"))
    await worker.handle(api.ConsumerCreate(transport_id="sub", consumer_id="c", producer_id=cam))
    await worker.handle(api.ConsumerClose(consumer_id="c"))
    await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="out"))
    await worker.handle(api.ConsumerCreate(transport_id="out", consumer_id="c", producer_id=cam))
    again = worker.registry.consumers["c"]
    await worker.handle(api.TransportClose(transport_id="sub"))
    assert worker.registry.consumers.get("c") is again and not again.closed
    await worker.handle(api.ConsumerClose(consumer_id="c"))
    assert again.closed and not worker.registry.producers[cam].consumers


async def test_a_pli_for_a_closed_webrtc_consumer_asks_the_publisher_for_nothing(worker):
    """Regression: a subscribe transport kept closed consumers in its SSRC map, so a PLI
    (or NACK) for a closed m-line still reached the producer."""
    cam = await plain_producer(worker, "pub")
    await worker.handle(api.TransportCreate(router_id="r", transport_id="sub", direction="subscribe"))
    await worker.handle(api.ConsumerCreate(transport_id="sub", consumer_id="c", producer_id=cam))
    consumer = worker.registry.consumers["c"]
    await worker.handle(api.ConsumerClose(consumer_id="c"))
    sub = worker.transports["sub"]
    sub._route_rtcp(rtcp.build_pli(0xABCD, consumer.ssrc) + rtcp.build_nack(0xABCD, consumer.ssrc, [7]))
    counters = worker.counters
    assert counters.pli_received == 1 and counters.pli_sent == 0  # counted, not relayed
    assert counters.nack_requested == 0  # nobody to answer it


async def test_closing_the_announcer_or_its_transport_closes_its_consumers(worker):
    notices = await announcer(worker)
    await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="out"))
    await worker.handle(api.ConsumerCreate(transport_id="out", consumer_id="n", producer_id=notices))
    await worker.handle(api.ProducerClose(producer_id=notices))  # allowed: a producer like any other
    assert not worker.registry.producers and not worker.registry.consumers
    again = await worker.handle(api.DirectProducerCreate(transport_id="direct", kind="audio"))
    await worker.handle(
        api.ConsumerCreate(transport_id="out", consumer_id="n", producer_id=again.producer.producer_id)
    )
    await worker.handle(api.TransportClose(transport_id="direct"))
    assert not worker.registry.producers and not worker.registry.consumers
    assert set(worker.registry.transports) == {"out"}


async def test_requests_name_the_kind_of_transport_they_need(worker):
    await announcer(worker)
    await worker.handle(api.TransportCreate(router_id="r", transport_id="pub", direction="publish"))
    cases = [
        (api.PlainTransportConnect(transport_id="direct"), "not_found", "no plain transport direct"),
        (api.PlainTransportConnect(transport_id="pub"), "not_found", "no plain transport pub"),
        (api.DirectProducerCreate(transport_id="pub", kind="audio"), "not_found", "no direct transport pub"),
        (api.SubscribeOfferCreate(transport_id="direct"), "not_found", "no WebRTC transport direct"),
        (api.SubscribeOfferCreate(transport_id="pub"), "invalid", "transport pub is a publish transport"),
        (api.ConsumerCreate(transport_id="ghost", consumer_id="c", producer_id="p"), "not_found", "no transport ghost"),
        (api.TransportCreate(router_id="r", transport_id="direct", direction="publish"), "exists", "exists"),
        (api.PlainTransportCreate(router_id="r", transport_id="pub"), "exists", "exists"),
    ]
    for request, code, message in cases:
        with pytest.raises(RequestFailed) as failure:
            await worker.handle(request)
        assert (failure.value.code, message in failure.value.message) == (code, True), failure.value.message


async def test_a_plain_transport_that_cannot_bind_leaves_nothing_behind(worker):
    await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="first"))
    port = worker.transports["first"].own_socket().getsockname()[1]
    with pytest.raises(RequestFailed) as failure:
        await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="second", port=port))
    assert failure.value.code == "invalid" and set(worker.registry.transports) == {"first"}
    assert set(worker.registry.routers["r"].transports) == {"first"}


async def test_shutdown_closes_every_router(worker):
    await plain_producer(worker, "pub")
    await announcer(worker)
    await worker.handle(api.RouterCreate(router_id="r2"))
    await worker.shutdown()
    registry = worker.registry
    assert not (registry.routers or registry.transports or registry.producers or registry.consumers)


async def test_a_worker_whose_certificate_nears_its_end_renews_it_for_new_transports(worker):
    """aiortc's DTLS certificates last 30 days: a worker that has run for weeks must not
    break new joins. A transport made before the renewal keeps its certificate; one made
    after gets a fresh certificate, says so in its SDP, and a real DTLS client connects."""
    now = [datetime.datetime.now(datetime.timezone.utc)]
    ending_soon = certificate_ending(now[0] + datetime.timedelta(days=10))
    made = iter([ending_soon])
    worker.certificates = DtlsCertificates(
        clock=lambda: now[0], generate=lambda: next(made, None) or RTCCertificate.generateCertificate()
    )
    await worker.handle(api.TransportCreate(router_id="r", transport_id="before", direction="publish"))
    before = worker.registry.transports["before"]
    assert before.fingerprint == certificate_fingerprint(ending_soon)

    now[0] += datetime.timedelta(days=4)  # 6 days left: inside the renewal week
    await worker.handle(api.TransportCreate(router_id="r", transport_id="after", direction="publish"))
    after = worker.registry.transports["after"]
    assert worker.certificates.renewals == 1 and after.fingerprint != before.fingerprint
    assert before.fingerprint == certificate_fingerprint(ending_soon)  # kept for its life

    pc = RTCPeerConnection()
    pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        answer = await worker.handle(api.PublishOffer(transport_id="after", sdp=pc.localDescription.sdp))
        assert after.fingerprint[1] in answer.sdp and before.fingerprint[1] not in answer.sdp
        await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
        for _ in range(100):
            if after.connected:
                break
            await asyncio.sleep(0.1)
        assert after.connected  # DTLS with the renewed certificate
    finally:
        await pc.close()
