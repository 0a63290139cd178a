"""The worker's one UDP socket: every peer's STUN, DTLS and SRTP arrive here (and every
frame of its ICE-TCP connections, sfu.transport.tcp, each one more remote address).

Demultiplexing follows RFC 7983 §7 on the first byte: 0–3 STUN, 20–63 DTLS, 128–191
RTP/RTCP. STUN is routed by ICE ufrag (the peer may not have an address yet); DTLS and
SRTP by the remote address an ICE check selected (one transport per address: a check
never takes another transport's address, `bind_peer`). Anything else, and anything that
fails to parse, is counted by reason and dropped: bad input never reaches a traceback.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

from sfu.engine.stats import Counters
from sfu.transport.ice import IceLiteServer
from sfu.transport.sending import Address, DatagramEndpoint
from sfu.transport.tcp import IceTcpConnection, TcpAddress, is_tcp_address

if TYPE_CHECKING:
    from sfu.transport.native import NativeSender
    from sfu.transport.webrtc import WebRtcTransport


class MediaSocket(DatagramEndpoint):
    def __init__(self, counters: Counters, max_datagram: int = 1500) -> None:
        self.counters = counters
        self.max_datagram = max_datagram
        self.peers: dict[Address, WebRtcTransport] = {}
        # Open ICE-TCP connections by their key (ip, port, "tcp"): addresses like UDP's.
        self.tcp: dict[TcpAddress, IceTcpConnection] = {}
        self.ice = IceLiteServer(counters, self.send_any)
        self.udp: asyncio.DatagramTransport | None = None
        # The same socket through a duplicated descriptor, for sending (sending.py): the
        # inherited `sendto` is what every forwarded packet goes through.
        self._send_socket: socket.socket | None = None
        # The native forwarding path (sfu.transport.native), given by the worker; with it,
        # what one datagram makes us send leaves in one flush at its end.
        self.native: NativeSender | None = None

    def use_native(self, native: NativeSender | None) -> None:
        self.native = native
        if native is not None:
            self.datagram_received = self._received_holding  # type: ignore[method-assign]

    def _received_holding(self, data: bytes, addr: Address) -> None:
        native = self.native
        assert native is not None
        native.held += 1
        try:
            MediaSocket.datagram_received(self, data, addr)
        finally:
            native.held -= 1
            if not native.held:
                native.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._close_send_socket()
        self.udp = None

    @property
    def port(self) -> int:
        assert self.udp is not None
        return self.udp.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        counters = self.counters
        counters.packets_received += 1
        counters.bytes_received += len(data)
        if len(data) > self.max_datagram:
            counters.drop("oversized")
            return
        try:
            first = data[0] if data else 255
            if 127 < first < 192:
                peer = self.peers.get(addr)
                if peer is None or len(data) < 12:
                    counters.drop("unknown_peer" if peer is None else "malformed_rtp")
                    return
                peer.on_srtp(data)
            elif first < 4:
                self.ice.handle(data, addr)
            elif 19 < first < 64:
                peer = self.peers.get(addr)
                if peer is None:
                    counters.drop("unknown_peer")
                    return
                peer.on_dtls(data)
            else:
                counters.drop("unknown_packet")
        except ValueError:
            counters.drop("malformed_rtp")
        except Exception:  # never let one datagram take the worker down
            counters.drop("internal_error")

    def send_any(self, data: bytes, addr: Address) -> None:
        """Send to a UDP address or an ICE-TCP connection's key (STUN and DTLS: not the
        hot path, which sends through the transport's `sender`)."""
        sender = self.sender_for(addr)
        if sender is not None:  # None: its ICE-TCP connection closed meanwhile
            sender.sendto(data, addr)

    def sender_for(self, addr: Address) -> MediaSocket | IceTcpConnection | None:
        """What sends to `addr`: this socket, or its ICE-TCP connection (None: gone)."""
        if is_tcp_address(addr):
            return self.tcp.get(addr)  # type: ignore[call-overload]
        return self

    def tcp_opened(self, connection: IceTcpConnection) -> None:
        self.tcp[connection.key] = connection  # type: ignore[index]

    def tcp_closed(self, connection: IceTcpConnection) -> None:
        """A connection is gone: the transport that sent through it has no path until the
        client nominates another (over a new connection, or UDP)."""
        key = connection.key
        if key is None or self.tcp.get(key) is not connection:
            return
        del self.tcp[key]
        peer = self.peers.pop(key, None)  # type: ignore[call-overload]
        if peer is not None:
            peer.on_path_closed(key)

    def is_bound(self, addr: Address) -> bool:
        return addr in self.peers

    def close_tcp(self) -> None:
        for connection in list(self.tcp.values()):
            connection.close()

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (peer gone) arrive here on Linux; nothing to do per packet.
        pass

    def bind_peer(self, peer: WebRtcTransport, old: Address | None, new: Address) -> bool:
        """DTLS and SRTP from `new` go to `peer` (from `old` no more). False, and nothing
        changes, when another open transport's peer is at `new`: a check naming one
        transport never takes another's address (its media would go to the wrong one)."""
        owner = self.peers.get(new)
        if owner is not None and owner is not peer and not owner.closed:
            return False
        if old is not None and self.peers.get(old) is peer:
            del self.peers[old]
        self.peers[new] = peer
        return True

    def release_peer(self, peer: WebRtcTransport, addr: Address) -> None:
        if self.peers.get(addr) is peer:
            del self.peers[addr]

    def unbind_peer(self, peer: WebRtcTransport) -> None:
        self.ice.unregister(peer)
        if peer.addr is not None:
            self.release_peer(peer, peer.addr)
