"""A pipe transport: one meeting's producers carried from one worker's router to another's.

mediasoup's pipeToRouter, in this tree's terms. A meeting that outgrows one worker
(control.meeting.spread) keeps every publisher on its home worker and seats some
subscribers on other workers; each pair of routers (home, other) is joined by a pair of
pipe transports, plain RTP over 127.0.0.1 with RTCP muxed on the same port:

    publisher → home producer → pipe consumer ══ UDP ══> pipe producer → subscribers on B
                                 (home's pipe)            (B's pipe, same producer id)

A pipe is a `PlainTransport` whose consumers forward everything (header extensions
untouched, so a microphone's audio levels reach B's dominant-speaker detector) and whose
producers keep the id, the stream and the parameters of the producer they copy
(`PipedProducer`): for control and the subscribers of B, a piped track is the same track.
What the engine already does on every transport does the rest, each in the right place:

- a subscriber on B that lost its picture sends a PLI to B's pipe producer, which asks
  the pipe (`Producer.request_keyframe` → `send_rtcp`); home's pipe consumer hears it and
  asks the publisher (`Consumer.request_keyframe`);
- a subscriber's NACK is answered on B from the pipe producer's cache; a packet lost on
  the pipe itself is NACKed by B's producer and answered by home's pipe consumer;
- the publisher's sender reports go through the pipe consumer to B (audio/video sync).

Packets and bytes crossing pipes are counted in the worker's counters
(`pipe_packets_sent`, ...), once per packet, on the path that is already there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sfu.engine.consumer import Consumer
from sfu.engine.producer import ProducerParams
from sfu.transport.plain import PlainTransport
from sfu.transport.sending import Address

if TYPE_CHECKING:
    from sfu.wire.sdp import Codec


class PipedProducer:
    """What the far side of a pipe needs to make a copy of a producer: the original's
    identity and codec, with the payload type and SSRC of the pipe consumer's stream."""

    __slots__ = ("params", "stream_id")

    def __init__(self, params: ProducerParams, stream_id: str) -> None:
        self.params = params
        self.stream_id = stream_id

    @classmethod
    def of(cls, consumer: Consumer, codec: Codec) -> PipedProducer:
        """The copy of `consumer`'s producer as `consumer` sends it through a pipe."""
        source = consumer.producer.params
        params = ProducerParams(
            producer_id=source.producer_id,
            kind=source.kind,
            source=source.source,
            mid=source.mid,
            codec_name=source.codec_name,
            clock_rate=source.clock_rate,
            payload_type=codec.payload_type,
            ssrc=consumer.ssrc,
            extmap=dict(source.extmap),
            channels=source.channels,
            fmtp=source.fmtp,
            cname=source.cname or consumer.producer.stream_id,
        )
        return cls(params, consumer.producer.stream_id)


class PipeTransport(PlainTransport):
    """A plain transport between two workers of this machine: no SRTP (loopback only),
    the peer's address given by control, every packet counted as pipe traffic."""

    __slots__ = ()

    KIND = "pipe"

    def __init__(self, transport_id: str, router, counters, max_datagram: int = 1500) -> None:  # type: ignore[no-untyped-def]
        super().__init__(transport_id, router, counters, srtp=False, max_datagram=max_datagram)

    def connect_peer(self, remote: Address) -> None:
        """The other worker's pipe: where we send, and the only address heard."""
        self.connect(remote, None)

    # ------------------------------------------------------------------ hot path

    def datagram_received(self, data: bytes, addr: Address) -> None:  # type: ignore[override]
        counters = self.counters
        if addr != self.remote:  # only the other worker's pipe port (a plain one hears the remote's IP)
            counters.packets_received += 1
            counters.drop("unknown_peer")
            return
        counters.pipe_packets_received += 1
        counters.pipe_bytes_received += len(data)
        super().datagram_received(data, addr)

    def send_rtp(self, packet: bytes) -> None:
        counters = self.counters
        counters.pipe_packets_sent += 1
        counters.pipe_bytes_sent += len(packet)
        super().send_rtp(packet)

    def send_header(self, first: int, seq: int, ts: int, ssrc: int, body: bytes, tcc_at: int) -> None:
        counters = self.counters
        counters.pipe_packets_sent += 1
        counters.pipe_bytes_sent += 12 + len(body)
        super().send_header(first, seq, ts, ssrc, body, tcc_at)

    def send_rewritten(
        self, first: int, seq: int, ts: int, ssrc: int, body: bytes, tcc_at: int, codec: bytes, tail: bytes
    ) -> None:
        counters = self.counters
        counters.pipe_packets_sent += 1
        counters.pipe_bytes_sent += 12 + len(body) + len(codec) + len(tail)
        super().send_rewritten(first, seq, ts, ssrc, body, tcc_at, codec, tail)
