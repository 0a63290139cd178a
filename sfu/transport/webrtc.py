"""One participant's ICE-lite + DTLS-SRTP path through the worker's shared UDP socket.

`on_srtp` is the hot path: SRTP unprotect, four bytes of header read with `struct`, then
straight into the producer, whose consumers protect and `sendto` on their own transports,
all synchronously. RTCP (feedback, reports) is parsed into objects: it is rare.

A subscribe transport estimates how much it may send its subscriber (issue 11, item 3):

- `estimator` (`sfu.engine.bwe.BandwidthEstimator`; None on a publish transport) logs
  every packet sent with a transport-wide sequence number: the consumer asks
  `next_transport_sequence`, which remembers the number, and `send_rtp` logs it with the
  protected size at `monotonic_ns() // 1000`, the clock its feedback is matched on;
- the subscriber's transport-cc feedback and REMB reach it through
  `sfu.engine.feedback.BandwidthIntake` (bounded parsing, counted);
- `tick_bandwidth` (the clockwork, every 100 ms) asks it for a probe when the allocation
  wants more: `probe_target_bps` is what the allocation would like to send (it sets it;
  0 means nothing more: no probe); a `sfu.engine.bwe.pacer.ProbePacer` then sends the
  cluster's padding on a video consumer's RTX stream, `pace_probe` every 5 ms.

The allocation reads `estimator.estimate_bps`, polling from its own timer, or sets
`on_estimate(transport, bps)`, called after a feedback, REMB or probe result changed it.
"""

from __future__ import annotations

import logging
import random
import secrets
import struct
from time import monotonic, monotonic_ns
from typing import TYPE_CHECKING, Callable

import pylibsrtp

from sfu.engine.bwe import BandwidthEstimator
from sfu.engine.bwe.pacer import MAX_PADDING, ProbePacer, padding_packet
from sfu.engine.consumer import Consumer
from sfu.engine.feedback import BandwidthIntake, handle_rtcp
from sfu.engine.producer import Producer
from sfu.engine.quality import LinkQuality
from sfu.engine.simulcast import SimulcastProducer
from sfu.engine.stats import Counters
from sfu.engine.subscription import Subscription
from sfu.engine.twcc import TransportCcRecorder
from sfu.transport.base import Transport
from sfu.transport.dtls import DtlsSession, certificate_fingerprint
from sfu.transport.ice import CONSENT_TIMEOUT_S, PROBE, SELECT, IcePath, new_tiebreaker
from sfu.transport.native import NativeSender, sockaddr, srtp_context
from sfu.transport.srtp import FastSrtp
from sfu.wire import dtls as dtls_records
from sfu.wire import rtp

if TYPE_CHECKING:
    from aiortc.rtcdtlstransport import RTCCertificate

    from sfu.engine.router import Router
    from sfu.transport.playback import Playback
    from sfu.transport.tcp import IceTcpConnection
    from sfu.transport.udp import MediaSocket
    from sfu.wire.sdp import Codec

log = logging.getLogger(__name__)

_SSRC = struct.Struct("!I")
_U16 = struct.Struct("!H")
_RTCP_SR = 200
Address = tuple[str, int]

_ICE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _monotonic_us() -> int:
    return monotonic_ns() // 1000


def _log_nothing(seq: int, size: int, now_us: int) -> None:
    """A publish transport sends no transport-wide numbered packets: nothing to log."""


def _ice_string(length: int) -> str:
    return "".join(secrets.choice(_ICE_CHARS) for _ in range(length))


class WebRtcTransport(Transport):
    __slots__ = (
        "direction",
        "ice_ufrag",
        "ice_pwd",
        "ice_pwd_bytes",
        "remote_ice_ufrag",
        "remote_ice_pwd_bytes",
        "ice_tiebreaker",
        "path",
        "clock",
        "addr",
        "rx",
        "tx",
        "consumer_slots",
        "max_consumer_slots",
        "recyclable",
        "session_version",
        "pending_offer",
        "pending_rejected",
        "tcc_seq",
        "remote_fingerprints",
        "fingerprint",
        "dtls_role",
        "dtls",
        "socket",
        "sender",
        "on_state",
        "mid_ext_id",
        "rid_ext_id",
        "rrid_ext_id",
        "tcc_ext_id",
        "tcc_recorder",
        "estimator",
        "bandwidth",
        "probe_target_bps",
        "on_estimate",
        "reported_estimate_bps",
        "pacer",
        "pending_tcc",
        "log_sent",
        "subscription",
        "playback",
    )

    KIND = "WebRTC"
    NEGOTIATES = True

    def __init__(
        self,
        transport_id: str,
        router: Router,
        direction: str,
        socket: MediaSocket,
        certificate: RTCCertificate,
        counters: Counters,
        on_state: Callable[[WebRtcTransport, str], None],
        max_consumer_slots: int = 64,
        consent_timeout_s: float = CONSENT_TIMEOUT_S,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        super().__init__(transport_id, router, counters)
        self.direction = direction
        self.ice_ufrag = _ice_string(8)
        self.ice_pwd = _ice_string(24)
        self.ice_pwd_bytes = self.ice_pwd.encode()
        self.remote_ice_ufrag: str | None = None
        self.remote_ice_pwd_bytes: bytes | None = None  # keys our own checks (IcePath's probes)
        self.ice_tiebreaker = new_tiebreaker()
        self.path = IcePath(consent_timeout_s)  # where we send, and its consent
        self.clock = clock
        # The selected address (path.selected): what the hot path sends to; None: nowhere.
        self.addr: Address | None = None
        self.rx: FastSrtp | None = None
        self.tx: FastSrtp | None = None
        # m-line order of the subscribe offer. A closed consumer keeps its m-line until a
        # new consumer of its kind recycles it (under a new mid), which may happen once the
        # client has answered an offer rejecting it (negotiation.apply_subscribe_answer).
        self.consumer_slots: list[Consumer] = []
        self.max_consumer_slots = max_consumer_slots
        self.recyclable: set[int] = set()  # indexes in consumer_slots
        self.session_version = 0
        self.pending_offer: object | None = None
        self.pending_rejected: list[tuple[int, Consumer]] = []  # what the pending offer rejects
        self.tcc_seq = random.getrandbits(16)
        self.remote_fingerprints: list[tuple[str, str]] = []
        self.fingerprint = certificate_fingerprint(certificate)  # ours, in every SDP we send
        self.dtls_role: str | None = None
        self.socket = socket
        # What sends to `addr`: the UDP socket, or the ICE-TCP connection the path is on
        # (both have `sendto(data, addr)`): set with addr, read once per packet.
        self.sender: MediaSocket | IceTcpConnection = socket
        self.on_state = on_state
        self.mid_ext_id = 0
        self.rid_ext_id = 0  # the publisher's RTP stream ID extension id (simulcast)
        self.rrid_ext_id = 0  # ... and repaired RTP stream ID (their RTX)
        self.tcc_ext_id = 0  # publisher's transport-wide-cc extension id, once negotiated
        self.tcc_recorder = TransportCcRecorder()
        self.estimator: BandwidthEstimator | None = None
        self.bandwidth: BandwidthIntake | None = None
        self.probe_target_bps = 0  # set by the allocation: what it would like to send
        self.on_estimate: Callable[[WebRtcTransport, int], None] | None = None
        self.reported_estimate_bps = 0
        self.pacer: ProbePacer | None = None
        # The transport-wide number the packet about to be sent carries (-1: none).
        self.pending_tcc = -1
        self.log_sent: Callable[[int, int, int], object] = _log_nothing
        if direction == "subscribe":
            self.estimator = BandwidthEstimator()
            self.bandwidth = BandwidthIntake(self.estimator, counters, _monotonic_us, self._estimate_changed)
            self.reported_estimate_bps = self.estimator.estimate_bps
            # The send log itself: what on_packet_sent does for a packet of no probe.
            self.log_sent = self.estimator.send_log.on_sent
        # The allocation (sfu.engine.subscription): the one owner of what its consumers forward.
        self.subscription = Subscription(self, counters) if direction == "subscribe" else None
        # A player's slots (sfu.transport.playback.Playback) once it offered; None otherwise.
        self.playback: Playback | None = None
        self.quality = LinkQuality(clock)  # its peer's reports and our reception (sfu.engine.quality)
        self.dtls = DtlsSession(certificate, self._send_dtls, self._on_dtls_connected, self._on_dtls_down)
        self.native = socket.native
        socket.ice.register(self)  # undone in _release (MediaSocket.unbind_peer)

    # ------------------------------------------------------------------ ICE / DTLS

    def on_ice_check(self, addr: Address, nominated: bool) -> None:
        """An authenticated check from `addr` (ice.IceLiteServer answered it)."""
        if self.closed:
            return
        now = self.clock()
        decision = self.path.on_check(addr, nominated, now, self.connected)
        if decision == SELECT:
            self._select(addr, now)
        elif decision == PROBE:
            transaction_id = self.socket.ice.probe(self, addr)
            if transaction_id is not None:
                self.path.probing(addr, transaction_id, now)

    def on_ice_answer(self, addr: Address, transaction_id: bytes) -> None:
        """`addr` answered a check of ours with the peer's credentials."""
        if self.closed:
            return
        now = self.clock()
        if self.path.on_answer(addr, transaction_id, now):
            self._select(addr, now)

    def _select(self, addr: Address, now: float) -> None:
        sender = self.socket.sender_for(addr)
        if sender is None:
            return  # its ICE-TCP connection closed meanwhile
        if not self.socket.bind_peer(self, self.addr, addr):
            self.counters.drop("address_taken")  # another transport's peer is there
            return
        if self.addr is not None and self.addr != addr:
            self.counters.ice_path_switches += 1
        self.path.select(addr, now)
        self.addr = addr
        self.sender = sender
        self._route_natively()
        self._maybe_start_dtls()

    def on_path_closed(self, addr: Address) -> None:
        """The ICE-TCP connection at `addr` closed: nothing more is sent there; the client
        may nominate another path (checked first, as any new address once DTLS is up)."""
        if addr == self.addr:
            self.path.lose(addr)
            self.addr = None
            self.sender = self.socket
            self.native_to = None

    def check_consent(self) -> None:
        """RFC 7675 §5.1: no authenticated check from the selected address for
        consent_timeout_s: stop sending there (nothing is sent while addr is None)."""
        if self.addr is not None and self.path.expire(self.clock()):
            self.counters.ice_consent_expired += 1
            self.socket.release_peer(self, self.addr)
            self.addr = None
            self.sender = self.socket
            self.native_to = None
            # News, not an end: a participant's checks from a new address select it again
            # (no "connected" follows); a WHEP viewer, which has no socket to us, ends here.
            self.on_state(self, "disconnected")

    def set_remote(
        self, ice_ufrag: str, fingerprints: list[tuple[str, str]], dtls_role: str, ice_pwd: str | None = None
    ) -> None:
        if self.remote_ice_ufrag is not None and ice_ufrag != self.remote_ice_ufrag:
            raise ValueError("ICE restart is not supported (remote ufrag changed)")
        self.remote_ice_ufrag = ice_ufrag
        if ice_pwd and self.remote_ice_pwd_bytes is None:
            self.remote_ice_pwd_bytes = ice_pwd.encode()
        if not self.remote_fingerprints:
            self.remote_fingerprints = fingerprints
            self.dtls_role = dtls_role
        self._maybe_start_dtls()

    def _maybe_start_dtls(self) -> None:
        # The client role must know where to send its ClientHello; the server role could
        # start earlier, but records that arrive first simply wait in the shim's queue.
        if self.dtls.started or not self.remote_fingerprints or self.addr is None:
            return
        self.dtls.start(self.dtls_role or "server", self.remote_fingerprints)

    def on_dtls(self, data: bytes) -> None:
        if not dtls_records.is_valid(data):
            self.counters.drop("malformed_dtls")
            return
        if not self.dtls.feed(data):
            self.counters.drop("dtls_error")

    def _send_dtls(self, data: bytes) -> None:
        if self.addr is not None and not self.closed:
            self.sender.sendto(data, self.addr)

    def _on_dtls_connected(self, rx: object, tx: object) -> None:
        # aiortc's pylibsrtp sessions, called without pylibsrtp's per-packet wrapper cost.
        self.rx = FastSrtp(rx)  # type: ignore[arg-type]
        self.tx = FastSrtp(tx)  # type: ignore[arg-type]
        self.connected = True
        self._route_natively()
        self.on_state(self, "connected")
        for consumer in self.consumer_slots:
            if consumer.active:
                consumer.resync()

    def _on_dtls_down(self, state: str) -> None:
        self.rx = self.tx = None
        self.native_to = None
        self.connected = False
        if not self.closed:
            self.on_state(self, state)

    # ------------------------------------------------------------------ hot path

    def on_srtp(self, data: bytes) -> None:
        rx = self.rx
        if rx is None:
            self.counters.drop("not_connected")
            return
        if 191 < data[1] < 224:  # RFC 5761 §4: RTCP packet types 192..223
            try:
                plain = rx.unprotect_rtcp(data)
            except (pylibsrtp.Error, ValueError):
                self.counters.drop("srtp_error")
                return
            self._route_rtcp(plain)
            return
        try:
            plain = rx.unprotect(data)
        except (pylibsrtp.Error, ValueError):
            self.counters.drop("srtp_error")
            return
        if len(plain) < 12:
            self.counters.drop("malformed_rtp")
            return
        if self.tcc_ext_id and plain[0] & 0x10:
            where = rtp.find_extension(plain, self.tcc_ext_id)
            if where is not None and where[1] >= 2:
                self.tcc_recorder.record(_U16.unpack_from(plain, where[0])[0], monotonic_ns() // 1000)
        ssrc = _SSRC.unpack_from(plain, 8)[0]
        producer = self.producers_by_ssrc.get(ssrc)
        if producer is None:
            producer = self._learn_ssrc(plain, ssrc)
            if producer is None:
                self.counters.drop("unknown_ssrc")
                return
        producer.on_rtp(plain, ssrc)

    def send_rtp(self, packet: bytes) -> None:
        route = self.native_to
        if route is not None:
            self._sent_natively(self.native.send(route, packet))  # type: ignore[union-attr]
            return
        tx = self.tx
        addr = self.addr
        if tx is None or addr is None:
            self.pending_tcc = -1
            return
        protected = tx.protect(packet)
        self.sender.sendto(protected, addr)
        seq = self.pending_tcc
        if seq >= 0:
            self.pending_tcc = -1
            self.log_sent(seq, len(protected), monotonic_ns() // 1000)

    def send_header(self, first: int, seq: int, ts: int, ssrc: int, body: bytes, tcc_at: int) -> None:
        """The native path's send_rtp for a copy it writes itself (sfu.transport.native):
        numbered (transport-wide), queued, counted and logged as send_rtp does, inline
        (once per copy: each call layer is paid by every forwarded packet)."""
        native: NativeSender = self.native  # type: ignore[assignment]
        tcc = -1
        if tcc_at >= 0:
            self.tcc_seq = tcc = (self.tcc_seq + 1) & 0xFFFF
        size = native.header(native.batch, self.native_to, first, seq, ts, ssrc, body, len(body), tcc_at, tcc & 0xFFFF)
        if size < 0:
            args = (self.native_to, first, seq, ts, ssrc, body, len(body), tcc_at, tcc & 0xFFFF)
            size = native.settle(size, native.header, args)
        if not native.held:
            native.flush()
        counters = self.socket.counters
        counters.packets_sent += 1
        counters.bytes_sent += size
        if tcc >= 0:
            self.log_sent(tcc, size, monotonic_ns() // 1000)

    def send_rewritten(
        self, first: int, seq: int, ts: int, ssrc: int, body: bytes, tcc_at: int, codec: bytes, tail: bytes
    ) -> None:
        """send_header with a simulcast consumer's codec bytes and the tail."""
        tcc = self.next_transport_sequence() if tcc_at >= 0 else 0
        size = self.native.send_rewritten(  # type: ignore[union-attr]
            self.native_to, first, seq, ts, ssrc, body, tcc_at, tcc, codec, tail
        )
        self._sent_natively(size)

    def _sent_natively(self, size: int) -> None:
        """What MediaSocket.sendto and send_rtp count and log, for a copy the native
        module queued (`size`: its length after SRTP)."""
        counters = self.socket.counters
        counters.packets_sent += 1
        counters.bytes_sent += size
        seq = self.pending_tcc
        if seq >= 0:
            self.pending_tcc = -1
            self.log_sent(seq, size, monotonic_ns() // 1000)

    def _route_natively(self) -> None:
        """Where the native path sends for this transport, recomputed whenever the
        selected address, its sender or the SRTP session change: only over UDP, once
        DTLS-SRTP is up."""
        self.native_to = None
        native = self.native
        if native is None or self.tx is None or self.addr is None or self.sender is not self.socket:
            return
        address = sockaddr(self.addr)
        fd = self.socket.send_fileno()
        if address is None or fd < 0:
            return
        native.endpoints[fd] = self.socket.udp  # type: ignore[assignment]
        self.native_to = native.route(fd, address, srtp_context(self.tx.session))

    def send_rtcp(self, packet: bytes) -> None:
        tx = self.tx
        if tx is None or self.addr is None:
            return
        self.counters.rtcp_sent += 1
        self.sender.sendto(tx.protect_rtcp(packet), self.addr)
        if packet[1] == _RTCP_SR and len(packet) >= 20:
            # The NTP timestamp's middle 32 bits (bytes 10..13): the LSR a report names.
            self.quality.sender_report_sent(_SSRC.unpack_from(packet, 10)[0])  # type: ignore[union-attr]

    def next_transport_sequence(self) -> int:
        """The number for the packet about to be sent (`send_rtp` logs it)."""
        self.tcc_seq = seq = (self.tcc_seq + 1) & 0xFFFF
        self.pending_tcc = seq
        return seq

    def _learn_ssrc(self, packet: bytes, ssrc: int) -> Producer | None:
        """A stream signaled without a=ssrc (rid simulcast, some clients): bind it by its
        mid, and a simulcast layer (or its RTX) by its RID (or repaired RID)."""
        if not self.mid_ext_id or not packet[0] & 0x10:
            return None
        where = rtp.find_extension(packet, self.mid_ext_id)
        if where is None:
            return None
        mid = packet[where[0] : where[0] + where[1]].decode("ascii", "replace")
        producer = self.producers_by_mid.get(mid)
        if isinstance(producer, SimulcastProducer):
            return self._learn_layer(producer, packet, ssrc)
        if producer is None or producer.ssrc is not None:
            return None
        producer.ssrc = ssrc
        producer.params.ssrc = ssrc
        self.producers_by_ssrc[ssrc] = producer
        return producer

    def _learn_layer(self, producer: SimulcastProducer, packet: bytes, ssrc: int) -> Producer | None:
        for ext_id, repaired in ((self.rid_ext_id, False), (self.rrid_ext_id, True)):
            where = rtp.find_extension(packet, ext_id) if ext_id else None
            if where is not None:
                rid = packet[where[0] : where[0] + where[1]].decode("ascii", "replace")
                if producer.learn(ssrc, rid, repaired):
                    self.producers_by_ssrc[ssrc] = producer
                    return producer
                return None
        return None

    # ------------------------------------------------------------------ RTCP

    def _route_rtcp(self, plain: bytes) -> None:
        handle_rtcp(plain, self.producers_by_ssrc, self.consumers_by_ssrc, self.counters, self.bandwidth, self.quality)

    def send_transport_feedback(self) -> None:
        if self.tx is None or not self.tcc_ext_id:
            return
        media_ssrc = next(iter(self.producers_by_ssrc), 0)
        packet = self.tcc_recorder.take_feedback(self.rtcp_ssrc, media_ssrc)
        if packet is not None:
            self.send_rtcp(packet)

    # ------------------------------------------------------------------ bandwidth

    def tick_bandwidth(self, now_us: int) -> bool:
        """Every ~100 ms (the clockwork): start a probe cluster if the estimator wants
        one and a video consumer can carry it. True while a cluster is being paced (call
        `pace_probe` every PACE_INTERVAL_US until it returns False)."""
        estimator = self.estimator
        if estimator is None or self.tx is None or self.addr is None:
            return False
        if self.pacer is None and self._probe_consumer() is not None:
            cluster = estimator.probe_request(now_us, self.probe_target_bps)
            if cluster is not None:
                self.counters.bwe_probes += 1
                self.pacer = ProbePacer(cluster, now_us)
        self._estimate_changed()  # a probe's result lands in probe_request
        return self.pace_probe(now_us)

    def pace_probe(self, now_us: int) -> bool:
        """Send the padding of the running cluster that is due; False once it is done
        (or can no longer be sent)."""
        pacer = self.pacer
        if pacer is None:
            return False
        consumer = self._probe_consumer()
        tx, addr = self.tx, self.addr
        if consumer is None or tx is None or addr is None or self.estimator is None:
            self.pacer = None
            return False
        cluster_id = pacer.cluster.id
        for _ in range(pacer.due(now_us)):
            consumer.rtx_seq = (consumer.rtx_seq + 1) & 0xFFFF  # the RTX stream's own numbering
            self.tcc_seq = (self.tcc_seq + 1) & 0xFFFF
            packet = padding_packet(
                consumer.rtx_payload_type, consumer.rtx_seq, consumer.ts_offset, consumer.rtx_ssrc,  # type: ignore[arg-type]
                consumer.tcc_id, self.tcc_seq, MAX_PADDING,
            )  # fmt: skip
            protected = tx.protect(packet)
            self.sender.sendto(protected, addr)
            self.estimator.on_packet_sent(self.tcc_seq, len(protected), now_us, probe_cluster=cluster_id)
            pacer.on_sent(len(protected))
            self.counters.bwe_probe_packets += 1
            self.counters.bwe_probe_bytes += len(protected)
        if pacer.done(now_us):
            self.pacer = None
        return self.pacer is not None

    def _probe_consumer(self) -> Consumer | None:
        """A video consumer whose RTX stream the subscriber negotiated, with the
        transport-wide sequence number extension: one that is sending first."""
        fallback = None
        for consumer in self.consumer_slots:
            if (
                consumer.active
                and consumer.kind == "video"
                and consumer.use_rtx
                and consumer.tcc_id
                and consumer.rtx_ssrc is not None
                and consumer.rtx_payload_type is not None
            ):
                if not consumer.paused:
                    return consumer
                fallback = fallback or consumer
        return fallback

    def _estimate_changed(self) -> None:
        """Tell `on_estimate` when the estimate moved since it was last told."""
        estimator = self.estimator
        if estimator is None or estimator.estimate_bps == self.reported_estimate_bps:
            return
        self.reported_estimate_bps = estimator.estimate_bps
        if self.on_estimate is not None:
            self.on_estimate(self, self.reported_estimate_bps)

    # ------------------------------------------------------------------ the tree

    def consume(
        self,
        consumer_id: str,
        producer: Producer,
        codec: Codec,
        *,
        mid: str | None = None,
        ssrc: int | None = None,
        rtx_ssrc: int | None = None,
    ) -> Consumer:
        """A consumer on an m-line of the next subscribe offer: a recycled one of its kind
        if there is one, else a new one, up to max_consumer_slots (ValueError past it:
        every m-line is in the subscriber's answer, which has to fit in one signaling
        message)."""
        if self.direction != "subscribe":
            raise ValueError(f"transport {self.id} is a {self.direction} transport")
        kind = producer.params.kind
        index = next((i for i in sorted(self.recyclable) if self.consumer_slots[i].kind == kind), None)
        if index is None and len(self.consumer_slots) >= self.max_consumer_slots:
            raise ValueError(
                f"the subscribe connection has {len(self.consumer_slots)} m-lines, at most "
                f"{self.max_consumer_slots} (media.max_subscribe_mlines): unsubscribe from a track first"
            )
        consumer = super().consume(consumer_id, producer, codec, mid=mid, ssrc=ssrc, rtx_ssrc=rtx_ssrc)
        if index is None:
            self.consumer_slots.append(consumer)
        else:
            self.recyclable.discard(index)
            self.consumer_slots[index] = consumer
        if self.subscription is not None:
            self.subscription.changed()
        return consumer

    def on_consumer_closed(self, consumer: Consumer) -> None:
        super().on_consumer_closed(consumer)
        if self.playback is not None:
            self.playback.consumer_closed(consumer)
        if self.subscription is not None:
            self.subscription.changed()

    def _rtx_payload_type(self, codec: Codec) -> int | None:
        return codec.rtx_payload_type  # video only (negotiation.subscriber_codec)

    async def _release(self) -> None:
        self.socket.unbind_peer(self)
        await self.dtls.close()
        self.rx = self.tx = None
        self.native_to = None
