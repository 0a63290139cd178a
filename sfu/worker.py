"""An SFU worker process: one uvloop, one UDP socket (and, with sfu.ice_tcp, one ICE-TCP
listening port of the same number), many meetings' routers.

Started by control as `python -m sfu.worker --index I --channel-fd FD --config-json JSON`.
It binds its socket, announces WORKER_READY on the channel, then answers requests until
the channel closes or SIGTERM arrives.

Its media objects form one tree, Router → Transport → Producer / Consumer, which owns
them and closes them (sfu/engine/router.py). A request handler looks up the entity it
names in the tree's `Registry` and calls a method of it: the worker keeps no map and
writes no cascade of its own. The worker adds the loop: periodic RTCP, keyframe request
polls, transport-wide feedback, the lag probe, the routers' active-speaker decisions
(told to control as ACTIVE_SPEAKER), the subscribers' allocations (SUBSCRIBER_ALLOCATION)
and dynacast (PRODUCER_LAYERS_WANTED), and the timer of the notice clock.
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
import secrets
import socket
import sys
import time
from typing import Any, TypeVar

import uvloop

from common import logs
from common.channel import ChannelServer, RequestFailed, open_server, serve_until_stopped
from common.messages import Empty, Message
from config.schema import MediaConfig, SfuConfig
from sfu import api, process_stats
from sfu.pipes import PipeRequests
from sfu.clockwork import Clockwork
from sfu.engine.announcer import SOURCE as ANNOUNCEMENT
from sfu.engine.announcer import Announcer
from sfu.engine.consumer import Consumer
from sfu.engine.notice_clock import NoticeClock
from sfu.engine.producer import Producer, ProducerParams
from sfu.engine.retransmit import RetransmitPolicy
from sfu.engine.router import Registry, Router
from sfu.engine.simulcast import SimulcastConsumer, SimulcastProducer
from sfu.engine.stats import Counters, estimate_gauges
from sfu.engine.subscription import PAUSE_REASONS
from sfu.transport import native, negotiation, playback, tcp
from sfu.transport.base import Transport
from sfu.transport.direct import DirectTransport
from sfu.transport.dtls import DtlsCertificates
from sfu.transport.plain import SRTP_CRYPTO_SUITE, PlainTransport
from sfu.transport.udp import MediaSocket
from sfu.transport.webrtc import WebRtcTransport
from sfu.wire import sdp

log = logging.getLogger("sfu.worker")

AnyTransport = TypeVar("AnyTransport", bound=Transport)


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


class Worker(PipeRequests):
    def __init__(self, index: int, sfu_config: SfuConfig, media_config: MediaConfig, announced_ips: list[str]) -> None:
        self.index = index
        self.config = sfu_config
        self.media = media_config
        self.policy = codec_policy(media_config)
        # The payload type of what the announcers send (media.audio_codecs always has opus).
        self.opus_payload_type = next(c.payload_type for c in self.policy.audio if c.name.lower() == "opus")
        self.announced_ips = announced_ips
        self.counters = Counters()
        self.retransmit_policy = RetransmitPolicy(
            ratio=sfu_config.nack_budget_ratio,
            min_packets_per_s=sfu_config.nack_budget_min_packets_per_s,
            min_bytes_per_s=sfu_config.nack_budget_min_bytes_per_s,
            max_age_s=sfu_config.nack_max_age_s,
            repeat_interval_s=sfu_config.nack_repeat_interval_s,
        )
        self.socket = MediaSocket(self.counters, sfu_config.max_datagram)
        # The forwarding path (sfu.native: auto, on, off), chosen and logged once.
        self.native = native.load(sfu_config.native)
        self.socket.use_native(self.native)
        self.certificates = DtlsCertificates()  # renewed for new transports before expiry
        # Every router, transport, producer and consumer by id: kept by the tree itself.
        self.registry = Registry()
        self.channel: ChannelServer | None = None
        self.socket_drops = process_stats.UdpDropMeter()
        self.port = 0
        self.tcp_port = 0  # 0: no ICE-TCP (sfu.ice_tcp off, or not bound yet)
        self.tcp_server: asyncio.AbstractServer | None = None
        # Timers: RTCP, keyframe polls, loop lag, the routers' active speakers, and the
        # notice clock pacing every announcer. Producers run on the same clock (time.monotonic).
        self.clockwork = Clockwork(
            self.registry,
            NoticeClock(),
            sfu_config.rtcp_interval_s,
            self._on_active_speaker,
            time.monotonic,
            on_allocation=self._on_allocation,
            on_layers_wanted=self._on_layers_wanted,
            on_quality=self._on_quality,
        )

    @property
    def transports(self) -> dict[str, Transport]:
        """The registry's transports, as what they are up here (the engine's router knows
        them only as its RouterTransport protocol)."""
        return self.registry.transports  # type: ignore[return-value]

    # ----------------------------------------------------------------- startup

    async def bind(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(
            lambda: self.socket, local_addr=(self.config.listen_ip, port), family=socket.AF_INET
        )
        self.port = self.socket.port
        if self.config.ice_tcp:
            await self._listen_tcp(port)
        self.clockwork.start()

    async def _listen_tcp(self, port: int) -> None:
        """ICE-TCP on the UDP port's number (one port to open per worker, both protocols);
        with an ephemeral UDP port (port 0, tests) any free TCP port if that one is taken."""
        config = self.config
        args = (self.socket, config.listen_ip)
        limits = (config.ice_tcp_send_buffer_bytes, config.max_datagram, config.ice_tcp_max_connections)
        try:
            self.tcp_server = await tcp.listen(*args, self.port, *limits)
        except OSError:
            if port:
                raise
            self.tcp_server = await tcp.listen(*args, 0, *limits)
        self.tcp_port = self.tcp_server.sockets[0].getsockname()[1]

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
        counters["notice_plays"] = self.clockwork.notices.plays
        counters["notice_packets_sent"] = self.clockwork.notices.packets_sent
        # Datagrams the kernel dropped at our sockets (receive buffer full): we never saw them.
        dropped["socket_buffer_full"] = self.socket_drops.update(self._socket_inodes())
        network = [t for t in self.transports.values() if t.NETWORK]
        gauges = {
            "routers": float(len(self.registry.routers)),
            "transports": float(len(network)),
            # Incoming streams: producers the worker feeds itself (announcers) are not.
            "producers": float(sum(len(t.producers) for t in network)),
            "consumers": float(len(self.registry.consumers)),
            "loop_lag_seconds": self.clockwork.loop_lag,
            "tcp_connections": float(len(self.socket.tcp)),
            "cpu_seconds": process_stats.cpu_seconds(),
            "rss_bytes": float(process_stats.rss_bytes()),
            # Renewed here too, not only when a transport is made: a quiet worker must not
            # report (and alert on) a certificate the next join would replace anyway.
            "dtls_certificate_expires": self.certificates.current().expires.timestamp(),
            **self._adaptive_gauges(),
            **self.pipe_gauges(),
        }
        # The distribution of subscriber transports' bandwidth estimates (issue 11).
        estimators = [t.estimator for t in network if getattr(t, "estimator", None) is not None]
        gauges.update(estimate_gauges(estimator.estimate_bps for estimator in estimators))
        return api.WorkerStats(counters=counters, dropped=dropped, gauges=gauges)

    def _adaptive_gauges(self) -> dict[str, float]:
        """Video tracks paused now by the subscribers' allocations, by reason, and
        simulcast layers the publishers are told to pause (dynacast)."""
        paused = dict.fromkeys(PAUSE_REASONS, 0)
        for transport in self.transports.values():
            subscription = getattr(transport, "subscription", None)
            if subscription is not None:
                for reason, count in subscription.paused_counts().items():
                    paused[reason] = paused.get(reason, 0) + count
        layers = sum(p.demand.paused for p in self.registry.producers.values() if isinstance(p, SimulcastProducer))
        gauges = {f"tracks_paused_{reason}": float(count) for reason, count in paused.items()}
        gauges["dynacast_layers_paused"] = float(layers)
        return gauges

    def _socket_inodes(self) -> set[int]:
        shared = self.socket.udp.get_extra_info("socket") if self.socket.udp is not None else None
        sockets = [shared, *(t.own_socket() for t in self.transports.values())]
        inodes = (process_stats.socket_inode(s) for s in sockets if s is not None)
        return {inode for inode in inodes if inode is not None}

    async def _on_router_create(self, request: api.RouterCreate) -> Message:
        if request.router_id not in self.registry.routers:
            Router(request.router_id, self.registry)
        return Empty()

    async def _on_router_set_last_n(self, request: api.RouterSetLastN) -> Message:
        self._router(request.router_id).set_last_n(request.last_n)  # ValueError: negative
        return Empty()

    async def _on_router_close(self, request: api.RouterClose) -> Message:
        router = self.registry.routers.get(request.router_id)
        if router is not None:
            await router.close()
        return Empty()

    async def _on_transport_create(self, request: api.TransportCreate) -> Message:
        router = self._router(request.router_id)
        if request.direction not in ("publish", "subscribe"):
            raise RequestFailed("invalid", "direction must be publish or subscribe")
        self._check_new_transport_id(request.transport_id)
        transport = WebRtcTransport(
            request.transport_id,
            router,
            request.direction,
            self.socket,
            self.certificates.current(),
            self.counters,
            self._on_transport_state,
            max_consumer_slots=self.media.max_subscribe_mlines,
            consent_timeout_s=self.config.ice_consent_timeout_s,
        )
        router.add_transport(transport)
        return Empty()

    async def _on_transport_close(self, request: api.TransportClose) -> Message:
        transport = self.transports.get(request.transport_id)
        if transport is not None:
            await transport.close()
        return Empty()

    async def _on_publish_offer(self, request: api.PublishOffer) -> Message:
        transport = self._webrtc(request.transport_id, "publish")
        answer, created, closed = negotiation.apply_publish_offer(
            transport,
            request.sdp,
            request.sources,
            self._local(transport),
            self.policy,
            lambda params: self._new_producer(params, transport),
            max_mlines=self.media.max_publish_mlines,
            max_producers=self.media.max_published_tracks,
        )
        for producer in closed:
            producer.close()
        for producer in created:
            transport.add_producer(producer)
        return api.PublishAnswer(
            sdp=answer, producers=[_producer_info(p) for p in created], closed_producer_ids=[p.id for p in closed]
        )

    async def _on_producer_close(self, request: api.ProducerClose) -> Message:
        producer = self.registry.producers.get(request.producer_id)
        if producer is not None:
            producer.close()
        return Empty()

    async def _on_producer_pause(self, request: api.ProducerPause) -> Message:
        self._producer(request.producer_id).set_paused(request.paused)
        return Empty()

    async def _on_consumer_create(self, request: api.ConsumerCreate) -> Message:
        transport = self._transport(request.transport_id, Transport)
        producer = self._producer(request.producer_id)
        if request.consumer_id in self.registry.consumers:
            raise RequestFailed("exists", f"consumer {request.consumer_id} exists")
        if isinstance(transport, WebRtcTransport) and transport.playback is not None:
            playback.consume(transport, request.consumer_id, producer)  # a player's slot: at once
            return Empty()
        codec = negotiation.subscriber_codec(self.policy, producer.params)
        # ValueError (invalid): another meeting's producer, a publish or direct transport.
        consumer = transport.consume(request.consumer_id, producer, codec)
        if transport.NEGOTIATES:
            return Empty()  # described in the next subscribe offer, started by the answer
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
        consumer = self.registry.consumers.get(request.consumer_id)
        if consumer is not None:
            consumer.close()
        return Empty()

    async def _on_consumer_set_viewport(self, request: api.ConsumerSetViewport) -> Message:
        consumer = self.registry.consumers.get(request.consumer_id)
        if consumer is None:
            raise RequestFailed("not_found", f"no consumer {request.consumer_id}")
        subscription = getattr(consumer.sink, "subscription", None)
        if subscription is not None:  # the subscriber's allocation owns what it forwards
            subscription.set_viewport(consumer.id, request.width, request.height, request.visible, request.pinned)
        elif isinstance(consumer, SimulcastConsumer):
            consumer.set_viewport(request.width, request.height, request.visible)
        elif consumer.kind == "video" and consumer.paused == request.visible:
            consumer.set_paused(not request.visible)  # one layer: all of it, or nothing while hidden
        return Empty()

    async def _on_subscribe_offer_create(self, request: api.SubscribeOfferCreate) -> Message:
        transport = self._webrtc(request.transport_id, "subscribe")
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
        transport = self._webrtc(request.transport_id, "subscribe")
        negotiation.apply_subscribe_answer(transport, request.sdp)
        return Empty()

    async def _on_playback_offer(self, request: api.PlaybackOffer) -> Message:
        transport = self._webrtc(request.transport_id, "subscribe")
        answer = playback.apply_playback_offer(transport, request.sdp, self._local(transport), self.policy)
        assert transport.playback is not None
        return api.PlaybackAnswer(sdp=answer, kinds=sorted(transport.playback.slots))

    async def _on_consumer_set_producer(self, request: api.ConsumerSetProducer) -> Message:
        consumer = self.registry.consumers.get(request.consumer_id)
        if consumer is None:
            raise RequestFailed("not_found", f"no consumer {request.consumer_id}")
        playback.switch_source(consumer, self._producer(request.producer_id))  # ValueError: invalid
        return Empty()

    # ------------------------------------------------------ plain RTP transports

    async def _on_plain_transport_create(self, request: api.PlainTransportCreate) -> Message:
        router = self._router(request.router_id)
        self._check_new_transport_id(request.transport_id)
        transport = PlainTransport(
            request.transport_id, router, self.counters, request.srtp, self.config.max_datagram
        )
        transport.use_native(self.native)
        router.add_transport(transport)
        try:
            ip, port = await transport.bind(request.listen_ip, request.port)
        except OSError as exc:
            await transport.close()
            raise RequestFailed("invalid", f"cannot bind {request.listen_ip}:{request.port}: {exc}") from None
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
        transport = self._transport(request.transport_id, PlainTransport)
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
        transport = self._transport(request.transport_id, PlainTransport)
        if request.kind not in ("audio", "video"):
            raise RequestFailed("invalid", "kind must be audio or video")
        if not 0 <= request.payload_type <= 127 or not 0 <= request.ssrc <= 0xFFFFFFFF:
            raise RequestFailed("invalid", "payload_type must be 0..127 and ssrc 0..2^32-1")
        params = ProducerParams(
            producer_id="",
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
        transport.add_producer(producer)  # ValueError: SSRC taken
        return api.PlainProducerCreated(producer=_producer_info(producer))

    # ------------------------------------------------------------ direct transports

    async def _on_direct_transport_create(self, request: api.DirectTransportCreate) -> Message:
        router = self._router(request.router_id)
        self._check_new_transport_id(request.transport_id)
        direct = DirectTransport(request.transport_id, router, self.counters)
        direct.native = self.native  # its producers' fan-outs flush the native path's copies
        router.add_transport(direct)
        return Empty()

    async def _on_direct_producer_create(self, request: api.DirectProducerCreate) -> Message:
        transport = self._transport(request.transport_id, DirectTransport)
        if request.kind != "audio":
            raise RequestFailed("invalid", "kind: a direct producer plays Opus clips, it must be audio")
        announcer = Announcer(
            secrets.token_hex(8),
            self.opus_payload_type,
            self.counters,
            time.monotonic,
            transport,
            mid=transport.allocate_mid(),
            source=request.source or ANNOUNCEMENT,
            listener=transport,
        )
        transport.add_producer(announcer)
        return api.DirectProducerCreated(producer=_producer_info(announcer))

    async def _on_notice_play(self, request: api.NoticePlay) -> Message:
        announcer = self._producer(request.producer_id)
        if not isinstance(announcer, Announcer):
            raise RequestFailed("invalid", f"producer {announcer.id} is not a direct producer")
        frames = _decode_frames(request.frames)
        targets = [self._consumer_of(announcer, c) for c in request.consumer_ids] or list(announcer.consumers)
        self.clockwork.notices.play(announcer, frames, targets, asyncio.get_running_loop().time())  # ValueError: a bad clip
        self.clockwork.notices_changed()
        return Empty()

    def _consumer_of(self, announcer: Announcer, consumer_id: str) -> Consumer:
        consumer = self.registry.consumers.get(consumer_id)
        if consumer is None:
            raise RequestFailed("not_found", f"no consumer {consumer_id}")
        if consumer.producer is not announcer:
            raise RequestFailed("invalid", f"consumer {consumer_id} does not consume {announcer.id}")
        return consumer

    # ----------------------------------------------------------------- lookups

    def _router(self, router_id: str) -> Router:
        router = self.registry.routers.get(router_id)
        if router is None:
            raise RequestFailed("not_found", f"no router {router_id}")
        return router

    def _transport(self, transport_id: str, kind: type[AnyTransport]) -> AnyTransport:
        """The transport `transport_id`, which the request needs to be a `kind`."""
        transport = self.transports.get(transport_id)
        if not isinstance(transport, kind):
            what = f"{kind.KIND} transport" if kind.KIND else "transport"
            raise RequestFailed("not_found", f"no {what} {transport_id}")
        return transport

    def _webrtc(self, transport_id: str, direction: str) -> WebRtcTransport:
        transport = self._transport(transport_id, WebRtcTransport)
        if transport.direction != direction:
            raise RequestFailed("invalid", f"transport {transport_id} is a {transport.direction} transport")
        return transport

    def _check_new_transport_id(self, transport_id: str) -> None:
        if transport_id in self.registry.transports:
            raise RequestFailed("exists", f"transport {transport_id} exists")

    def _producer(self, producer_id: str) -> Producer:
        producer = self.registry.producers.get(producer_id)
        if producer is None:
            raise RequestFailed("not_found", f"no producer {producer_id}")
        return producer

    # ----------------------------------------------------------------- helpers

    def _local(self, transport: WebRtcTransport) -> sdp.LocalTransport:
        udp_port = self.port if self.config.ice_udp else 0
        return negotiation.local_description(
            transport, transport.fingerprint, self.announced_ips, udp_port, self.tcp_port
        )

    def _new_producer(self, params: ProducerParams, transport: Transport) -> Producer:
        """A producer arriving on `transport`, with an id the worker picks."""
        params.producer_id = secrets.token_hex(8)
        return self._producer_of(params, transport, transport.id, SimulcastProducer if params.rids else Producer)

    def _producer_of(
        self, params: ProducerParams, transport: Transport, stream_id: str, kind: type[Producer] = Producer
    ) -> Producer:
        """A producer on `transport` under this worker's cache, keyframe and retransmit
        settings (a publisher's, or a pipe's copy of another worker's)."""
        return kind(
            params,
            transport,
            self.counters,
            time.monotonic,
            stream_id=stream_id,
            cache_size=self.config.nack_cache_packets,
            pli_min_interval=self.config.pli_min_interval_s,
            listener=transport,
            retransmit_policy=self.retransmit_policy,
        )

    def _on_transport_state(self, transport: WebRtcTransport, state: str) -> None:
        if self.channel is not None:
            self.channel.notify(transport.id, api.TransportStateChanged(state=state))
        if state in ("failed", "closed"):
            for producer in list(transport.producers.values()):
                producer.close()
                if self.channel is not None:
                    self.channel.notify(producer.id, api.ProducerClosed(reason=f"transport {state}"))

    def _on_active_speaker(self, router_id: str, producer_id: str) -> None:
        if self.channel is not None:
            self.channel.notify(router_id, api.ActiveSpeaker(producer_id=producer_id))

    def _on_allocation(self, transport_id: str, estimate_bps: int, tracks: list[dict]) -> None:
        if self.channel is not None:
            self.channel.notify(transport_id, api.SubscriberAllocation(estimate_bps=estimate_bps, tracks=tracks))

    def _on_layers_wanted(self, producer_id: str, rids: list[str]) -> None:
        if self.channel is not None:
            self.channel.notify(producer_id, api.ProducerLayersWanted(active_rids=rids))

    def _on_quality(self, transport: object, window: dict) -> None:
        if self.channel is None or not isinstance(transport, WebRtcTransport):
            return
        estimator = transport.estimator
        subscription = transport.subscription
        self.channel.notify(
            transport.id,
            api.TransportQuality(
                direction=transport.direction,
                loss_ratio=window["loss_ratio"],
                loss_max=window["loss_max"],
                jitter_s=window["jitter_s"],
                rtt_s=window["rtt_s"],
                estimate_bps=estimator.estimate_bps if estimator is not None else 0,
                blocks=window["blocks"],
                video_delivered=subscription.delivered_ratio() if subscription is not None else -1.0,
            ),
        )

    async def shutdown(self) -> None:
        self.clockwork.stop()
        for router in list(self.registry.routers.values()):
            await router.close()
        if self.tcp_server is not None:
            self.tcp_server.close()
            self.socket.close_tcp()
        if self.socket.udp is not None:
            self.socket.udp.close()


def _producer_info(producer: Producer) -> api.ProducerInfo:
    params = producer.params
    return api.ProducerInfo(producer.id, params.mid, params.kind, params.source, params.codec_name)


def _decode_frames(texts: list[str]) -> list[bytes]:
    frames = []
    for index, text in enumerate(texts):
        try:
            frames.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise RequestFailed("invalid", f"frames[{index}]: not base64") from None
    return frames


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
    ready = api.WorkerReady(port=worker.port, announced_ips=worker.announced_ips, tcp_port=worker.tcp_port)
    channel.notify(str(index), ready)
    log.info("worker %d ready on udp %s:%d, ice-tcp %s", index, sfu_config.listen_ip, worker.port, worker.tcp_port or "off")
    await serve_until_stopped(channel, worker.shutdown)


def _section(cls: type, data: dict[str, Any]) -> Any:
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sfu.worker", description="Conclave SFU worker (started by control)")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--config-json", required=True)
    parser.add_argument("--log-level", default=os.environ.get("CONCLAVE_WORKER_LOG_LEVEL"),
                        help="default: logging.level of the configuration")  # fmt: skip
    args = parser.parse_args(argv)
    os.umask(0o077)  # whatever it writes is this user's only
    data = json.loads(args.config_json)
    settings = data.get("logging", {})
    logs.setup(f"worker-{args.index}", args.log_level or settings.get("level", "info"), settings.get("format", "text"),
               settings.get("levels", ()))  # fmt: skip
    sfu_config = _section(SfuConfig, data.get("sfu", {}))
    media_config = _section(MediaConfig, data.get("media", {}))
    uvloop.run(run(args.index, args.channel_fd, sfu_config, media_config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
