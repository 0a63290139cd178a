"""Sending on a UDP socket the cheap way: what the worker's shared socket (udp.py) and each
plain RTP transport (plain.py) have in common.

The event loop's transport owns the socket and receives on it; sends go through a
duplicated descriptor of the same socket, because socket.sendto costs about 0.2-0.3 µs
less per datagram than the transport's sendto (bench/RESULTS.md, "Hot path profile"),
paid once per forwarded packet. When the kernel's send buffer is full the transport's
sendto takes the datagram instead (it queues it for later); any other send error is
dropped, as the transport does (it reports them to error_received, which ignores them).
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sfu.engine.stats import Counters

Address = tuple[str, int]

SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


class DatagramEndpoint(asyncio.DatagramProtocol):
    """Base of a datagram protocol that sends through a duplicate of its socket.

    Subclasses own the attributes (in their own __slots__ where they have them): `udp`,
    the event loop's transport (None until connected); `_send_socket`, the duplicate (None
    when it could not be made: the transport's sendto is used); `counters`."""

    __slots__ = ()

    if TYPE_CHECKING:
        udp: asyncio.DatagramTransport | None
        _send_socket: socket.socket | None
        counters: Counters

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.udp = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
                except OSError:
                    pass
            try:
                self._send_socket = socket.socket(fileno=os.dup(sock.fileno()))
                self._send_socket.setblocking(False)
            except OSError:
                self._send_socket = None  # the transport's sendto still works

    def send_fileno(self) -> int:
        """The descriptor sends go through (the native path's sendmmsg); -1: none."""
        send_socket = self._send_socket
        return -1 if send_socket is None or self.udp is None else send_socket.fileno()

    def _close_send_socket(self) -> None:
        send_socket = self._send_socket
        if send_socket is not None:
            self._send_socket = None
            send_socket.close()

    def sendto(self, data: bytes, addr: Address) -> None:
        """Count and send one datagram (nothing once the transport is gone).

        plain.PlainTransport.send_rtp repeats these lines inline on purpose: it is the
        plain path's per-packet send, and a call into this method would add a Python
        call layer to every forwarded packet. Change both together."""
        udp = self.udp
        if udp is None:
            return
        counters = self.counters
        counters.packets_sent += 1
        counters.bytes_sent += len(data)
        send_socket = self._send_socket
        if send_socket is not None:
            try:
                send_socket.sendto(data, addr)
                return
            except BlockingIOError:
                pass  # the kernel's send buffer is full: the transport queues it for later
            except OSError:
                return  # what the transport does too: report to error_received, which ignores it
        udp.sendto(data, addr)
