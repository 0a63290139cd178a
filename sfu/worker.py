"""An SFU worker process: one uvloop, one UDP socket, many meetings' routers.

Started by control as `python -m sfu.worker --index I --channel-fd FD --config-json JSON`.
It binds its socket, announces WORKER_READY on the channel, then answers requests until
the channel closes or SIGTERM arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import ipaddress
import json
import logging
import os
import random
import secrets
import socket
import sys
import time
from typing import Any

import uvloop
from aiortc.rtcdtlstransport import RTCCertificate

from common.channel import ChannelServer, RequestFailed, open_server, serve_until_stopped
from common.messages import Empty, Message
from config.schema import MediaConfig, SfuConfig
from sfu import api, process_stats
from sfu.engine.announcer import Announcer
from sfu.engine.consumer import Consumer
from sfu.engine.producer import Producer, ProducerParams
from sfu.engine.router import Router
from sfu.engine.stats import Counters
from sfu.transport import negotiation
from sfu.transport.dtls import certificate_fingerprint
from sfu.transport.plain import SRTP_CRYPTO_SUITE, PlainTransport
from sfu.transport.udp import MediaSocket
from sfu.transport.webrtc import WebRtcTransport
from sfu.wire import sdp

log = logging.getLogger("sfu.worker")

KEYFRAME_POLL_S = 0.1
TRANSPORT_FEEDBACK_S = 0.1
LAG_PROBE_S = 0.25


def codec_policy(media: MediaConfig) -> sdp.CodecPolicy:
    policy = sdp.default_codec_policy()
    wanted = [name.lower() for name in media.video_codecs]
    policy.video = sorted(
        (c for c in policy.video if c.name.lower() in wanted), key=lambda c: wanted.index(c.name.lower())
    )
    audio = [name.lower() for name in media.audio_codecs]
    policy.audio = [c for c in policy.audio if c.name.lower() in audio]
    policy.accept_simulcast = media.accept_simulcast
    return policy


class Worker:
    def __init__(self, index: int, sfu_config: SfuConfig, media_config: MediaConfig, announced_ips: list[str]) -> None:
        self.index = index
        self.config = sfu_config
        self.policy = codec_policy(media_config)
        # The payload type of what the announcers send (media.audio_codecs always has opus).
        self.opus_payload_type = next(c.payload_type for c in self.policy.audio if c.name.lower() == "opus")
        self.announced_ips = announced_ips
        self.counters = Counters()
        self.socket = MediaSocket(self.counters, sfu_config.max_datagram)
        self.certificate = RTCCertificate.generateCertificate()
        self.fingerprint = certificate_fingerprint(self.certificate)
        self.routers: dict[str, Router] = {}
        self.transports: dict[str, WebRtcTransport] = {}
        self.plain_transports: dict[str, PlainTransport] = {}
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}
        self.channel: ChannelServer | None = None
        self.loop_lag = 0.0
        self.socket_drops = process_stats.UdpDropMeter()
        self._timers: list[asyncio.Task[None]] = []
        self.port = 0
        # Notices (NOTICE_PLAY): one timer for every announcer of the worker, set for the
        # earliest frame due; counters are the worker's (an announcer goes with its router).
        self._notice_timer: asyncio.TimerHandle | None = None
        self._notice_timer_at = 0.0
        self._playing: set[Announcer] = set()  # announcers with a play running
        self.notice_plays = 0
        self.notice_packets_sent = 0

    # ----------------------------------------------------------------- startup

    async def bind(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(
            lambda: self.socket, local_addr=(self.config.listen_ip, port), family=socket.AF_INET
        )
        self.port = self.socket.port
        self._timers = [
            asyncio.ensure_future(self._every(self.config.rtcp_interval_s, self._send_reports)),
            asyncio.ensure_future(self._every(KEYFRAME_POLL_S, self._poll_keyframes)),
            asyncio.ensure_future(self._every(TRANSPORT_FEEDBACK_S, self._send_transport_feedback)),
            asyncio.ensure_future(self._measure_lag()),
        ]

    async def _every(self, interval: float, action: Any) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                action()
            except Exception:
                log.exception("periodic task failed")

    async def _measure_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(LAG_PROBE_S)
            self.loop_lag = max(0.0, loop.time() - start - LAG_PROBE_S)

    def _send_reports(self) -> None:
        for transport in self.transports.values():
            if transport.direction == "publish" and transport.producers_by_mid:
                transport.send_receiver_reports()
        for plain in self.plain_transports.values():
            if plain.producers_by_mid:
                plain.send_receiver_reports()

    def _send_transport_feedback(self) -> None:
        for transport in self.transports.values():
            if transport.tcc_ext_id:
                transport.send_transport_feedback()

    def _poll_keyframes(self) -> None:
        for producer in self.producers.values():
            if producer.keyframe_waiters:
                producer.poll_keyframe_request()

    # ----------------------------------------------------------------- requests

    async def handle(self, request: Message) -> Message:
        handler = getattr(self, "_on_" + request.NAME.lower(), None)
        if handler is None:
            raise RequestFailed("unsupported", f"{request.NAME} is not a request")
        try:
            return await handler(request)
        except ValueError as exc:  # bad SDP and the like: the client's fault, not ours
            raise RequestFailed("invalid", str(exc)) from None

    async def _on_worker_get_stats(self, _: api.WorkerGetStats) -> Message:
        counters, dropped = self.counters.snapshot()
        counters["notice_plays"] = self.notice_plays
        counters["notice_packets_sent"] = self.notice_packets_sent
        # Datagrams the kernel dropped at our sockets (receive buffer full): we never saw them.
        dropped["socket_buffer_full"] = self.socket_drops.update(self._socket_inodes())
        gauges = {
            "routers": float(len(self.routers)),
            "transports": float(len(self.transports) + len(self.plain_transports)),
            # Incoming streams: the routers' announcers are not.
            "producers": float(len(self.producers) - sum(r.announcer is not None for r in self.routers.values())),
            "consumers": float(len(self.consumers)),
            "loop_lag_seconds": self.loop_lag,
            "cpu_seconds": process_stats.cpu_seconds(),
            "rss_bytes": float(process_stats.rss_bytes()),
        }
        return api.WorkerStats(counters=counters, dropped=dropped, gauges=gauges)

    def _socket_inodes(self) -> set[int]:
        udps = [self.socket.udp, *(t.udp for t in self.plain_transports.values())]
        inodes = (process_stats.socket_inode(u.get_extra_info("socket")) for u in udps if u is not None)
        return {inode for inode in inodes if inode is not None}

    async def _on_router_create(self, request: api.RouterCreate) -> Message:
        if request.router_id not in self.routers:
            router = Router(request.router_id)
            announcer = Announcer(
                api.announcer_producer_id(router.id), self.opus_payload_type, self.counters, time.monotonic
            )
            router.announcer = announcer
            router.add_producer(announcer)
            self.producers[announcer.id] = announcer
            self.routers[router.id] = router
        return Empty()

    async def _on_router_close(self, request: api.RouterClose) -> Message:
        router = self.routers.pop(request.router_id, None)
        if router is not None:
            for transport_id in list(router.transport_ids):
                await self._close_transport(transport_id)
            if router.announcer is not None:  # its consumers went with the transports
                self.producers.pop(router.announcer.id, None)
                router.announcer.close()
                self._playing.discard(router.announcer)
                self._schedule_notices()
        return Empty()

    async def _on_transport_create(self, request: api.TransportCreate) -> Message:
        router = self._router(request.router_id)
        if request.direction not in ("publish", "subscribe"):
            raise RequestFailed("invalid", "direction must be publish or subscribe")
        self._check_new_transport_id(request.transport_id)
        transport = WebRtcTransport(
            request.transport_id,
            router.id,
            request.direction,
            self.socket,
            self.certificate,
            self.counters,
            self._on_transport_state,
        )
        self.transports[transport.id] = transport
        router.transport_ids.add(transport.id)
        self.socket.ice.register(transport)
        return Empty()

    async def _on_transport_close(self, request: api.TransportClose) -> Message:
        await self._close_transport(request.transport_id)
        return Empty()

    async def _on_publish_offer(self, request: api.PublishOffer) -> Message:
        transport = self._transport(request.transport_id, "publish")
        router = self._router(transport.router_id)

        def make_producer(params: ProducerParams) -> Producer:
            params.producer_id = secrets.token_hex(8)
            return self._new_producer(params, transport)

        answer, created, closed = negotiation.apply_publish_offer(
            transport, request.sdp, request.sources, self._local(transport), self.policy, make_producer
        )
        for producer in closed:
            self._close_producer(producer)
        for producer in created:
            self._add_producer(producer, transport, router)
        return api.PublishAnswer(
            sdp=answer,
            producers=[
                api.ProducerInfo(p.id, p.params.mid, p.params.kind, p.params.source, p.params.codec_name)
                for p in created
            ],
            closed_producer_ids=[p.id for p in closed],
        )

    async def _on_producer_close(self, request: api.ProducerClose) -> Message:
        producer = self.producers.get(request.producer_id)
        if isinstance(producer, Announcer):
            raise RequestFailed("invalid", f"{producer.id} closes with its router")
        if producer is not None:
            self._close_producer(producer)
        return Empty()

    async def _on_producer_pause(self, request: api.ProducerPause) -> Message:
        self._producer(request.producer_id).set_paused(request.paused)
        return Empty()

    async def _on_consumer_create(self, request: api.ConsumerCreate) -> Message:
        plain = self.plain_transports.get(request.transport_id)
        transport = plain or self._transport(request.transport_id, "subscribe")
        producer = self._producer(request.producer_id)
        if producer.id not in self._router(transport.router_id).producers:
            raise RequestFailed("invalid", "producer and transport are in different meetings")
        if request.consumer_id in self.consumers:
            raise RequestFailed("exists", f"consumer {request.consumer_id} exists")
        codec = negotiation.subscriber_codec(self.policy, producer.params)
        # RTX is negotiated in the subscribe offer; a plain consumer has none.
        rtx_payload_type = codec.rtx_payload_type if plain is None and producer.params.kind == "video" else None
        consumer = Consumer(
            request.consumer_id,
            producer,
            transport,
            transport.allocate_mid(),
            ssrc=_random_ssrc(),
            payload_type=codec.payload_type,
            counters=self.counters,
            rtx_ssrc=_random_ssrc() if rtx_payload_type else None,
            rtx_payload_type=rtx_payload_type,
        )
        producer.add_consumer(consumer)
        transport.add_consumer(consumer)
        self.consumers[consumer.id] = consumer
        if plain is None:
            return Empty()
        # No answer step: header extensions pass through unchanged, no transport-cc, no RTX.
        consumer.activate(None, 0, False)
        return api.PlainConsumerInfo(
            consumer_id=consumer.id,
            producer_id=producer.id,
            kind=consumer.kind,
            codec_name=codec.name,
            clock_rate=codec.clock_rate,
            payload_type=codec.payload_type,
            ssrc=consumer.ssrc,
            channels=codec.channels,
        )

    async def _on_consumer_close(self, request: api.ConsumerClose) -> Message:
        consumer = self.consumers.pop(request.consumer_id, None)
        if consumer is not None:
            consumer.close()
            if isinstance(consumer.sink, PlainTransport):
                consumer.sink.remove_consumer(consumer)
        return Empty()

    async def _on_subscribe_offer_create(self, request: api.SubscribeOfferCreate) -> Message:
        transport = self._transport(request.transport_id, "subscribe")
        if not transport.consumer_slots:
            raise RequestFailed("invalid", "nothing to offer: the transport has no consumers")
        text, consumers = negotiation.create_subscribe_offer(transport, self._local(transport), self.policy)
        return api.SubscribeOffer(
            sdp=text,
            consumers=[
                api.ConsumerInfo(c.id, c.producer.id, c.mid, c.kind, not c.closed, c.producer.params.source)
                for c in consumers
            ],
        )

    async def _on_subscribe_answer_set(self, request: api.SubscribeAnswerSet) -> Message:
        transport = self._transport(request.transport_id, "subscribe")
        negotiation.apply_subscribe_answer(transport, request.sdp)
        return Empty()

    # ------------------------------------------------------------ notices

    async def _on_notice_play(self, request: api.NoticePlay) -> Message:
        router = self._router(request.router_id)
        announcer = router.announcer
        assert announcer is not None  # every router gets one at ROUTER_CREATE
        frames = []
        for index, text in enumerate(request.frames):
            try:
                frames.append(base64.b64decode(text, validate=True))
            except (binascii.Error, ValueError):
                raise RequestFailed("invalid", f"frames[{index}]: not base64") from None
        if request.consumer_ids:
            targets = []
            for consumer_id in request.consumer_ids:
                consumer = self.consumers.get(consumer_id)
                if consumer is None:
                    raise RequestFailed("not_found", f"no consumer {consumer_id}")
                if consumer.producer is not announcer:
                    raise RequestFailed("invalid", f"consumer {consumer_id} does not consume {announcer.id}")
                targets.append(consumer)
        else:
            targets = list(announcer.consumers)
        announcer.play(frames, targets, asyncio.get_running_loop().time())  # ValueError: a bad clip
        self.notice_plays += 1
        if announcer.next_due is not None:
            self._playing.add(announcer)
        self._schedule_notices()
        return Empty()

    def _schedule_notices(self) -> None:
        """(Re)arm the one notice timer for the earliest frame due, or disarm it.

        Deadlines are absolute (a play's start + 20 ms per frame), so a late timer makes
        the next wait shorter instead of shifting every later frame: no drift.
        """
        due = min((d for a in self._playing if (d := a.next_due) is not None), default=None)
        timer = self._notice_timer
        if timer is not None:
            if due is not None and self._notice_timer_at <= due:
                return  # fires early enough; it reschedules itself
            timer.cancel()
            self._notice_timer = None
        if due is not None:
            self._notice_timer_at = due
            self._notice_timer = asyncio.get_running_loop().call_at(due, self._on_notice_timer)

    def _on_notice_timer(self) -> None:
        self._notice_timer = None
        now = asyncio.get_running_loop().time()
        for announcer in list(self._playing):
            try:
                self.notice_packets_sent += announcer.tick(now)
            except Exception:  # a bug must not stop other meetings' notices, nor repeat 50 times a second
                log.exception("notice play of %s failed; abandoned", announcer.id)
                announcer.stop()
            if announcer.next_due is None:
                self._playing.discard(announcer)
        self._schedule_notices()

    # ------------------------------------------------------ plain RTP transports

    async def _on_plain_transport_create(self, request: api.PlainTransportCreate) -> Message:
        router = self._router(request.router_id)
        self._check_new_transport_id(request.transport_id)
        transport = PlainTransport(
            request.transport_id, router.id, self.counters, request.srtp, self.config.max_datagram
        )
        try:
            ip, port = await transport.bind(request.listen_ip, request.port)
        except OSError as exc:
            raise RequestFailed("invalid", f"cannot bind {request.listen_ip}:{request.port}: {exc}") from None
        self.plain_transports[transport.id] = transport
        router.transport_ids.add(transport.id)
        if ip == "0.0.0.0":
            ip = self.announced_ips[0]
        return api.PlainTransportInfo(
            transport_id=transport.id,
            ip=ip,
            port=port,
            srtp_crypto_suite=SRTP_CRYPTO_SUITE if request.srtp else None,
            srtp_key_base64=transport.local_key_base64,
        )

    async def _on_plain_transport_connect(self, request: api.PlainTransportConnect) -> Message:
        transport = self._plain_transport(request.transport_id)
        if (request.remote_ip is None) != (request.remote_port is None):
            raise RequestFailed("invalid", "remote_ip and remote_port go together")
        remote = None
        if request.remote_ip is not None and request.remote_port is not None:
            if not 0 < request.remote_port < 65536:
                raise RequestFailed("invalid", f"remote_port: {request.remote_port} is not a port")
            remote = (_ip_address(request.remote_ip), request.remote_port)
        transport.connect(remote, request.remote_srtp_key_base64)
        return Empty()

    async def _on_plain_producer_create(self, request: api.PlainProducerCreate) -> Message:
        transport = self._plain_transport(request.transport_id)
        router = self._router(transport.router_id)
        if request.kind not in ("audio", "video"):
            raise RequestFailed("invalid", "kind must be audio or video")
        if not 0 <= request.payload_type <= 127 or not 0 <= request.ssrc <= 0xFFFFFFFF:
            raise RequestFailed("invalid", "payload_type must be 0..127 and ssrc 0..2^32-1")
        params = ProducerParams(
            producer_id=secrets.token_hex(8),
            kind=request.kind,
            source=request.source or ("microphone" if request.kind == "audio" else "camera"),
            mid=transport.allocate_mid(),
            codec_name=request.codec_name,
            clock_rate=request.clock_rate,
            payload_type=request.payload_type,
            ssrc=request.ssrc,
            extmap={},
            channels=request.channels,
        )
        negotiation.subscriber_codec(self.policy, params)  # ValueError: a codec we cannot forward
        producer = self._new_producer(params, transport)
        self._add_producer(producer, transport, router)  # ValueError: SSRC taken
        return api.PlainProducerCreated(
            producer=api.ProducerInfo(producer.id, params.mid, params.kind, params.source, params.codec_name)
        )

    def _plain_transport(self, transport_id: str) -> PlainTransport:
        transport = self.plain_transports.get(transport_id)
        if transport is None:
            raise RequestFailed("not_found", f"no plain transport {transport_id}")
        return transport

    def _check_new_transport_id(self, transport_id: str) -> None:
        if transport_id in self.transports or transport_id in self.plain_transports:
            raise RequestFailed("exists", f"transport {transport_id} exists")

    # ----------------------------------------------------------------- helpers

    def _local(self, transport: WebRtcTransport) -> sdp.LocalTransport:
        return negotiation.local_description(transport, self.fingerprint, self.announced_ips, self.port)

    def _router(self, router_id: str) -> Router:
        router = self.routers.get(router_id)
        if router is None:
            raise RequestFailed("not_found", f"no router {router_id}")
        return router

    def _transport(self, transport_id: str, direction: str) -> WebRtcTransport:
        transport = self.transports.get(transport_id)
        if transport is None:
            raise RequestFailed("not_found", f"no transport {transport_id}")
        if transport.direction != direction:
            raise RequestFailed("invalid", f"transport {transport_id} is a {transport.direction} transport")
        return transport

    def _producer(self, producer_id: str) -> Producer:
        producer = self.producers.get(producer_id)
        if producer is None:
            raise RequestFailed("not_found", f"no producer {producer_id}")
        return producer

    def _new_producer(self, params: ProducerParams, transport: WebRtcTransport | PlainTransport) -> Producer:
        return Producer(
            params,
            transport,
            self.counters,
            time.monotonic,
            stream_id=transport.id,
            cache_size=self.config.nack_cache_packets,
            pli_min_interval=self.config.pli_min_interval_s,
        )

    def _add_producer(self, producer: Producer, transport: WebRtcTransport | PlainTransport, router: Router) -> None:
        transport.add_producer(producer)  # first: a plain transport refuses an SSRC it has
        router.add_producer(producer)
        self.producers[producer.id] = producer

    def _close_producer(self, producer: Producer) -> None:
        self.producers.pop(producer.id, None)
        for consumer in list(producer.consumers):
            self.consumers.pop(consumer.id, None)
            if isinstance(consumer.sink, PlainTransport):
                consumer.sink.remove_consumer(consumer)
        producer.close()
        transport = self.transports.get(producer.stream_id) or self.plain_transports.get(producer.stream_id)
        if transport is not None:
            transport.remove_producer(producer)
            router = self.routers.get(transport.router_id)
            if router is not None:
                router.remove_producer(producer.id)

    async def _close_transport(self, transport_id: str) -> None:
        transport = self.transports.get(transport_id) or self.plain_transports.get(transport_id)
        if transport is None:
            return
        # While the transport is still listed: _close_producer finds it (and its router) there.
        for producer in list(transport.producers_by_mid.values()):
            self._close_producer(producer)
        router = self.routers.get(transport.router_id)
        if router is not None:
            router.transport_ids.discard(transport_id)
        if isinstance(transport, PlainTransport):
            for consumer in transport.consumers:
                self.consumers.pop(consumer.id, None)
            del self.plain_transports[transport_id]
            transport.close()
        else:
            for consumer in transport.consumer_slots:
                self.consumers.pop(consumer.id, None)
            del self.transports[transport_id]
            await transport.close()

    def _on_transport_state(self, transport: WebRtcTransport, state: str) -> None:
        if self.channel is not None:
            self.channel.notify(transport.id, api.TransportStateChanged(state=state))
        if state in ("failed", "closed"):
            for producer in list(transport.producers_by_mid.values()):
                self._close_producer(producer)
                if self.channel is not None:
                    self.channel.notify(producer.id, api.ProducerClosed(reason=f"transport {state}"))

    async def shutdown(self) -> None:
        for task in self._timers:
            task.cancel()
        if self._notice_timer is not None:
            self._notice_timer.cancel()
            self._notice_timer = None
        self._playing.clear()
        for transport_id in [*self.transports, *self.plain_transports]:
            await self._close_transport(transport_id)
        if self.socket.udp is not None:
            self.socket.udp.close()


def _random_ssrc() -> int:
    return random.randint(1, 0xFFFFFFFF)


def _ip_address(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise RequestFailed("invalid", f"remote_ip: {text!r} is not an IPv4 address") from None


def _resolve_announced(sfu_config: SfuConfig) -> list[str]:
    if sfu_config.announced_ips:
        return list(sfu_config.announced_ips)
    return [sfu_config.listen_ip]


async def run(index: int, channel_fd: int, sfu_config: SfuConfig, media_config: MediaConfig) -> None:
    worker = Worker(index, sfu_config, media_config, _resolve_announced(sfu_config))
    port = sfu_config.port_base + index if sfu_config.port_base else 0
    await worker.bind(port)
    channel = await open_server(channel_fd, worker.handle)
    worker.channel = channel
    channel.notify(str(index), api.WorkerReady(port=worker.port, announced_ips=worker.announced_ips))
    log.info("worker %d ready on udp %s:%d", index, sfu_config.listen_ip, worker.port)
    await serve_until_stopped(channel, worker.shutdown)


def _section(cls: type, data: dict[str, Any]) -> Any:
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sfu.worker", description="Conclave SFU worker (started by control)")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--config-json", required=True)
    parser.add_argument("--log-level", default=os.environ.get("CONCLAVE_WORKER_LOG_LEVEL", "info"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s worker-{args.index} %(levelname)s %(name)s: %(message)s",
    )
    data = json.loads(args.config_json)
    sfu_config = _section(SfuConfig, data.get("sfu", {}))
    media_config = _section(MediaConfig, data.get("media", {}))
    uvloop.run(run(args.index, args.channel_fd, sfu_config, media_config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
