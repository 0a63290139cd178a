"""RTCP a transport receives, and the reports it sends, shared by every transport kind.

WebRTC and plain transports differ in how RTCP arrives (DTLS-SRTP, SDES-SRTP, clear);
once decrypted, what it means for producers and consumers is the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from sfu.engine.bwe import BandwidthEstimator
from sfu.engine.consumer import Consumer
from sfu.engine.producer import Producer
from sfu.engine.quality import LinkQuality
from sfu.engine.stats import Counters
from sfu.wire import rtcp

# What the SFU acts on for every transport; every other member (receiver reports, SDES,
# BYE, XR) is left unparsed: it would cost without doing anything. Transport-cc and REMB
# come back unparsed too, and go to the transport's `BandwidthIntake` when it has one (a
# subscriber's transport), which bounds what parsing them may cost.
ACTED_ON = frozenset(
    {
        rtcp.RTCP_SR,
        (rtcp.RTCP_RTPFB, rtcp.RTPFB_NACK),
        (rtcp.RTCP_PSFB, rtcp.PSFB_PLI),
        (rtcp.RTCP_PSFB, rtcp.PSFB_FIR),
    }
)
# ... and receiver reports too where a `LinkQuality` judges the path (WebRTC transports:
# about one report a second per stream, at most 31 blocks each).
ACTED_ON_JUDGED = ACTED_ON | {rtcp.RTCP_RR}


def handle_rtcp(
    plain: bytes,
    producers_by_ssrc: Mapping[int, Producer],
    consumers_by_ssrc: Mapping[int, Consumer],
    counters: Counters,
    bandwidth: BandwidthIntake | None = None,
    quality: LinkQuality | None = None,
) -> None:
    """Route one decrypted compound RTCP packet (RFC 3550 §6, RFC 4585, RFC 5104);
    transport-cc feedback and REMB to `bandwidth`, if given; the report blocks about our
    consumers' streams to `quality`, if given.

    The NACKs of one compound reach each consumer together, once (`Consumer.on_nack`):
    its budget sees the whole request, and a number named twice is answered once."""
    counters.rtcp_received += 1
    try:
        packets = rtcp.parse_compound(plain, ACTED_ON if quality is None else ACTED_ON_JUDGED)
    except ValueError:
        counters.drop("malformed_rtcp")
        return
    nacked: dict[Consumer, list[tuple[int, int]]] | None = None
    for packet in packets:
        if isinstance(packet, rtcp.SenderReport):
            producer = producers_by_ssrc.get(packet.ssrc)
            if producer is not None:
                producer.on_sender_report(packet.ntp_timestamp, packet.rtp_timestamp, packet.ssrc)
            if quality is not None and packet.reports:
                _peer_reports(packet.reports, consumers_by_ssrc, quality)
        elif isinstance(packet, rtcp.ReceiverReport):
            if quality is not None and packet.reports:
                _peer_reports(packet.reports, consumers_by_ssrc, quality)
        elif isinstance(packet, rtcp.Nack):
            consumer = consumers_by_ssrc.get(packet.media_ssrc)
            if consumer is not None:
                if nacked is None:
                    nacked = {}
                nacked.setdefault(consumer, []).extend(packet.pairs)
        elif isinstance(packet, rtcp.Pli):
            counters.pli_received += 1
            _keyframe_wanted(consumers_by_ssrc, packet.media_ssrc)
        elif isinstance(packet, rtcp.Fir):
            counters.fir_received += 1
            for ssrc, _ in packet.entries:
                _keyframe_wanted(consumers_by_ssrc, ssrc)
        elif bandwidth is not None and isinstance(packet, rtcp.UnknownRtcp):
            bandwidth.on_member(packet)
    if nacked is not None:
        for consumer, pairs in nacked.items():
            consumer.on_nack(pairs)


def _peer_reports(
    blocks: list[rtcp.ReportBlock], consumers_by_ssrc: Mapping[int, Consumer], quality: LinkQuality
) -> None:
    """The blocks about streams we send this peer (a consumer's SSRC; its RTX is never
    reported alone) go to its link quality; any other SSRC is not ours to judge."""
    for block in blocks:
        consumer = consumers_by_ssrc.get(block.ssrc)
        if consumer is not None and consumer.ssrc == block.ssrc:
            quality.peer_report(block, consumer.producer.params.clock_rate)


def _keyframe_wanted(consumers_by_ssrc: Mapping[int, Consumer], ssrc: int) -> None:
    consumer = consumers_by_ssrc.get(ssrc)
    if consumer is not None:
        consumer.request_keyframe()


def receiver_reports(
    rtcp_ssrc: int, cname: str, producers: Iterable[Producer], quality: LinkQuality | None = None
) -> list[bytes]:
    """RR + SDES compounds for every stream received (RFC 3550 §6.4.2); [] before any packet.
    Each block also goes to `quality`, if given: how the publisher's streams reach us."""
    blocks: list[rtcp.ReportBlock] = []
    for producer in producers:
        produced = producer.report_blocks()
        if quality is not None:
            for block in produced:
                quality.own_reception(block, producer.params.clock_rate)
        blocks.extend(produced)
    return [
        rtcp.build_rr(rtcp_ssrc, blocks[start : start + rtcp.MAX_COUNT]) + rtcp.build_sdes(rtcp_ssrc, cname)
        for start in range(0, len(blocks), rtcp.MAX_COUNT)
    ]


# Transport-cc feedback is a compressed format: a 20-byte member may announce 65,535
# packet statuses (run-length chunks of "not received"), each one parsed and matched
# against the send log. Chromium reports every 50-100 ms what arrived since (at most a
# few hundred packets at 20 Mbit/s), so these bounds never touch honest feedback and cap
# what a hostile subscriber's costs: per member, and per second per transport.
MAX_FEEDBACK_STATUSES = 4096
FEEDBACK_STATUSES_PER_S = 20_000
_TWCC_STATUS_COUNT_AT = 14  # header 4, sender and media SSRCs 8, base sequence 2


class BandwidthIntake:
    """A subscriber transport's door from RTCP to its `BandwidthEstimator`.

    `handle_rtcp` hands it the transport-cc (RTPFB 15) and REMB (PSFB 15) members it left
    unparsed; this bounds their cost (`MAX_FEEDBACK_STATUSES` per member, a budget of
    `FEEDBACK_STATUSES_PER_S` refilled continuously, what does not fit is counted as the
    drop reason `feedback_over_budget` and not parsed), parses them and feeds the
    estimator at `clock_us()` (the clock the transport logs sent packets with).
    `on_change()` runs after each member that reached the estimator.
    """

    __slots__ = ("estimator", "counters", "clock_us", "on_change", "_tokens", "_refilled_us")

    def __init__(
        self,
        estimator: BandwidthEstimator,
        counters: Counters,
        clock_us: Callable[[], int],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.estimator = estimator
        self.counters = counters
        self.clock_us = clock_us
        self.on_change = on_change
        self._tokens = float(FEEDBACK_STATUSES_PER_S)
        self._refilled_us: int | None = None

    def on_member(self, member: rtcp.UnknownRtcp) -> None:
        if member.fmt != 15:
            return
        if member.packet_type == rtcp.RTCP_RTPFB:
            self._transport_feedback(member.raw)
        elif member.packet_type == rtcp.RTCP_PSFB:
            self._remb(member.raw)

    def _transport_feedback(self, raw: bytes) -> None:
        self.counters.transport_feedback_received += 1
        if len(raw) < _TWCC_STATUS_COUNT_AT + 2:
            self.counters.drop("malformed_feedback")
            return
        now_us = self.clock_us()
        statuses = (raw[_TWCC_STATUS_COUNT_AT] << 8) | raw[_TWCC_STATUS_COUNT_AT + 1]
        if not self._admit(statuses, now_us):
            self.counters.drop("feedback_over_budget")
            return
        try:
            (parsed,) = rtcp.parse_compound(raw)
        except ValueError:
            self.counters.drop("malformed_feedback")
            return
        self.estimator.on_transport_feedback(parsed, now_us)
        self.on_change()

    def _remb(self, raw: bytes) -> None:
        try:
            (parsed,) = rtcp.parse_compound(raw)
        except ValueError:
            self.counters.drop("malformed_feedback")
            return
        if isinstance(parsed, rtcp.Remb):  # other application-layer feedback: not ours
            self.counters.remb_received += 1
            self.estimator.on_remb(parsed.bitrate, self.clock_us())
            self.on_change()

    def _admit(self, statuses: int, now_us: int) -> bool:
        """A token bucket in packet statuses: full at FEEDBACK_STATUSES_PER_S."""
        if statuses > MAX_FEEDBACK_STATUSES:
            return False
        if self._refilled_us is not None:
            elapsed_us = max(0, now_us - self._refilled_us)
            self._tokens = min(float(FEEDBACK_STATUSES_PER_S), self._tokens + elapsed_us * FEEDBACK_STATUSES_PER_S / 1e6)
        self._refilled_us = now_us
        if statuses > self._tokens:
            return False
        self._tokens -= statuses
        return True
