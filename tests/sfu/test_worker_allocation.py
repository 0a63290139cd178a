"""The worker's adaptive media over its channel, in process on 127.0.0.1: ROUTER_SET_LAST_N
pauses and resumes subscribers' video without renegotiation, and what changed leaves the
worker as SUBSCRIBER_ALLOCATION notifications (from the clockwork's real timer); a
subscriber's REMB-fed estimate pauses video for bandwidth; the worker's stats count it."""

from __future__ import annotations

import asyncio
import socket

import pytest

from common.channel import ChannelClient, ChannelError, ChannelServer
from sfu import api
from tests.support.worker_fixtures import loopback_ice, worker  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(60)


class Wire:
    """Control's side of the worker's channel: requests, and the notifications heard."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, object]] = []
        self.client: ChannelClient | None = None
        self.server: ChannelServer | None = None
        self.serving: asyncio.Future | None = None

    async def open(self, worker) -> None:
        left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        server_reader, server_writer = await asyncio.open_unix_connection(sock=left)
        client_reader, client_writer = await asyncio.open_unix_connection(sock=right)
        self.server = ChannelServer(server_reader, server_writer, worker.handle)
        self.serving = asyncio.ensure_future(self.server.serve())
        self.client = ChannelClient(client_reader, client_writer, lambda entity, message: self.heard.append((entity, message)))
        worker.channel = self.server

    def close(self) -> None:
        self.client.close()
        self.server.close()
        self.serving.cancel()

    def tracks(self, entity: str) -> dict[str, dict]:
        """The latest SUBSCRIBER_ALLOCATION report of each consumer of `entity`."""
        latest = {}
        for who, message in self.heard:
            if who == entity and isinstance(message, api.SubscriberAllocation):
                for track in message.tracks:
                    latest[track["consumer_id"]] = track
        return latest

    async def until(self, test, timeout: float = 5.0) -> None:
        for _ in range(int(timeout / 0.05)):
            if test():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"not within {timeout} s; heard {self.heard}")


@pytest.fixture
async def wire(worker):
    opened = Wire()
    await opened.open(worker)
    try:
        yield opened
    finally:
        opened.close()


async def meeting(wire: Wire, names: str) -> None:
    """Publishers (one plain VP8 producer each) and a WebRTC subscriber "sub" of all."""
    request = wire.client.request
    await request(api.TransportCreate(router_id="r", transport_id="sub", direction="subscribe"))
    for index, name in enumerate(names):
        await request(api.PlainTransportCreate(router_id="r", transport_id=f"pub-{name}"))
        made = await request(api.PlainProducerCreate(transport_id=f"pub-{name}", kind="video", codec_name="VP8",
                                                     clock_rate=90000, payload_type=96, ssrc=1000 + index))
        await request(api.ConsumerCreate("sub", consumer_id=f"sub-{name}", producer_id=made.producer.producer_id))


def paused(tracks: dict[str, dict]) -> dict[str, str]:
    return {consumer_id: track["paused"] for consumer_id, track in sorted(tracks.items())}


async def test_last_n_pauses_the_others_and_the_subscriber_is_told(worker, wire):
    await meeting(wire, "abcd")
    await wire.until(lambda: len(wire.tracks("sub")) == 4)
    assert set(paused(wire.tracks("sub")).values()) == {""}
    first = next(m for e, m in wire.heard if e == "sub")
    assert first.estimate_bps == 0  # no feedback from the subscriber yet: not constrained

    await wire.client.request(api.RouterSetLastN(router_id="r", last_n=2))
    expected = {"sub-a": "", "sub-b": "", "sub-c": "last_n", "sub-d": "last_n"}  # nobody spoke: in order
    await wire.until(lambda: paused(wire.tracks("sub")) == expected)
    consumers = worker.registry.consumers
    assert [consumers[f"sub-{n}"].paused for n in "abcd"] == [False, False, True, True]
    assert wire.tracks("sub")["sub-c"] == {"consumer_id": "sub-c", "spatial": -1, "temporal": -1, "layers": 1,
                                           "height": 0, "fps": 0.0, "paused": "last_n"}
    stats = await wire.client.request(api.WorkerGetStats())
    assert stats.gauges["tracks_paused_last_n"] == 2 and stats.gauges["tracks_paused_bandwidth"] == 0
    assert stats.counters["allocations"] >= 2 and stats.counters["layer_switches"] >= 2

    await wire.client.request(api.RouterSetLastN(router_id="r", last_n=0))
    await wire.until(lambda: set(paused(wire.tracks("sub")).values()) == {""})
    assert not any(consumers[f"sub-{n}"].paused for n in "abcd")

    with pytest.raises(ChannelError) as failure:
        await wire.client.request(api.RouterSetLastN(router_id="nowhere", last_n=2))
    assert failure.value.code == "not_found"
    with pytest.raises(ChannelError) as failure:
        await wire.client.request(api.RouterSetLastN(router_id="r", last_n=-1))
    assert failure.value.code == "invalid"


async def test_a_subscriber_short_of_bandwidth_has_its_video_paused_and_is_told(worker, wire):
    await meeting(wire, "ab")
    await wire.until(lambda: len(wire.tracks("sub")) == 2)
    transport = worker.transports["sub"]
    transport.estimator.feedbacks = 1  # a transport-cc subscriber (Chromium): it can be probed
    transport.estimator.on_remb(50_000, 0)  # and caps its estimate on a bad link
    await wire.until(lambda: set(paused(wire.tracks("sub")).values()) == {"bandwidth"})
    told = [m for e, m in wire.heard if e == "sub"][-1]
    assert told.estimate_bps == 50_000
    assert transport.probe_target_bps > 50_000  # the prober's goal: what resuming one would need
    stats = await wire.client.request(api.WorkerGetStats())
    assert stats.gauges["tracks_paused_bandwidth"] == 2
    # A hidden tile is no bandwidth matter: told as hidden, at once.
    await wire.client.request(api.ConsumerSetViewport("sub-a", 0, 0, False))
    await wire.until(lambda: wire.tracks("sub")["sub-a"]["paused"] == "hidden")
