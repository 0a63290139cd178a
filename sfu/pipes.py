"""The worker's requests about pipe transports (sfu/transport/pipe.py), apart from
sfu/worker.py: a mixin of `sfu.worker.Worker`, whose `handle` finds them by name."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from common.channel import RequestFailed
from common.messages import Empty, Message
from sfu import api
from sfu.engine.producer import ProducerParams
from sfu.transport import negotiation
from sfu.transport.pipe import PipedProducer, PipeTransport

if TYPE_CHECKING:
    from sfu.worker import Worker

    _Base = Worker
else:
    _Base = object


class PipeRequests(_Base):
    async def _on_pipe_transport_create(self, request: api.PipeTransportCreate) -> Message:
        router = self._router(request.router_id)
        self._check_new_transport_id(request.transport_id)
        if request.listen_ip != "127.0.0.1":
            # Unencrypted and unauthenticated: between workers of this machine only.
            raise RequestFailed("invalid", "listen_ip: a pipe listens on 127.0.0.1 only")
        transport = PipeTransport(request.transport_id, router, self.counters, self.config.max_datagram)
        transport.use_native(self.native)
        router.add_transport(transport)
        try:
            ip, port = await transport.bind(request.listen_ip)
        except OSError as exc:
            await transport.close()
            raise RequestFailed("invalid", f"cannot bind {request.listen_ip}: {exc}") from None
        return api.PipeTransportInfo(transport_id=transport.id, ip=ip, port=port)

    async def _on_pipe_transport_connect(self, request: api.PipeTransportConnect) -> Message:
        transport = self._transport(request.transport_id, PipeTransport)
        if request.ip != "127.0.0.1" or not 0 < request.port < 65536:
            raise RequestFailed("invalid", f"{request.ip}:{request.port}: a pipe's peer is a port of 127.0.0.1")
        transport.connect_peer((request.ip, request.port))
        return Empty()

    async def _on_pipe_consume(self, request: api.PipeConsume) -> Message:
        transport = self._transport(request.transport_id, PipeTransport)
        producer = self._producer(request.producer_id)
        if request.consumer_id in self.registry.consumers:
            raise RequestFailed("exists", f"consumer {request.consumer_id} exists")
        codec = negotiation.subscriber_codec(self.policy, producer.params)
        # A simulcast producer leaves as one stream (its top layer, the plain consumer's
        # default): the other worker's subscribers get no layer of their own.
        consumer = transport.consume(request.consumer_id, producer, codec)
        piped = PipedProducer.of(consumer, codec)
        return api.PipeConsumed(producer=_info(piped))

    async def _on_pipe_producer_create(self, request: api.PipeProducerCreate) -> Message:
        transport = self._transport(request.transport_id, PipeTransport)
        info = request.producer
        if info.kind not in ("audio", "video"):
            raise RequestFailed("invalid", "kind must be audio or video")
        if not 0 <= info.payload_type <= 127 or not 0 < info.ssrc <= 0xFFFFFFFF:
            raise RequestFailed("invalid", "payload_type must be 0..127 and ssrc 1..2^32-1")
        params = ProducerParams(
            producer_id=info.producer_id,
            kind=info.kind,
            source=info.source,
            mid=transport.allocate_mid(),  # the pipe's own: every publisher numbers from 0
            codec_name=info.codec_name,
            clock_rate=info.clock_rate,
            payload_type=info.payload_type,
            ssrc=info.ssrc,
            extmap=dict(info.extmap),
            channels=info.channels,
            fmtp=info.fmtp,
            cname=info.cname or None,
        )
        negotiation.subscriber_codec(self.policy, params)  # ValueError: a codec we cannot forward
        producer = self._producer_of(params, transport, info.stream_id or secrets.token_hex(8))
        transport.add_producer(producer)  # ValueError: the id or the SSRC is taken
        return Empty()

    def pipe_gauges(self) -> dict[str, float]:
        pipes = [t for t in self.transports.values() if isinstance(t, PipeTransport)]
        return {"pipe_transports": float(len(pipes))}


def _info(piped: PipedProducer) -> api.PipedProducerInfo:
    params = piped.params
    assert params.ssrc is not None
    return api.PipedProducerInfo(
        producer_id=params.producer_id,
        kind=params.kind,
        source=params.source,
        codec_name=params.codec_name,
        clock_rate=params.clock_rate,
        payload_type=params.payload_type,
        ssrc=params.ssrc,
        stream_id=piped.stream_id,
        cname=params.cname or "",
        channels=params.channels,
        fmtp=params.fmtp,
        extmap=dict(params.extmap),
    )
