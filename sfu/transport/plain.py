"""A plain RTP transport: one UDP port, RTP and RTCP on it (RFC 5761 mux), no ICE, no DTLS.

mediasoup's PlainTransport in miniature, for ffmpeg/GStreamer ingest, feeding a recorder
and benchmarks. SRTP is optional, keyed by SDES-style keys exchanged over the channel
(RFC 4568 §6.2.1, AES_CM_128_HMAC_SHA1_80: 30 bytes of key||salt): our key protects what
we send, the remote key (PLAIN_TRANSPORT_CONNECT) unprotects what we receive.

Remote address (where we send): set by `connect`, or learned from the first valid RTP
packet (comedia; not from RTCP, which ffmpeg sends from a second socket). Each stream's
source is learned on its own (comedia per SSRC): ffmpeg sends audio and video to one port
from a socket each, so the first valid packet of an SSRC binds that SSRC to its source
address, which must be on the remote's IP; from then on that SSRC is heard only from
there. RTCP is heard from the remote's IP on any port.

It is a `Transport` (base.py) with the engine's Producer and Consumer unchanged, so the
tree, forwarding, the NACK cache, keyframe requests and counters behave as on a WebRTC
transport. `datagram_received` is the hot path: synchronous, no logging, bad input
counted by reason and dropped. As on the WebRTC path (webrtc.py, udp.py), SRTP goes
through `FastSrtp` and sending through a duplicated descriptor of the transport's
socket: 5.92 → 5.51 CPU µs per forwarded packet at fan-out 16 with SRTP
(bench/RESULTS.md, "Plain RTP fan-out").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import socket
import struct
from typing import TYPE_CHECKING

import pylibsrtp

from sfu.engine.consumer import Consumer
from sfu.engine.producer import Producer
from sfu.engine.stats import Counters
from sfu.transport.base import Transport
from sfu.transport.native import sockaddr, srtp_context
from sfu.transport.sending import Address, DatagramEndpoint
from sfu.transport.srtp import FastSrtp

if TYPE_CHECKING:
    from sfu.engine.router import Router
    from sfu.transport.native import NativeSender
    from sfu.wire.sdp import Codec

SRTP_CRYPTO_SUITE = "AES_CM_128_HMAC_SHA1_80"
SRTP_KEY_SALT_BYTES = 30  # RFC 4568 §6.2.1: 128-bit master key || 112-bit master salt

# pylibsrtp (and FastSrtp, with the same buffer) refuses to protect RTP longer than this;
# a packet that no SRTP subscriber could be sent is dropped on arrival instead of failing
# once per consumer.
MAX_FORWARDABLE_RTP = 1356

_SSRC = struct.Struct("!I")


def srtp_session(key: bytes, outbound: bool) -> pylibsrtp.Session:
    """A pylibsrtp Session with the plain transport's policy (transports wrap it in FastSrtp)."""
    policy = pylibsrtp.Policy(
        key=key,
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND,
        srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    )
    # NACKs without RTX resend a packet under its own sequence number.
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return pylibsrtp.Session(policy)


def decode_srtp_key(text: str, field: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{field}: not base64") from None
    if len(key) != SRTP_KEY_SALT_BYTES:
        raise ValueError(f"{field}: expected {SRTP_KEY_SALT_BYTES} bytes of key||salt, got {len(key)}")
    return key


class PlainTransport(Transport, DatagramEndpoint):
    __slots__ = ("srtp", "local_key", "remote", "sources", "rx", "tx", "udp", "_send_socket", "max_datagram")

    KIND = "plain"

    def __init__(
        self, transport_id: str, router: Router, counters: Counters, srtp: bool, max_datagram: int = 1500
    ) -> None:
        super().__init__(transport_id, router, counters)
        self.srtp = srtp
        self.local_key: bytes | None = os.urandom(SRTP_KEY_SALT_BYTES) if srtp else None
        self.remote: Address | None = None
        # Where each producer's SSRC is heard from, bound by its first valid packet (at
        # most one entry per producer: only known SSRCs are bound).
        self.sources: dict[int, Address] = {}
        self.rx: FastSrtp | None = None
        self.tx = FastSrtp(srtp_session(self.local_key, outbound=True)) if self.local_key else None
        self.udp: asyncio.DatagramTransport | None = None
        # The same socket through a duplicated descriptor, for sending (sending.py).
        self._send_socket: socket.socket | None = None
        self.max_datagram = max_datagram
        # It can send from the start; what it sends before it knows the remote is dropped
        # (send_rtp), and learning the remote restarts every stream (_set_remote).
        self.connected = True

    # ------------------------------------------------------------------ setup

    async def bind(self, listen_ip: str, port: int = 0) -> Address:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(listen_ip, port), family=socket.AF_INET)
        return self.local_address

    @property
    def local_address(self) -> Address:
        assert self.udp is not None
        return self.udp.get_extra_info("sockname")[:2]

    @property
    def local_key_base64(self) -> str | None:
        return base64.b64encode(self.local_key).decode("ascii") if self.local_key else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._route_natively()

    def connection_lost(self, exc: Exception | None) -> None:
        self.native_to = None
        self._close_send_socket()

    def connect(self, remote: Address | None, remote_key_base64: str | None) -> None:
        """Set where we send (None: keep learning it) and the key of what we receive."""
        if remote_key_base64 is not None:
            if not self.srtp:
                raise ValueError("remote_srtp_key_base64: this transport was created without srtp")
            key = decode_srtp_key(remote_key_base64, "remote_srtp_key_base64")
            self.rx = FastSrtp(srtp_session(key, outbound=False))
        if remote is not None and remote != self.remote:
            self._set_remote(remote)

    def _set_remote(self, remote: Address) -> None:
        self.remote = remote
        self._route_natively()
        # Whatever was forwarded before went nowhere: start each stream afresh.
        for consumer in self.consumers.values():
            if consumer.active:
                consumer.resync()
        # Keyframe requests made before we knew the sender went nowhere either.
        for producer in self.producers_by_mid.values():
            if producer.keyframe_waiters:
                producer.request_keyframe()

    # ------------------------------------------------------------------ hot path

    def datagram_received(self, data: bytes, addr: Address) -> None:  # type: ignore[override]
        counters = self.counters
        size = len(data)
        counters.packets_received += 1
        counters.bytes_received += size
        if size > self.max_datagram:
            counters.drop("oversized")
            return
        if size < 12 or not 127 < data[0] < 192:
            counters.drop("unknown_packet" if size < 2 or not 127 < data[0] < 192 else "malformed_rtp")
            return
        native = self.native
        if native is not None:
            native.held += 1  # what this datagram makes us send leaves in one flush
        try:
            if 191 < data[1] < 224:  # RFC 5761 §4: RTCP packet types 192..223
                self._on_rtcp_datagram(data, addr)
            else:
                self._on_rtp(data, addr)
        except ValueError:
            counters.drop("malformed_rtp")
        except Exception:  # never let one datagram take the worker down
            counters.drop("internal_error")
        finally:
            if native is not None:
                native.held -= 1
                if not native.held:
                    native.flush()

    def _on_rtp(self, data: bytes, addr: Address) -> None:
        ssrc = _SSRC.unpack_from(data, 8)[0]  # in the clear under SRTP too (RFC 3711 §3.1)
        source = self.sources.get(ssrc)
        if source is None:
            remote = self.remote
            if remote is not None and addr[0] != remote[0]:
                self.counters.drop("unknown_peer")
                return
        elif addr != source:
            self.counters.drop("unknown_peer")
            return
        if self.srtp:
            rx = self.rx
            if rx is None:
                self.counters.drop("not_connected")
                return
            try:
                data = rx.unprotect(data)
            except (pylibsrtp.Error, ValueError):
                self.counters.drop("srtp_error")
                return
        if len(data) > MAX_FORWARDABLE_RTP:
            self.counters.drop("oversized")
            return
        producer = self.producers_by_ssrc.get(ssrc)
        if producer is None:
            self.counters.drop("unknown_ssrc")
            return
        if source is None:
            self._learn_source(ssrc, addr)
        producer.on_rtp(data, ssrc)

    def _learn_source(self, ssrc: int, addr: Address) -> None:
        """The first valid packet of a stream: its source from now on, and where we send
        if nobody said (comedia)."""
        self.sources[ssrc] = addr
        if self.remote is None:
            self._set_remote(addr)

    def send_rtp(self, packet: bytes) -> None:
        route = self.native_to
        if route is not None:
            size = self.native.send(route, packet)  # type: ignore[union-attr]
            counters = self.counters
            counters.packets_sent += 1
            counters.bytes_sent += size
            return
        remote = self.remote
        if remote is None or self.udp is None:
            return
        tx = self.tx
        if tx is not None:
            packet = tx.protect(packet)
        # DatagramEndpoint.sendto inlined (the one deliberate copy: a call would add a
        # Python call layer to every forwarded packet).
        counters = self.counters
        counters.packets_sent += 1
        counters.bytes_sent += len(packet)
        send_socket = self._send_socket
        if send_socket is not None:
            try:
                send_socket.sendto(packet, remote)
                return
            except BlockingIOError:
                pass  # the kernel's send buffer is full: the transport queues it for later
            except OSError:
                return  # what the transport does too: report to error_received, which ignores it
        self.udp.sendto(packet, remote)

    def send_header(self, first: int, seq: int, ts: int, ssrc: int, body: bytes, tcc_at: int) -> None:
        """The native path's send_rtp for a copy it writes itself (sfu.transport.native),
        queued and counted inline (once per copy)."""
        native: NativeSender = self.native  # type: ignore[assignment]
        size = native.header(native.batch, self.native_to, first, seq, ts, ssrc, body, len(body), tcc_at, 0)
        if size < 0:
            size = native.settle(size, native.header, (self.native_to, first, seq, ts, ssrc, body, len(body), tcc_at, 0))
        if not native.held:
            native.flush()
        counters = self.counters
        counters.packets_sent += 1
        counters.bytes_sent += size

    def send_rewritten(
        self, first: int, seq: int, ts: int, ssrc: int, body: bytes, tcc_at: int, codec: bytes, tail: bytes
    ) -> None:
        size = self.native.send_rewritten(  # type: ignore[union-attr]
            self.native_to, first, seq, ts, ssrc, body, tcc_at, 0, codec, tail
        )
        counters = self.counters
        counters.packets_sent += 1
        counters.bytes_sent += size

    def use_native(self, native: NativeSender | None) -> None:
        self.native = native
        self._route_natively()

    def _route_natively(self) -> None:
        """Where the native path sends for it: its own socket to the remote, once known."""
        self.native_to = None
        native = self.native
        if native is None or self.remote is None:
            return
        address = sockaddr(self.remote)
        fd = self.send_fileno()
        if address is None or fd < 0:
            return
        native.endpoints[fd] = self.udp  # type: ignore[assignment]
        self.native_to = native.route(fd, address, 0 if self.tx is None else srtp_context(self.tx.session))

    def send_rtcp(self, packet: bytes) -> None:
        remote = self.remote
        if remote is None or self.udp is None or self.closed:
            return
        if self.tx is not None:
            packet = self.tx.protect_rtcp(packet)
        self.counters.rtcp_sent += 1
        self.sendto(packet, remote)

    # ------------------------------------------------------------------ RTCP

    def _on_rtcp_datagram(self, data: bytes, addr: Address) -> None:
        remote = self.remote
        if remote is not None and addr[0] != remote[0]:
            self.counters.drop("unknown_peer")
            return
        if self.srtp:
            if self.rx is None:
                self.counters.drop("not_connected")
                return
            try:
                data = self.rx.unprotect_rtcp(data)
            except (pylibsrtp.Error, ValueError):
                self.counters.drop("srtp_error")
                return
        self._route_rtcp(data)

    # ------------------------------------------------------------------ lifecycle

    def add_producer(self, producer: Producer) -> None:
        # The SSRC is all that tells its packets apart here (no mid, no SDP).
        if producer.ssrc is None:
            raise ValueError("ssrc: a plain producer needs one")
        if producer.ssrc in self.producers_by_ssrc:
            raise ValueError(f"ssrc: {producer.ssrc} is already produced on this transport")
        super().add_producer(producer)

    def on_producer_closed(self, producer: Producer) -> None:
        for ssrc in producer.ssrcs():
            self.sources.pop(ssrc, None)
        super().on_producer_closed(producer)

    def consume(self, consumer_id: str, producer: Producer, codec: Codec) -> Consumer:
        consumer = super().consume(consumer_id, producer, codec)
        # No answer step: header extensions pass through unchanged, no transport-cc, no RTX.
        consumer.activate(None, 0, False)
        return consumer

    def own_socket(self) -> socket.socket | None:
        return self.udp.get_extra_info("socket") if self.udp is not None else None

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable: the receiver is not there (yet); nothing to do per packet

    async def _release(self) -> None:
        self.native_to = None  # before its SRTP session goes: the route holds its address
        self._close_send_socket()
        if self.udp is not None:
            self.udp.close()
        self.rx = self.tx = None
