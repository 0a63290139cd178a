"""A producer: one incoming stream of a publisher, fanned out to its consumers.

`on_rtp` runs on the hot path, synchronously from the socket: no await, no logging, no
allocation beyond what forwarding needs. Upward news leaves through `RtcpSink` (the
publisher's transport), `ProducerListener` (its owner, told when it closes) and
plain-int counters. A microphone whose publisher negotiated the RFC 6464 audio-level
extension also feeds each packet's level to its router's dominant-speaker detector
(`hear_levels`); nothing else pays for that.
"""

from __future__ import annotations

import struct
from time import perf_counter_ns
from typing import TYPE_CHECKING, Callable, Protocol

from sfu.engine.bitrate import BitrateMeter
from sfu.engine.keyframes import KeyframeRequester
from sfu.engine.nack_cache import PacketCache
from sfu.engine.retransmit import DEFAULT_POLICY, RetransmitPolicy
from sfu.engine.stats import FORWARD_TIME_SAMPLE_EVERY, Counters
from sfu.wire import codecs, rtcp, rtp
from sfu.wire.reception import ReceptionStats

if TYPE_CHECKING:
    from sfu.engine.consumer import Consumer
    from sfu.engine.speaker import DominantSpeaker

_SEQ_TS = struct.Struct("!HI")

# Gaps larger than this are treated as a stream restart, not as loss worth a NACK.
MAX_NACK_GAP = 64
# Distinct subscriber extmaps remembered per producer (one or two in practice).
MAX_EXTENSION_LAYOUTS = 16
_SAMPLE_MASK = FORWARD_TIME_SAMPLE_EVERY - 1
# The source whose audio is speech: its levels decide who the active speaker is.
MICROPHONE = "microphone"


class RtcpSink(Protocol):
    """What a producer needs from the transport it arrives on."""

    rtcp_ssrc: int

    def send_rtcp(self, packet: bytes) -> None: ...


class ProducerListener(Protocol):
    """The producer's owner (its transport): told once, when the producer has closed."""

    def on_producer_closed(self, producer: Producer) -> None: ...


class _NoListener:
    __slots__ = ()

    def on_producer_closed(self, producer: Producer) -> None:
        pass


NO_LISTENER: ProducerListener = _NoListener()


class ProducerParams:
    """What the publish negotiation decided about one incoming stream."""

    __slots__ = (
        "producer_id",
        "kind",
        "source",
        "mid",
        "codec_name",
        "clock_rate",
        "channels",
        "fmtp",
        "payload_type",
        "rtx_payload_type",
        "ssrc",
        "rtx_ssrc",
        "cname",
        "extmap",
        "rids",
    )

    def __init__(
        self,
        producer_id: str,
        kind: str,
        source: str,
        mid: str,
        codec_name: str,
        clock_rate: int,
        payload_type: int,
        ssrc: int | None,
        extmap: dict[str, int],
        channels: int | None = None,
        fmtp: str = "",
        rtx_payload_type: int | None = None,
        rtx_ssrc: int | None = None,
        cname: str | None = None,
        rids: tuple[str, ...] = (),
    ) -> None:
        self.producer_id = producer_id
        self.kind = kind
        self.source = source
        self.mid = mid
        self.codec_name = codec_name
        self.clock_rate = clock_rate
        self.channels = channels
        self.fmtp = fmtp
        self.payload_type = payload_type
        self.rtx_payload_type = rtx_payload_type
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.cname = cname
        self.extmap = extmap
        # Simulcast: the rids of its layers, lowest first (sfu.engine.simulcast); () for one stream.
        self.rids = rids


class Producer:
    __slots__ = (
        "params",
        "id",
        "is_video",
        "payload_type",
        "ssrc",
        "rtx_ssrc",
        "sink",
        "consumers",
        "cache",
        "reception",
        "keyframe_waiters",
        "keyframes",
        "paused",
        "closed",
        "counters",
        "clock",
        "stream_id",
        "listener",
        "retransmit_policy",
        "level_id",
        "speaker",
        "octets",
        "meter",
        "_codec",
        "_extension_memo",
        "_body_memo",
        "flush_sends",
    )

    def __init__(
        self,
        params: ProducerParams,
        sink: RtcpSink,
        counters: Counters,
        clock: Callable[[], float],
        stream_id: str,
        cache_size: int = 1024,
        pli_min_interval: float = 0.5,
        listener: ProducerListener = NO_LISTENER,
        retransmit_policy: RetransmitPolicy = DEFAULT_POLICY,
    ) -> None:
        self.params = params
        self.id = params.producer_id
        self.is_video = params.kind == "video"
        self.payload_type = params.payload_type
        self.ssrc = params.ssrc
        self.rtx_ssrc = params.rtx_ssrc
        self.sink = sink
        self.consumers: list[Consumer] = []
        self.cache = PacketCache(cache_size)
        self.reception = ReceptionStats()
        self.keyframe_waiters = 0
        self.keyframes = KeyframeRequester(pli_min_interval)
        self.paused = False
        self.closed = False
        self.counters = counters
        self.clock = clock
        self.stream_id = stream_id
        self.listener = listener
        # How much each of its consumers may retransmit (read at a consumer's first NACK).
        self.retransmit_policy = retransmit_policy
        # The publisher's id of the audio-level extension, for a microphone (0: none; the
        # server's announcer and screen-share audio are not speech).
        speech = params.kind == "audio" and params.source == MICROPHONE
        self.level_id = params.extmap.get(rtp.URI_AUDIO_LEVEL, 0) if speech else 0
        self.speaker: DominantSpeaker | None = None  # the router's detector, once it hears us
        self._codec = params.codec_name.lower()
        # Video bytes forwarded to someone (counted while it has consumers: what
        # forwarding it costs), and their rate, sampled by the clockwork (`measure`).
        self.octets = 0
        self.meter = BitrateMeter()
        # (ext_table, tcc_id) -> (packet, bytes before the tcc value, bytes after it)
        self._extension_memo: dict[tuple[bytes | None, int], tuple[bytes, bytes, bytes | None]] = {}
        # (ext_table, tcc_id) -> (packet, the same bytes joined around a 2-byte gap, where it is)
        self._body_memo: dict[tuple[bytes | None, int], tuple[bytes, bytes, int]] = {}
        # The native path's flush (sfu.transport.native), called after each fan-out so
        # the copies leave, and are timed, within it; None: every copy left as it went.
        self.flush_sends: Callable[[], None] | None = None

    # ------------------------------------------------------------------ hot path

    def on_rtp(self, packet: bytes, ssrc: int) -> None:
        if ssrc != self.ssrc:
            self._on_rtx(packet)
            return
        if packet[1] & 0x7F != self.payload_type:
            self.counters.drop("unexpected_payload_type")
            return
        seq, ts = _SEQ_TS.unpack_from(packet, 2)
        skipped = self.reception.update(seq)
        if skipped and skipped <= MAX_NACK_GAP:
            self._nack_gap(seq, skipped)
        self.cache.put(seq, packet)
        consumers = self.consumers
        if self.paused or not consumers:
            return
        keyframe = True
        if self.is_video:
            keyframe = False
            self.octets += len(packet)
            if self.keyframe_waiters:
                keyframe = codecs.is_keyframe(self._codec, packet, rtp.payload_offset(packet))
                if keyframe:
                    self.keyframes.satisfied()
                    self.counters.keyframes_forwarded += 1
        elif self.speaker is not None:  # a microphone with audio levels: who is speaking
            level = rtp.audio_level(packet, self.level_id)
            if level >= 0:
                self.speaker.on_level(self.id, level, int(self.clock() * 1000))
        # Once per packet for all consumers: the first two bytes without the payload type
        # (each consumer ORs its own in) and everything after the fixed header.
        head = packet[0] << 8 | packet[1] & 0x80
        rest = packet[12:]
        flush = self.flush_sends
        if self.reception.received & _SAMPLE_MASK:
            for consumer in consumers:
                consumer.forward(packet, seq, ts, keyframe, head, rest)
            if flush is not None:
                flush()
            return
        started = perf_counter_ns()  # one packet in FORWARD_TIME_SAMPLE_EVERY: time the fan-out
        for consumer in consumers:
            consumer.forward(packet, seq, ts, keyframe, head, rest)
        if flush is not None:
            flush()
        self.counters.record_forward_time(perf_counter_ns() - started)

    def extension_parts(self, packet: bytes, key: tuple[bytes | None, int]) -> tuple[bytes, bytes | None]:
        """`packet` after its 12-byte fixed header with extension ids renumbered by
        ext_table, split around the value of extension tcc_id (transport-wide seq, which
        each subscriber transport numbers itself), for key = (ext_table, tcc_id):
        (before, after), or (all, None) when there is no such value. Computed once per
        packet for each distinct key: subscribers of one kind of client share it.
        """
        ext_table, tcc_id = key
        memo = self._extension_memo
        entry = memo.get(key)
        if entry is not None and entry[0] is packet:
            return entry[1], entry[2]
        buf = bytearray(packet)
        if ext_table is not None:
            rtp.rewrite_extension_ids(buf, ext_table)
        where = rtp.find_extension(buf, tcc_id) if tcc_id else None
        if where is not None and where[1] >= 2:
            parts = (bytes(buf[12 : where[0]]), bytes(buf[where[0] + 2 :]))
        else:
            parts = (bytes(buf[12:]), None)
        if len(memo) >= MAX_EXTENSION_LAYOUTS and key not in memo:
            memo.clear()  # subscribers came and went with many extmaps: start over
        memo[key] = (packet, *parts)
        return parts

    def extension_body(self, packet: bytes, key: tuple[bytes | None, int]) -> tuple[bytes, int]:
        """`extension_parts` as the native path takes them: one bytes object (the value
        of the transport-wide number left as two zero bytes) and where that value is in
        it (-1: none). Once per packet for each distinct key, as extension_parts."""
        memo = self._body_memo
        entry = memo.get(key)
        if entry is not None and entry[0] is packet:
            return entry[1], entry[2]
        before, after = self.extension_parts(packet, key)
        body, tcc_at = (before, -1) if after is None else (b"".join((before, b"\0\0", after)), len(before))
        if len(memo) >= MAX_EXTENSION_LAYOUTS and key not in memo:
            memo.clear()
        memo[key] = (packet, body, tcc_at)
        return body, tcc_at

    def _on_rtx(self, packet: bytes) -> None:
        """RFC 4588: restore the original packet; padding-only RTX is bandwidth probing."""
        if self.rtx_ssrc is None or self.ssrc is None:
            self.counters.drop("unknown_ssrc")
            return
        if len(packet) - rtp.payload_offset(packet) < 2 or packet[0] & 0x20 and _padding_only(packet):
            self.counters.padding_received += 1
            return
        self.counters.rtx_received += 1
        original = rtp.unwrap_rtx(packet, self.payload_type, self.ssrc)
        seq = _SEQ_TS.unpack_from(original, 2)[0]
        if self.cache.get(seq) is not None:
            return  # already have it
        self.on_rtp(original, self.ssrc)

    def _nack_gap(self, seq: int, skipped: int) -> None:
        lost = [(seq - i) & 0xFFFF for i in range(skipped, 0, -1)]
        self.sink.send_rtcp(rtcp.build_nack(self.sink.rtcp_ssrc, self.ssrc or 0, lost))

    # ------------------------------------------------------------ control path

    def hear_levels(self, speaker: DominantSpeaker) -> None:
        """Feed `speaker` (the router's detector) the level of every packet forwarded from
        now on, keyed by this producer's id: only a microphone that carries levels. A
        paused producer (muted) or one nobody receives is not heard."""
        if self.level_id:
            self.speaker = speaker

    def measure(self, now: float) -> None:
        """Sample the bitrate meter (about once a second)."""
        self.meter.sample(self.octets, now)

    def request_keyframe(self) -> None:
        if not self.is_video or self.ssrc is None or self.closed:
            return
        if self.keyframes.request(self.clock()):
            self._send_pli()

    def poll_keyframe_request(self) -> None:
        if self.ssrc is not None and self.keyframes.poll(self.clock()):
            self._send_pli()

    def _send_pli(self) -> None:
        self.counters.pli_sent += 1
        self.sink.send_rtcp(rtcp.build_pli(self.sink.rtcp_ssrc, self.ssrc or 0))

    def on_sender_report(self, ntp_timestamp: int, rtp_timestamp: int, ssrc: int | None = None) -> None:
        """The publisher's SR for `ssrc` (one of this producer's; a single stream ignores it)."""
        self.reception.on_sender_report(ntp_timestamp, self.clock())
        for consumer in self.consumers:
            consumer.send_sender_report(ntp_timestamp, rtp_timestamp)

    def report_block(self) -> rtcp.ReportBlock | None:
        if not self.reception.started or self.ssrc is None:
            return None
        # Jitter stays 0: the producer counts packets (`update`), it does not time them.
        return self.reception.report_block(self.ssrc, self.clock())

    def report_blocks(self) -> list[rtcp.ReportBlock]:
        """A report block for each stream received (one here; a layer each when simulcast)."""
        block = self.report_block()
        return [] if block is None else [block]

    def ssrcs(self) -> list[int]:
        """The SSRCs this producer is known by on its transport (media and RTX)."""
        return [ssrc for ssrc in (self.ssrc, self.rtx_ssrc) if ssrc is not None]

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)

    def last_timestamp(self, consumer: Consumer) -> int | None:
        """The RTP timestamp (this producer's numbering) of the newest packet `consumer`
        may have sent: where a switch to another source continues from. None: unknown."""
        newest = self.cache.get(self.reception.max_seq) if self.reception.started else None
        return None if newest is None else _SEQ_TS.unpack_from(newest, 2)[1]

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)

    def set_paused(self, paused: bool) -> None:
        if self.paused and not paused:
            for consumer in self.consumers:
                consumer.resync()
        self.paused = paused

    def close(self) -> None:
        """Close every consumer of this producer, then tell the owner (once)."""
        if self.closed:
            return
        self.closed = True
        for consumer in list(self.consumers):
            consumer.close()
        self.consumers.clear()
        self.cache.clear()
        self._extension_memo.clear()
        self.listener.on_producer_closed(self)


def _padding_only(packet: bytes) -> bool:
    offset = rtp.payload_offset(packet)
    return len(packet) - offset <= packet[-1]
