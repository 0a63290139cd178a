"""A consumer: one producer's stream as one subscriber receives it.

Each subscriber sees a continuous stream of its own: SSRC, sequence number, timestamp,
payload type and header-extension ids are rewritten per consumer (`forward`), NACKs are
answered from the producer's packet cache (`on_nack`), and the publisher's sender
reports are translated so audio and video stay in sync (`send_sender_report`).
NACKs are answered within a budget per consumer (`on_nack`, sfu/engine/retransmit.py).
"""

from __future__ import annotations

import random
import struct
from typing import TYPE_CHECKING, Protocol

from sfu.engine.retransmit import ANSWER, REFUSED_DUPLICATE, RetransmitBudget
from sfu.engine.stats import Counters
from sfu.wire import rtcp, rtp

if TYPE_CHECKING:
    from sfu.engine.producer import Producer

_SEQ_TS_SSRC = struct.Struct("!HII")
# The fixed header (RFC 3550 §5.1) as four fields: V/P/X/CC + M/PT, sequence, timestamp, SSRC.
_HEADER = struct.Struct("!HHII")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")

# An extension id no subscriber ever negotiates: elements the subscriber did not agree
# to are renumbered to it, which hides them (RFC 8285 §4.1: unknown ids are ignored)
# without changing the packet's length.
HIDDEN_EXTENSION_ID = 14


class RtpSink(Protocol):
    """What a consumer needs from the subscriber's transport."""

    rtcp_ssrc: int
    # Where the native path sends for it now, or None: send_rtp (sfu.transport.native).
    native_to: object | None
    # Can it send now? (WebRTC: once DTLS-SRTP is up.) A consumer starts only then: a
    # keyframe sent before would be lost, and the PLI limit would hold back the next one.
    connected: bool

    def send_rtp(self, packet: bytes) -> None:
        """Protect (if SRTP) and send; `packet` is a fresh bytes object per call."""

    def send_rtcp(self, packet: bytes) -> None: ...

    def send_header(self, first: int, seq: int, ts: int, ssrc: int, body: bytes, tcc_at: int) -> None:
        """The native path's send: header from first/seq/ts/ssrc, then body (its
        transport-wide number at tcc_at, -1: none). Only while native_to is set."""

    def send_rewritten(
        self, first: int, seq: int, ts: int, ssrc: int, body: bytes, tcc_at: int, codec: bytes, tail: bytes
    ) -> None:
        """send_header with a simulcast consumer's codec bytes, then the tail."""

    def next_transport_sequence(self) -> int: ...


class ConsumerListener(Protocol):
    """The consumer's owner (its transport): told once, when the consumer has closed."""

    def on_consumer_closed(self, consumer: Consumer) -> None: ...


class _NoListener:
    __slots__ = ()

    def on_consumer_closed(self, consumer: Consumer) -> None:
        pass


NO_LISTENER: ConsumerListener = _NoListener()


def extension_table(publisher: dict[str, int], subscriber: dict[str, int]) -> bytes | None:
    """The id rewrite table from the publisher's extmap to the subscriber's; None if identity."""
    table = bytearray(range(256))
    for ext_id in range(1, 256):
        if ext_id != 15:
            table[ext_id] = HIDDEN_EXTENSION_ID
    for uri, ext_id in publisher.items():
        if 0 < ext_id < 256:
            target = subscriber.get(uri, HIDDEN_EXTENSION_ID)
            # One-byte headers (RFC 8285 §4.2) cannot carry ids above 14.
            table[ext_id] = target if 0 < target < 15 else HIDDEN_EXTENSION_ID
    identity = all(table[i] == i for i in publisher.values() if 0 < i < 256) and all(
        uri in subscriber for uri in publisher
    )
    return None if identity else bytes(table)


class Consumer:
    __slots__ = (
        "id",
        "producer",
        "sink",
        "mid",
        "kind",
        "ssrc",
        "rtx_ssrc",
        "payload_type",
        "rtx_payload_type",
        "use_rtx",
        "ext_table",
        "tcc_id",
        "active",
        "paused",
        "closed",
        "need_keyframe",
        "ready",
        "rewrites_extensions",
        "ext_key",
        "seq_offset",
        "ts_offset",
        "last_seq_out",
        "rtx_seq",
        "packets_sent",
        "octets_sent",
        "counters",
        "listener",
        "retransmits",
        "active_since",
        "rebase_ts",
        "rebase_at",
    )

    def __init__(
        self,
        consumer_id: str,
        producer: Producer,
        sink: RtpSink,
        mid: str,
        ssrc: int,
        payload_type: int,
        counters: Counters,
        rtx_ssrc: int | None = None,
        rtx_payload_type: int | None = None,
        listener: ConsumerListener = NO_LISTENER,
    ) -> None:
        self.id = consumer_id
        self.producer = producer
        self.sink = sink
        self.mid = mid
        self.kind = producer.params.kind
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.payload_type = payload_type
        self.rtx_payload_type = rtx_payload_type
        self.use_rtx = False
        self.ext_table: bytes | None = None
        self.tcc_id = 0
        self.active = False  # becomes True once the subscriber accepted the m-line
        self.paused = False
        self.closed = False
        self.need_keyframe = False
        # active, not paused, not waiting for a keyframe: the one flag `forward` tests.
        # Every change of the three sets it False; only `_restart` sets it True.
        self.ready = False
        self.rewrites_extensions = False  # ext_table or tcc_id: the slow path per packet
        self.ext_key: tuple[bytes | None, int] = (None, 0)
        # Random starting points, as a fresh sender would pick (RFC 3550 §5.1).
        self.last_seq_out = random.getrandbits(16)
        self.seq_offset = 0
        self.ts_offset = random.getrandbits(32)
        self.rtx_seq = random.getrandbits(16)
        self.packets_sent = 0
        self.octets_sent = 0
        self.counters = counters
        self.listener = listener
        self.retransmits: RetransmitBudget | None = None  # made at the first NACK
        self.active_since = 0.0  # when the subscriber accepted it (its forwarded counts start)
        # After a switch of producer (`switch_producer`): the last timestamp sent (-1:
        # none pending) and when, so the new source's first packet continues the line.
        self.rebase_ts = -1
        self.rebase_at = 0.0

    # ------------------------------------------------------------------ hot path

    def forward(self, packet: bytes, seq: int, ts: int, keyframe: bool, head: int, rest: bytes) -> None:
        """Send one packet of the producer's stream to this subscriber.

        The producer computes once per packet what every consumer needs: `head`, the
        first two bytes with the payload type cleared (V/P/X/CC and the marker), and
        `rest`, everything after the 12-byte fixed header. A consumer then only packs its
        own 12 bytes in front: one allocation per forwarded packet.
        """
        if not self.ready and not self._restart(seq, keyframe, ts):
            return
        out_seq = (seq + self.seq_offset) & 0xFFFF
        self.last_seq_out = out_seq
        sink = self.sink
        if sink.native_to is not None:
            # The native path (sfu.transport.native): the same copy, written in C from
            # the numbers decided here and the bytes shared by every subscriber.
            if self.rewrites_extensions and head & 0x1000:
                body, tcc_at = self.producer.extension_body(packet, self.ext_key)
            else:
                body, tcc_at = rest, -1
            self.packets_sent += 1
            self.octets_sent += len(body)
            out_ts = (ts + self.ts_offset) & 0xFFFFFFFF
            sink.send_header(head | self.payload_type, out_seq, out_ts, self.ssrc, body, tcc_at)
            return
        if self.rewrites_extensions and head & 0x1000:
            self._send_rewriting_extensions(packet, head, out_seq, ts)
            return
        self.packets_sent += 1
        self.octets_sent += len(rest)
        self.sink.send_rtp(
            _HEADER.pack(head | self.payload_type, out_seq, (ts + self.ts_offset) & 0xFFFFFFFF, self.ssrc) + rest
        )

    def _restart(self, seq: int, keyframe: bool, ts: int) -> bool:
        """Not forwarding: may this packet (re)start the stream? (off the common path)"""
        if not self.can_send():
            return False
        if self.need_keyframe:
            if not keyframe:
                return False
            self.need_keyframe = False
            self.producer.keyframe_waiters -= 1
            # The subscriber's sequence goes on from the last number it saw: no gap.
            self.seq_offset = (self.last_seq_out + 1 - seq) & 0xFFFF
            if self.rebase_ts >= 0:
                self._rebase_timestamps(ts)
        self.ready = True
        return True

    def _rebase_timestamps(self, ts: int) -> None:
        """The first packet of a new source follows the last one sent by the time between
        them, in its clock's units (at least 1: never backwards)."""
        producer = self.producer
        elapsed = max(1, round((producer.clock() - self.rebase_at) * producer.params.clock_rate))
        self.ts_offset = (self.rebase_ts + elapsed - ts) & 0xFFFFFFFF
        self.rebase_ts = -1

    def _send_rewriting_extensions(self, packet: bytes, head: int, out_seq: int, ts: int) -> None:
        """Header extensions renumbered for this subscriber (and its transport-wide seq).

        Subscribers with the same extmap share the renumbered bytes: the producer makes
        them once per packet (`extension_parts`); here only the header and the 2-byte
        transport-wide sequence number are this consumer's own.
        """
        before, after = self.producer.extension_parts(packet, self.ext_key)
        header = _HEADER.pack(head | self.payload_type, out_seq, (ts + self.ts_offset) & 0xFFFFFFFF, self.ssrc)
        if after is None:
            out = header + before
        else:
            out = b"".join((header, before, _U16.pack(self.sink.next_transport_sequence()), after))
        self.packets_sent += 1
        self.octets_sent += len(out) - 12
        self.sink.send_rtp(out)

    def _rewrite_extensions(self, buf: bytearray) -> None:
        if self.ext_table is not None:
            rtp.rewrite_extension_ids(buf, self.ext_table)
        if self.tcc_id:
            where = rtp.find_extension(buf, self.tcc_id)
            if where is not None and where[1] >= 2:
                _U16.pack_into(buf, where[0], self.sink.next_transport_sequence())

    # ------------------------------------------------------------- feedback path

    def on_nack(self, pairs: list[tuple[int, int]]) -> None:
        """Answer what one RTCP compound's NACKs for this consumer name, as (PID, BLP)
        pairs (RFC 4585 §6.2.1), from the producer's cache and within this consumer's
        budget (sfu.engine.retransmit). Refused numbers are counted by reason: over the
        budget (and everything after the second's look at NACKs is used up, counted per
        pair unexpanded), answered moments ago, or older than the policy's max_age_s."""
        producer = self.producer
        budget = self.retransmits
        if budget is None:
            budget = self.retransmits = RetransmitBudget(producer.retransmit_policy, self.active_since)
        budget.start(producer.clock(), self.packets_sent, self.octets_sent)
        # The newest packet received: its timestamp dates the others (RTP time is the
        # sender's clock; a stream that paused or went silent only looks older).
        newest = producer.cache.get(producer.reception.max_seq) if producer.reception.started else None
        newest_ts = -1 if newest is None else _U32.unpack_from(newest, 4)[0]
        max_age = int(budget.policy.max_age_s * producer.params.clock_rate)
        for index, (pid, blp) in enumerate(pairs):
            numbers = rtcp.nack_sequence_numbers(pid, blp)
            for position, out_seq in enumerate(numbers):
                if not budget.may_examine():
                    unexamined = len(numbers) - position + sum(rtcp.nack_pair_size(b) for _, b in pairs[index + 1 :])
                    self.counters.nack_requested += unexamined
                    self.counters.nack_refused_budget += unexamined
                    return
                self._retransmit(out_seq, budget, newest_ts, max_age)

    def _retransmit(self, out_seq: int, budget: RetransmitBudget, newest_ts: int, max_age: int) -> None:
        counters = self.counters
        counters.nack_requested += 1
        seq = (out_seq - self.seq_offset) & 0xFFFF
        packet = self.producer.cache.get(seq)
        if packet is None or not self.active:
            counters.nack_missed += 1
            return
        ts = _U32.unpack_from(packet, 4)[0]
        age = (newest_ts - ts) & 0xFFFFFFFF
        if newest_ts >= 0 and max_age < age < 0x80000000:
            counters.nack_refused_too_old += 1
            return
        verdict = budget.admit(out_seq, len(packet))
        if verdict != ANSWER:
            if verdict == REFUSED_DUPLICATE:
                counters.nack_refused_duplicate += 1
            else:
                counters.nack_refused_budget += 1
            return
        buf = bytearray(packet)
        buf[1] = (buf[1] & 0x80) | self.payload_type
        _SEQ_TS_SSRC.pack_into(buf, 2, out_seq, (ts + self.ts_offset) & 0xFFFFFFFF, self.ssrc)
        if buf[0] & 0x10:
            self._rewrite_extensions(buf)
        if self.use_rtx and self.rtx_ssrc is not None and self.rtx_payload_type is not None:
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
            out = rtp.wrap_rtx(bytes(buf), self.rtx_payload_type, self.rtx_ssrc, self.rtx_seq)
        else:
            out = bytes(buf)
        self.counters.nack_answered += 1
        self.sink.send_rtp(out)

    def send_sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        """Translate the publisher's SR onto this consumer's timestamp line (RFC 3550 §6.4.1)."""
        if not self.active or self.packets_sent == 0:
            return
        self.sink.send_rtcp(
            rtcp.build_sr(
                self.ssrc,
                ntp_timestamp,
                (rtp_timestamp + self.ts_offset) & 0xFFFFFFFF,
                self.packets_sent & 0xFFFFFFFF,
                self.octets_sent & 0xFFFFFFFF,
            )
        )

    # ------------------------------------------------------------ control path

    def activate(self, ext_table: bytes | None, tcc_id: int, use_rtx: bool) -> None:
        """The subscriber accepted this m-line: start forwarding, from a keyframe for video."""
        self.ext_table = ext_table
        self.tcc_id = tcc_id
        self.use_rtx = use_rtx
        self.rewrites_extensions = ext_table is not None or bool(tcc_id)
        self.ext_key = (ext_table, tcc_id)
        if not self.active:
            self.active = True
            self.active_since = self.producer.clock()
            self.resync()

    def request_keyframe(self) -> None:
        """The subscriber lost its picture (PLI, FIR): ask the publisher for a keyframe."""
        self.producer.request_keyframe()

    def can_send(self) -> bool:
        """Would `forward` send now, keyframes aside? Accepted by the subscriber, not
        paused, and its transport connected."""
        return self.active and not self.paused and self.sink.connected

    def resync(self) -> None:
        """Start again from the next keyframe (video) or packet (audio), without a seq gap."""
        self.ready = False
        if self.kind == "video":
            if not self.need_keyframe:
                self.need_keyframe = True
                self.producer.keyframe_waiters += 1
            # A keyframe sent before the subscriber's DTLS is up would be lost, and the PLI
            # limit would hold back the next request: the transport resyncs on connect.
            if self.sink.connected:
                self.producer.request_keyframe()
        elif not self.need_keyframe:
            self.need_keyframe = True
            self.producer.keyframe_waiters += 1

    def switch_producer(self, producer: Producer, ext_table: bytes | None) -> None:
        """Forward `producer` from now on, as the continuation of this stream: same SSRC,
        sequence numbers on without a gap, timestamps on by the time elapsed, from the new
        source's next keyframe (audio: next packet). What a WHEP player's slot does when
        the screen share, the speaker or the notice takes it (sfu.transport.playback).
        `ext_table`: the id rewrite from the new publisher's extensions."""
        old = self.producer
        if producer is old:
            return
        last_ts = old.last_timestamp(self)
        if last_ts is not None:
            self.rebase_ts = (last_ts + self.ts_offset) & 0xFFFFFFFF
            self.rebase_at = old.clock()
        if self.need_keyframe:
            old.keyframe_waiters -= 1
            self.need_keyframe = False
        old.remove_consumer(self)
        self.producer = producer
        producer.add_consumer(self)
        self.ext_table = ext_table
        self.rewrites_extensions = ext_table is not None or bool(self.tcc_id)
        self.ext_key = (ext_table, self.tcc_id)
        self.retransmits = None  # its budget was counted against the old source's packets
        self.resync()

    def set_paused(self, paused: bool) -> None:
        if self.paused and not paused:
            self.resync()
        self.paused = paused
        if paused:
            self.ready = False

    def close(self) -> None:
        """Stop, leave the producer, then tell the owner (once)."""
        if self.closed:
            return
        self.closed = True
        self.ready = False
        if self.need_keyframe:
            self.producer.keyframe_waiters -= 1
            self.need_keyframe = False
        self.active = False
        self.producer.remove_consumer(self)
        self.listener.on_consumer_closed(self)
