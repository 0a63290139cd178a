"""ICE-TCP on the worker (RFC 6544): passive candidates on one TCP listening port, next to
the UDP socket, for clients that cannot send UDP.

Each accepted connection is one more "remote address" of the shared media socket
(sfu.transport.udp.MediaSocket): its key is (ip, port, "tcp"), never equal to a UDP
address, and every RFC 4571 frame it carries (sfu.wire.framing) goes through the same
demultiplexing as a datagram: STUN to the one ICE-lite agent, DTLS and SRTP to the
transport an ICE check bound to that key. A transport whose selected address is a
connection sends through it (`sendto`, the same signature as the UDP socket's), so the
DTLS, SRTP and forwarding code is the UDP path's.

What a client may cost the worker, and what it gets when it misbehaves:

- framing that cannot be right (length 0, past `sfu.max_datagram`, a packet that is
  neither STUN, DTLS nor RTP/RTCP) is counted by reason and closes that connection (there
  is no finding the next frame boundary after it);
- a connection no ICE check has bound to a transport is closed after BIND_TIMEOUT_S (and
  checked again every BIND_TIMEOUT_S: one the transport moved away from goes too); past
  `sfu.ice_tcp_max_connections` open ones, a new connection is closed on accept;
- a slow reader: the kernel's send buffer is `sfu.ice_tcp_send_buffer_bytes` (not
  autotuned to megabytes); the event loop's transport buffers what the kernel does not
  take; once that passes the same bound it calls `pause_writing`, and until
  `resume_writing` every packet for that connection is dropped and counted
  (`send_buffer_full`), never queued, and nothing ever waits on it: the worker's loop
  and every other meeting's packets go on.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

from sfu.wire.framing import Deframer, FramingError, frame

if TYPE_CHECKING:
    from sfu.engine.stats import Counters
    from sfu.transport.udp import MediaSocket

TCP = "tcp"
TcpAddress = tuple[str, int, str]  # (remote ip, remote port, "tcp")

BIND_TIMEOUT_S = 10.0

# Why a connection's framing was refused (Counters.tcp_framing_errors), and why a packet
# for a connection was not sent (Counters.tcp_dropped_packets / tcp_dropped_bytes): the
# reasons are sfu.engine.stats.TCP_FRAMING_ERRORS and TCP_DROP_REASONS.


def is_tcp_address(addr: tuple) -> bool:
    return len(addr) == 3


class IceTcpConnection(asyncio.Protocol):
    """One accepted ICE-TCP connection: RFC 4571 frames in, demultiplexed as datagrams;
    `sendto` frames what the transport bound to it sends, or drops it when the client is
    not reading."""

    __slots__ = (
        "_timer", "counters", "deframer", "key", "max_connections", "media", "paused", "send_buffer_bytes", "tcp",
    )  # fmt: skip

    def __init__(
        self, media: MediaSocket, counters: Counters, send_buffer_bytes: int, max_packet: int, max_connections: int
    ) -> None:
        self.media = media
        self.counters = counters
        self.send_buffer_bytes = send_buffer_bytes
        self.max_connections = max_connections
        self.key: TcpAddress | None = None
        self.tcp: asyncio.Transport | None = None
        self.deframer = Deframer(max_packet)
        self.paused = False  # the loop's write buffer is past the limit: drop, do not queue
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tcp: asyncio.Transport = transport  # type: ignore[assignment]
        if len(self.media.tcp) >= self.max_connections:
            self.counters.tcp_refused += 1
            tcp.abort()  # never registered: connection_lost finds nothing to undo
            return
        peer = tcp.get_extra_info("peername")
        self.tcp = tcp
        self.key = (peer[0], peer[1], TCP)
        # pause_writing past the limit; resume at a quarter of it (drain before refilling).
        tcp.set_write_buffer_limits(high=self.send_buffer_bytes, low=self.send_buffer_bytes // 4)
        sock = tcp.get_extra_info("socket")
        if sock is not None:
            try:
                # Media is latency-bound: never hold a packet back to coalesce it (Nagle).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                # The kernel's share of the bound too: autotuned, it grows to megabytes
                # (seconds of stale media queued for a slow reader, memory per connection).
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer_bytes)
            except OSError:
                pass
        self.counters.tcp_connections_accepted += 1
        self.media.tcp_opened(self)
        self._timer = asyncio.get_running_loop().call_later(BIND_TIMEOUT_S, self._check_bound)

    def data_received(self, data: bytes) -> None:
        try:
            packets = self.deframer.feed(data)
        except FramingError as exc:
            self._refuse(exc.reason)
            return
        key = self.key
        media = self.media
        for packet in packets:
            first = packet[0]
            if not (first < 4 or 19 < first < 64 or 127 < first < 192):  # RFC 7983 §7
                self._refuse("garbage")
                return
            media.datagram_received(packet, key)  # type: ignore[arg-type]
            if self.tcp is None:
                return  # closed meanwhile

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def eof_received(self) -> bool:
        return False  # the client is done: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.tcp = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.media.tcp_closed(self)

    # ------------------------------------------------------------ sending

    def sendto(self, data: bytes, addr: object = None) -> None:
        """Frame and send one packet (`addr` is this connection: the UDP socket's signature),
        or drop it, counted, while the client is not taking what it was sent."""
        tcp = self.tcp
        counters = self.counters
        if tcp is None or self.paused:
            reason = "closed" if tcp is None else "send_buffer_full"
            counters.tcp_dropped_packets[reason] += 1
            counters.tcp_dropped_bytes[reason] += len(data)
            return
        counters.packets_sent += 1
        counters.bytes_sent += len(data)
        tcp.write(frame(data))

    def close(self) -> None:
        if self.tcp is not None:
            self.tcp.abort()  # what is still queued for a client we are done with is not owed

    # ------------------------------------------------------------ the rest

    def _refuse(self, reason: str) -> None:
        self.counters.tcp_framing_errors[reason] += 1
        self.close()

    def _check_bound(self) -> None:
        self._timer = None
        if self.tcp is None:
            return
        if not self.media.is_bound(self.key):  # type: ignore[arg-type]
            self.counters.tcp_unbound_closed += 1
            self.close()
            return
        self._timer = asyncio.get_running_loop().call_later(BIND_TIMEOUT_S, self._check_bound)


async def listen(
    media: MediaSocket, host: str, port: int, send_buffer_bytes: int, max_packet: int, max_connections: int
) -> asyncio.Server:
    """The worker's ICE-TCP listening socket: its connections feed `media`."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: IceTcpConnection(media, media.counters, send_buffer_bytes, max_packet, max_connections),
        host,
        port,
        family=socket.AF_INET,
        reuse_address=True,
        backlog=256,
    )
