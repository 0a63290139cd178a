"""Plain-integer counters shared by every object of one worker's media plane.

Nothing on the packet path calls Prometheus: objects bump these ints and the worker's
`stats()` snapshot is read periodically by control.
"""

from __future__ import annotations

DROP_REASONS = (
    "oversized",
    "unknown_packet",
    "malformed_stun",
    "stun_auth",
    "unknown_peer",
    "dtls_error",
    "malformed_dtls",
    "not_connected",
    "srtp_error",
    "malformed_rtp",
    "malformed_rtcp",
    "unknown_ssrc",
    "unexpected_payload_type",
    "internal_error",
)


class Counters:
    __slots__ = (
        "packets_received",
        "bytes_received",
        "packets_sent",
        "bytes_sent",
        "rtcp_received",
        "rtcp_sent",
        "nack_requested",
        "nack_answered",
        "nack_missed",
        "pli_sent",
        "pli_received",
        "fir_received",
        "keyframes_forwarded",
        "padding_received",
        "rtx_received",
        "stun_requests",
        "dropped",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        counters = {name: getattr(self, name) for name in self.__slots__ if name != "dropped"}
        return counters, dict(self.dropped)
