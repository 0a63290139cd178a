"""RTCP a transport receives, and the reports it sends, shared by every transport kind.

WebRTC and plain transports differ in how RTCP arrives (DTLS-SRTP, SDES-SRTP, clear);
once decrypted, what it means for producers and consumers is the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sfu.engine.consumer import Consumer
from sfu.engine.producer import Producer
from sfu.engine.stats import Counters
from sfu.wire import rtcp


# What the SFU acts on; every other member (receiver reports, transport-cc and REMB from
# subscribers, SDES, BYE, XR) is left unparsed: it would cost without doing anything.
ACTED_ON = frozenset(
    {
        rtcp.RTCP_SR,
        (rtcp.RTCP_RTPFB, rtcp.RTPFB_NACK),
        (rtcp.RTCP_PSFB, rtcp.PSFB_PLI),
        (rtcp.RTCP_PSFB, rtcp.PSFB_FIR),
    }
)


def handle_rtcp(
    plain: bytes,
    producers_by_ssrc: Mapping[int, Producer],
    consumers_by_ssrc: Mapping[int, Consumer],
    counters: Counters,
) -> None:
    """Route one decrypted compound RTCP packet (RFC 3550 §6, RFC 4585, RFC 5104).

    The NACKs of one compound reach each consumer together, once (`Consumer.on_nack`):
    its budget sees the whole request, and a number named twice is answered once."""
    counters.rtcp_received += 1
    try:
        packets = rtcp.parse_compound(plain, ACTED_ON)
    except ValueError:
        counters.drop("malformed_rtcp")
        return
    nacked: dict[Consumer, list[tuple[int, int]]] | None = None
    for packet in packets:
        if isinstance(packet, rtcp.SenderReport):
            producer = producers_by_ssrc.get(packet.ssrc)
            if producer is not None:
                producer.on_sender_report(packet.ntp_timestamp, packet.rtp_timestamp, packet.ssrc)
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
    if nacked is not None:
        for consumer, pairs in nacked.items():
            consumer.on_nack(pairs)


def _keyframe_wanted(consumers_by_ssrc: Mapping[int, Consumer], ssrc: int) -> None:
    consumer = consumers_by_ssrc.get(ssrc)
    if consumer is not None:
        consumer.request_keyframe()


def receiver_reports(rtcp_ssrc: int, cname: str, producers: Iterable[Producer]) -> list[bytes]:
    """RR + SDES compounds for every stream received (RFC 3550 §6.4.2); [] before any packet."""
    blocks = [block for producer in producers for block in producer.report_blocks()]
    return [
        rtcp.build_rr(rtcp_ssrc, blocks[start : start + rtcp.MAX_COUNT]) + rtcp.build_sdes(rtcp_ssrc, cname)
        for start in range(0, len(blocks), rtcp.MAX_COUNT)
    ]
